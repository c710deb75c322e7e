"""Training: stacked seeds equal lone seeds, learning, early stopping, masked fine-tuning,
interrupted-and-resumed runs, evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxprune import checkpoint as ckpt
from jaxprune.models import apply, architecture, init_params
from jaxprune.train import EpochInfo, TrainConfig, evaluate, fine_tune, fit


@pytest.fixture(scope="module")
def digits():
    """sklearn digits: x float32 [1797, 64] in [0, 1], y int32 [1797]."""
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)


MLP = architecture("mlp", input_dim=64, widths=(32,), dropout=0.2)
CNN = architecture("lenet5_mnist", input_shape=(8, 8, 1), widths=(4, 6, 16, 8))
japply = jax.jit(apply, static_argnums=0)


def test_stack_equals_alone_with_per_seed_early_stopping(digits):
    x, y = digits
    x, y = x[:400], y[:400]
    cfg = TrainConfig(seeds=(3, 5, 7), epochs=6, batch_size=32, patience=1, learning_rate=0.03,
                      monitor="accuracy")
    stack = fit(MLP, x, y, cfg, progress=False, verbose=False)
    # the seeds stop at different epochs, so seed 3 is frozen inside the stack for a while
    assert len(set(stack.stopped_epoch.tolist())) > 1
    assert stack.stopped_epoch[0] < stack.stopped_epoch.max()
    alone = fit(MLP, x, y, TrainConfig(**{**cfg.to_dict(), "seeds": (3,)}), progress=False,
                verbose=False)
    assert alone.best_epoch[0] == stack.best_epoch[0]
    assert alone.stopped_epoch[0] == stack.stopped_epoch[0]
    for a, b in zip(jax.tree.leaves(stack.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(a[0], b[0], atol=1e-5, rtol=0)
    # seeds one after another through the one-seed program: the same networks as alone
    looped = fit(MLP, x, y, TrainConfig(**{**cfg.to_dict(), "seed_batching": "loop"}),
                 progress=False, verbose=False)
    np.testing.assert_array_equal(looped.stopped_epoch, stack.stopped_epoch)
    for a, b, c in zip(jax.tree.leaves(looped.params), jax.tree.leaves(alone.params),
                       jax.tree.leaves(stack.params), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
    e = alone.epochs_run
    for name in ("val_loss", "train_accuracy"):
        np.testing.assert_allclose(stack.history[name][:e, 0], alone.history[name][:, 0],
                                   atol=1e-5)
        # after seed 3 stopped its rows are NaN while the others still train
        assert np.all(np.isnan(stack.history[name][e:, 0]))
    # zero epochs: the initial parameters are init_params(key(seed)) for every seed
    init = fit(MLP, x, y, TrainConfig(seeds=(3, 5), epochs=0), progress=False, verbose=False)
    for s, seed in enumerate((3, 5)):
        ref = init_params(MLP, jax.random.key(seed))
        for a, b in zip(jax.tree.leaves(init.params), jax.tree.leaves(ref), strict=True):
            np.testing.assert_array_equal(a[s], b)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_learning_happens(digits, optimizer, capsys):
    x, y = digits
    cfg = TrainConfig(optimizer=optimizer, learning_rate=1e-2 if optimizer == "adam" else 0.1,
                      momentum=0.9, seeds=(0, 1), epochs=3, batch_size=32)
    result = fit(MLP, x[:1400], y[:1400], cfg, test=(x[1400:], y[1400:]),
                 progress=optimizer == "adam")
    out = capsys.readouterr().out
    assert "fit mlp: 2 seed(s)" in out and "test  accuracy" in out
    final = result.final()
    assert np.all(final["test_accuracy"] > 0.8), final  # chance is 0.1
    assert np.all(final["val_accuracy"] > 0.8)
    assert result.history["train_loss"].shape == (3, 2)
    # evaluate() agrees with the recorded test metrics of the returned parameters
    metrics = evaluate(MLP, result.params, x[1400:], y[1400:], batch_size=100)
    np.testing.assert_allclose(metrics.accuracy, final["test_accuracy"], atol=1e-6)
    np.testing.assert_allclose(metrics.loss, final["test_loss"], rtol=1e-5)


def test_scan_epoch_equals_step_loop(digits):
    """An epoch as one lax.scan (the default off CPU) trains the same networks as one jit
    call per step (the default on CPU)."""
    x, y = digits
    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=32, learning_rate=1e-2)
    looped = fit(MLP, x[:400], y[:400], TrainConfig(**{**cfg.to_dict(), "scan": False}),
                 progress=False, verbose=False)
    scanned = fit(MLP, x[:400], y[:400], TrainConfig(**{**cfg.to_dict(), "scan": True}),
                  progress=False, verbose=False)
    for a, b in zip(jax.tree.leaves(looped.params), jax.tree.leaves(scanned.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(looped.history["train_loss"], scanned.history["train_loss"],
                               atol=1e-5)


def test_evaluate_matches_numpy(digits):
    x, y = digits
    params = init_params(MLP, jax.random.key(1))
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    metrics = evaluate(MLP, stacked, x[:300], y[:300], batch_size=64)  # 300 = 4 chunks + pad
    for s, scale in enumerate((1.0, 2.0)):
        p = jax.tree.map(lambda a, scale=scale: np.asarray(a) * scale, params)
        h = np.maximum(x[:300] @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
        logits = (h @ p["head"]["kernel"] + p["head"]["bias"]).astype(np.float64)
        top = logits.max(1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
        loss = -logp[np.arange(300), y[:300]].mean()
        np.testing.assert_allclose(metrics.accuracy[s], np.mean(logits.argmax(1) == y[:300]))
        np.testing.assert_allclose(metrics.loss[s], loss, rtol=1e-5)
    single = evaluate(MLP, params, x[:300], y[:300])
    assert single.accuracy.shape == () and float(single.loss) == pytest.approx(
        float(metrics.loss[0]), rel=1e-6)


def test_early_stopping_on_plateau_keeps_best_params(digits):
    x, y = digits
    seen = []

    def record(info: EpochInfo):
        seen.append(jax.tree.map(np.asarray, info.params))

    # min_delta = 2 makes every epoch after the first a plateau (accuracy cannot improve by 2)
    cfg = TrainConfig(seeds=(0, 1), epochs=10, batch_size=64, patience=2, monitor="accuracy",
                      min_delta=2.0, learning_rate=1e-2)
    result = fit(MLP, x[:400], y[:400], cfg, on_epoch_end=record, progress=False, verbose=False)
    assert result.epochs_run == 3  # epoch 0 is the best, then two epochs without improvement
    np.testing.assert_array_equal(result.best_epoch, [0, 0])
    np.testing.assert_array_equal(result.stopped_epoch, [2, 2])
    for a, b, last in zip(jax.tree.leaves(result.params), jax.tree.leaves(seen[0]),
                          jax.tree.leaves(seen[-1]), strict=True):
        np.testing.assert_array_equal(a, b)  # the best (epoch-0) parameters are returned
        assert not np.array_equal(a, last)
    # a real plateau: nothing changes with a zero learning rate
    flat = fit(MLP, x[:400], y[:400], TrainConfig(epochs=10, patience=3, learning_rate=0.0,
                                                   optimizer="sgd"),
               progress=False, verbose=False)
    assert flat.epochs_run == 4 and flat.best_epoch[0] == 0 and flat.stopped_epoch[0] == 3
    with pytest.raises(ValueError, match="needs validation data"):
        fit(MLP, x, y, TrainConfig(val_fraction=0.0, patience=2), progress=False)


def test_masked_fine_tune_keeps_removed_units_removed(digits):
    x, y = digits
    xi = x.reshape(-1, 8, 8, 1)[:512]
    seeds = (0, 1)
    widths = CNN.widths
    removed = {"conv1": [1, 3], "conv2": [0, 4, 5], "fc1": [2, 7, 11], "fc2": [0]}
    masks = {}
    for name, width in widths.items():
        m = np.ones((2, width), np.float32)
        m[0, removed[name]] = 0.0
        m[1, removed[name][:1]] = 0.0  # per-seed masks: seed 1 removes fewer units
        masks[name] = m
    start = fit(CNN, xi, y[:512], TrainConfig(seeds=(10, 11), epochs=0), progress=False,
                verbose=False).params  # init_params(key(10)), init_params(key(11))
    result = fine_tune(CNN, start, masks, xi, y[:512],
                       TrainConfig(seeds=seeds, epochs=2, learning_rate=1e-2, val_fraction=0.0),
                       progress=False, verbose=False)
    assert not np.array_equal(result.params["fc1"]["kernel"], start["fc1"]["kernel"])
    for s in range(2):
        p = jax.tree.map(lambda a, s=s: a[s], result.params)
        p0 = jax.tree.map(lambda a, s=s: a[s], start)
        m = {k: v[s] for k, v in masks.items()}
        _, acts = japply(CNN, p, m, xi)
        names = list(widths)
        for i, name in enumerate(names):
            gone = np.flatnonzero(m[name] == 0)
            assert np.all(np.asarray(acts[name])[..., gone] == 0.0)  # exactly zero
            # incoming weights and bias of a removed unit never changed (zero gradient)
            np.testing.assert_array_equal(p[name]["kernel"][..., gone],
                                          p0[name]["kernel"][..., gone])
            np.testing.assert_array_equal(p[name]["bias"][gone], p0[name]["bias"][gone])
            # nor did its outgoing weights (rows of the next layer's kernel)
            nxt = names[i + 1] if i + 1 < len(names) else "head"
            k, k0 = np.asarray(p[nxt]["kernel"]), np.asarray(p0[nxt]["kernel"])
            if k.ndim == 4:  # conv -> conv: input channels
                np.testing.assert_array_equal(k[:, :, gone], k0[:, :, gone])
            else:  # rows; after flattening NHWC, channel c occupies rows c, c + C, ...
                rows = np.flatnonzero(np.isin(np.arange(k.shape[0]) % widths[name], gone))
                np.testing.assert_array_equal(k[rows], k0[rows])
        kept = np.flatnonzero(m["fc1"] == 1)
        assert not np.array_equal(p["fc1"]["bias"][kept], p0["fc1"]["bias"][kept])
    # shared masks ([width]) and single (unstacked) starting params are accepted too
    shared = {k: v[0] for k, v in masks.items()}
    both = fine_tune(CNN, jax.tree.map(lambda a: a[0], start), shared, xi, y[:512],
                     TrainConfig(seeds=seeds, epochs=1, learning_rate=1e-2, val_fraction=0.0),
                     progress=False, verbose=False)
    for s in range(2):
        _, acts = japply(CNN, jax.tree.map(lambda a, s=s: a[s], both.params), shared, xi)
        assert np.all(np.asarray(acts["conv2"])[..., removed["conv2"]] == 0.0)


def test_weight_masks_and_explicit_validation_set(digits):
    x, y = digits
    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=32, learning_rate=1e-2)
    init = fit(MLP, x[:400], y[:400], TrainConfig(seeds=(0, 1), epochs=0), progress=False,
               verbose=False).params
    wmask = jax.tree.map(lambda a: np.ones(a.shape[1:], np.float32), init)
    wmask["fc1"]["kernel"][::2] = 0.0  # cut every other input pixel's connections
    val = (x[1500:], y[1500:])
    result = fit(MLP, x[:400], y[:400], cfg, val=val, weight_masks=wmask, progress=False,
                 verbose=False)
    cut = wmask["fc1"]["kernel"] == 0
    kernel, kernel0 = np.asarray(result.params["fc1"]["kernel"]), np.asarray(init["fc1"]["kernel"])
    np.testing.assert_array_equal(kernel[:, cut], kernel0[:, cut])  # zero gradient
    assert not np.array_equal(kernel[:, ~cut], kernel0[:, ~cut])
    metrics = evaluate(MLP, result.params, *val, weight_masks=wmask)
    final = result.final()
    np.testing.assert_allclose(metrics.accuracy, final["val_accuracy"], atol=1e-6)
    np.testing.assert_allclose(metrics.loss, final["val_loss"], rtol=1e-5)


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted(digits, tmp_path):
    x, y = digits
    x, y = x[:600], y[:600]
    cfg = TrainConfig(seeds=(2, 4), epochs=5, batch_size=32, patience=2, learning_rate=0.02,
                      monitor="accuracy")
    test = (x[:100], y[:100])
    full = fit(MLP, x, y, cfg, test=test, progress=False, verbose=False)

    def crash_after_epoch_1(info: EpochInfo):
        if info.epoch == 1:
            raise Interrupt

    ckdir = tmp_path / "run"
    with pytest.raises(Interrupt):
        fit(MLP, x, y, cfg, test=test, checkpoint_dir=ckdir, on_epoch_end=crash_after_epoch_1,
            progress=False, verbose=False, metadata={"dataset": "digits[:600]"})
    assert ckpt.steps(ckdir) == [2, 1]
    part = fit(MLP, x, y, cfg, test=test, checkpoint_dir=ckdir, max_epochs_this_call=1,
               progress=False, verbose=False)
    assert part.resumed_from == 2 and len(part.epoch_seconds) == 1
    resumed = fit(MLP, x, y, cfg, test=test, checkpoint_dir=ckdir, progress=False,
                  verbose=False)
    assert resumed.resumed_from == 3
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in full.history:
        np.testing.assert_array_equal(full.history[name], resumed.history[name])
    np.testing.assert_array_equal(full.best_epoch, resumed.best_epoch)
    np.testing.assert_array_equal(full.stopped_epoch, resumed.stopped_epoch)
    # a finished run resumes to the same result without training
    again = fit(MLP, x, y, cfg, test=test, checkpoint_dir=ckdir, progress=False, verbose=False)
    assert again.epoch_seconds == [] and again.epochs_run == full.epochs_run
    # another configuration must not silently reuse (or overwrite) these checkpoints
    with pytest.raises(ValueError, match="different run"):
        fit(MLP, x, y, TrainConfig(**{**cfg.to_dict(), "learning_rate": 0.1}),
            checkpoint_dir=ckdir, test=test, progress=False, verbose=False)


def test_train_config_round_trip_and_validation():
    cfg = TrainConfig(optimizer="sgd", momentum=0.9, seeds=[1, 2], patience=3)
    assert cfg.seeds == (1, 2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"optimizer": "rmsprop"}, {"seeds": ()}, {"seeds": (1, 1)},
                {"val_fraction": 1.0}, {"patience": 0}, {"monitor": "f1"},
                {"seed_batching": "pmap"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(TypeError, match="floating"):
        fit(MLP, np.zeros((10, 64), np.uint8), np.zeros(10, np.int32), progress=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_entries_never_change_with_weight_decay(digits, optimizer):
    from jaxprune.masks import kept_entries

    x, y = digits
    arch = architecture("mlp", input_dim=64, widths=(16, 12), dropout=0.0)
    start = fit(arch, x[:256], y[:256], TrainConfig(seeds=(0, 1), epochs=0), progress=False,
                verbose=False).params
    units = {"fc1": np.ones((2, 16), np.float32), "fc2": np.ones((2, 12), np.float32)}
    units["fc1"][0, [1, 5]] = units["fc1"][1, 2] = units["fc2"][:, 3] = 0.0
    wmask = jax.tree.map(lambda a: np.ones(a.shape[1:], np.float32), start)
    wmask["fc2"]["kernel"][:, ::3] = 0.0
    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=32, optimizer=optimizer,
                      learning_rate=0.05, momentum=0.9 if optimizer == "sgd" else 0.0,
                      weight_decay=0.1, val_fraction=0.0)
    result = fit(arch, x[:256], y[:256], cfg, params=start, masks=units, weight_masks=wmask,
                 progress=False, verbose=False)
    for s in range(2):
        one = jax.tree.map(lambda a, s=s: np.asarray(a[s]), start)
        keep = kept_entries(arch, {k: v[s] for k, v in units.items()}, one)
        frozen = jax.tree.map(lambda k, w: (k == 0) | (w == 0), keep, wmask)
        new = jax.tree.map(lambda a, s=s: np.asarray(a[s]), result.params)
        for name in frozen:
            for leaf in ("kernel", "bias"):
                f, n, o = frozen[name][leaf], new[name][leaf], one[name][leaf]
                assert f.any() or name == "head"
                np.testing.assert_array_equal(n[f], o[f], err_msg=f"{name}/{leaf}")
                assert not np.array_equal(n[~f], o[~f])  # the rest did train (and decay)


def test_one_compilation_serves_every_step_and_stack_size(digits):
    from jaxprune.train import engine, make_optimizer, state

    x, y = digits
    arch = architecture("mlp", input_dim=64, widths=(10,), dropout=0.1)
    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=32, scan=False, val_fraction=0.0,
                      learning_rate=0.011)
    fit(arch, x[:200], y[:200], cfg, progress=False, verbose=False)
    step = engine.programs(arch, make_optimizer(cfg)).step
    assert step._cache_size() == 1  # 2 epochs x 6 steps, one program
    before = state._init_one._cache_size()
    state.init_seeds(arch, np.arange(3))
    state.init_seeds(arch, np.arange(5))
    assert state._init_one._cache_size() == before  # stacks of 2, 3 and 5 seeds: one program
    scan = TrainConfig(**{**cfg.to_dict(), "seeds": (0, 1), "scan": True})
    fit(arch, x[:200], y[:200], scan, progress=False, verbose=False)
    fit(arch, x[:200], y[:200], scan, progress=False, verbose=False)
    assert engine.programs(arch, make_optimizer(scan)).epoch._cache_size() == 1
