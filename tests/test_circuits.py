"""Category circuits (method 5): scores against finite differences and a looped twin, CSA and
the bias fit against hand-computed cases, the batched sweep against the one-at-a-time twin,
effective masks, the command line (errors included) and AlexNet weights end to end."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import checkpoint, models
from jaxprune.cli import main
from jaxprune.data import load_digits
from jaxprune.pipeline.circuits import CircuitJob, circuits_command, image_sets
from jaxprune.search import circuits as C
from jaxprune.train import TrainConfig, fit

LEVELS = (0.3, 0.6, 0.8, 0.9, 0.95)


def tiny_conv(num_classes=3):
    return models.architecture("lenet5_mnist", widths=(3, 4, 6, 5), input_shape=(6, 6, 1),
                               num_classes=num_classes)


@pytest.fixture(scope="module")
def digits_net():
    """A small conv network trained 4 epochs on sklearn's 8x8 digits, and its image sets."""
    train, test = load_digits("train"), load_digits("test")
    arch = models.architecture("lenet5_mnist", widths=(4, 8, 32, 16), input_shape=(8, 8, 1))
    result = fit(arch, train.float_images(), train.labels,
                 TrainConfig(epochs=4, batch_size=32, seeds=(0,)), progress=False, verbose=False)
    params = models.seed_slice(result.params, 0)
    job = CircuitJob(None, 3, 10, 15, C.CircuitConfig(levels=LEVELS))
    sets = image_sets((train.float_images(), train.labels), (test.float_images(), test.labels),
                      job, ("digits/train", "digits/test"))
    return arch, params, sets, job


# ----------------------------------------------------------------------------- scores


def test_scores_equal_finite_differences_of_scaled_contributions():
    """w·∂T/∂w is d/dε T(w·(1+ε)) at 0 (scaling a weight scales its contribution); a kernel's
    score scales the whole kernel. Float64, central differences."""
    with jax.enable_x64(True):
        arch = tiny_conv()
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                              models.init_params(arch, jax.random.key(1)))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(6, 6, 6, 1))
        labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
        raw = C.raw_scores(arch, params, x, labels, [2, 0])
        kernel = C.item_scores(arch, raw, [2, 0])["conv2"]

        @jax.jit
        def mean_logits(p):
            return jnp.stack([jnp.mean(models.apply(arch, p, None, jnp.asarray(x))[0]
                                       [labels == t, t]) for t in range(3)])

        def target(p, t):
            return float(mean_logits(p)[t])

        def scaled(name, index, eps):
            k = params[name]["kernel"]
            return {**params, name: {**params[name], "kernel": k.at[index].multiply(1 + eps)}}

        eps = 1e-5
        for ci, t in enumerate([2, 0]):
            for name, index in [("conv1", (1, 2, 0, 1)), ("conv2", (0, 1, 2, 3)),
                                ("fc1", (5, 2)), ("head", (3, t))]:
                fd = (target(scaled(name, index, eps), t)
                      - target(scaled(name, index, -eps), t)) / (2 * eps)
                np.testing.assert_allclose(float(raw[name][(ci, *index)]), fd, rtol=1e-6,
                                           atol=1e-12)
            whole = (slice(None), slice(None), 2, 1)  # kernel conv2 input 2 -> output 1
            fd = (target(scaled("conv2", whole, eps), t)
                  - target(scaled("conv2", whole, -eps), t)) / (2 * eps)
            np.testing.assert_allclose(float(kernel[ci, 2, 1]), abs(fd), rtol=1e-6)


def test_batched_scores_equal_the_looped_twin():
    arch = tiny_conv()
    params = models.init_params(arch, jax.random.key(2))
    x = np.random.default_rng(1).normal(size=(7, 6, 6, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0, 2], np.int32)
    fast = C.raw_scores(arch, params, x, labels, [0, 1, 2])
    slow = C.raw_scores_looped(arch, params, x, labels, [0, 1, 2])
    for name in fast:
        scale = np.abs(slow[name]).max()
        np.testing.assert_allclose(np.asarray(fast[name]), slow[name], atol=1e-5 * scale)
    # the head: only the target's column has a gradient
    assert np.all(np.asarray(fast["head"])[0, :, 1:] == 0)


def test_dense_scores_min_max_normalised_per_layer_and_conv_per_kernel():
    arch = tiny_conv()
    params = models.init_params(arch, jax.random.key(3))
    x = np.random.default_rng(2).normal(size=(6, 6, 6, 1)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
    scores = C.circuit_scores(arch, params, x, labels, [0, 1, 2])
    for name in ("fc1", "fc2", "head"):
        s = np.asarray(scores[name]).reshape(3, -1)
        np.testing.assert_allclose(s.min(1), 0.0)
        np.testing.assert_allclose(s.max(1), 1.0)
    assert scores["conv2"].shape == (3, 3, 4)  # [C, in, out]: one score per kernel
    assert scores["head"].shape == (3, 5)  # the target's column
    weight = C.circuit_scores(arch, params, x, labels, [0, 1, 2], granularity="weight")
    assert weight["conv2"].shape == (3, 3, 3, 3, 4)


def test_first_layer_from_kernel_contributions_equals_the_masked_convolution():
    arch = tiny_conv()
    params = models.init_params(arch, jax.random.key(5))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 6, 6, 1)).astype(np.float32))
    rng = np.random.default_rng(4)
    items = {"conv1": jnp.asarray(rng.random((1, 3)) < 0.7),
             "conv2": jnp.asarray(rng.random((3, 4)) < 0.7),
             "fc1": jnp.asarray(rng.random((36, 6)) < 0.7),
             "fc2": jnp.asarray(rng.random((6, 5)) < 0.7), "head": jnp.ones(5, bool)}
    eff = C._effective_one(arch, items)  # weight-level (HWIO) conv masks, kernel-structured
    h = C.layer_input(arch, params, x, 0)
    plain = C.circuit_output(arch, params, eff, jnp.int32(1), h)
    maps = C.kernel_contributions(arch, params, x)
    assert maps.shape == (5, 6, 6, 1, 3)
    fast = C.circuit_output(arch, params, eff, jnp.int32(1), h, 0, maps)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- CSA


def test_csa_of_a_hand_computed_case():
    # 6 images, 3 classes; target 0 on images 0, 1
    logits = jnp.array([[3., 1., 0.], [0., 2., 1.], [5., 0., 0.], [0., 0., 1.],
                        [1., 1., 2.], [0., 4., 0.]])
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    cats = jnp.array([0])
    # the network predicts 0 on images 0 and 2: hits 1/2, false alarms 1/4
    np.testing.assert_allclose(C.network_csa(logits, labels, cats), [0.5 - 0.25])
    m = C.other_max(logits, cats)[0]
    np.testing.assert_allclose(m, [1, 2, 0, 1, 2, 4])
    # a circuit output u + beta replaces logit 0: predicted iff u + beta > m
    u = jnp.array([2., 2.5, -1., 0., 0., 0.])
    # beta = 0: images 0 (2 > 1) and 1 (2.5 > 2) -> hits 1, false alarms 0
    np.testing.assert_allclose(C.substitution_csa(u, jnp.float32(0.0), m, labels == 0), 1.0)
    # beta = 1.5: also images 2 (0.5 > 0) and 3 (1.5 > 1) -> 1 - 2/4
    np.testing.assert_allclose(C.substitution_csa(u, jnp.float32(1.5), m, labels == 0), 0.5)
    csa, beta = C.fit_bias(m - u, labels == 0)
    # d = m - u = [-1, -0.5, 1, 1, 2, 4]: best is to predict {0, 1}: beta in (-0.5, 1)
    np.testing.assert_allclose(csa, 1.0)
    np.testing.assert_allclose(beta, 0.25)


def test_fit_bias_finds_the_global_maximum():
    rng = np.random.default_rng(4)
    for _ in range(20):
        d = jnp.asarray(np.round(rng.normal(size=30), 1).astype(np.float32))  # ties included
        t = jnp.asarray(rng.random(30) < 0.3).at[0].set(True).at[1].set(False)
        csa, beta = C.fit_bias(d, t)
        grid = np.concatenate([np.asarray(d) - 1e-3, np.asarray(d) + 1e-3, [-10.0, 10.0]])
        brute = max(float(C.substitution_csa(jnp.zeros(30), jnp.float32(b), d, t))
                    for b in grid)
        np.testing.assert_allclose(csa, brute, atol=1e-6)
        np.testing.assert_allclose(C.substitution_csa(jnp.zeros(30), beta, d, t), csa,
                                   atol=1e-6)


def test_kept_level_is_the_last_of_the_passing_prefix():
    csa = np.array([[1.0, 0.95, 0.85, 0.95], [1.0, 0.5, 0.95, 0.95], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(C.kept_levels(csa, np.array([1.0, 1.0, 1.0]), 0.9),
                                  [1, 0, 3])


# ----------------------------------------------------------------------------- masks


def test_effective_mask_drops_weights_off_every_input_target_path():
    arch = models.architecture("mlp", widths=(3, 2), input_dim=2, dropout=0.0, num_classes=2)
    fc1 = jnp.array([[1, 0, 0], [1, 0, 0]], bool)  # unit 1, 2 of fc1 have no input
    fc2 = jnp.array([[1, 0], [1, 1], [0, 0]], bool)  # fc2 unit 1 is fed only by dead fc1 unit 1
    head = jnp.array([True, False])  # only fc2 unit 0 reaches the target
    eff = C.effective_masks(arch, {"fc1": fc1[None], "fc2": fc2[None], "head": head[None]})
    np.testing.assert_array_equal(eff["fc1"][0], fc1)  # fc1 unit 0 -> fc2 unit 0 -> target
    np.testing.assert_array_equal(eff["fc2"][0], [[1, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(eff["head"][0], [True, False])
    fc1_cut = fc1.at[:, 0].set(False)  # nothing reaches fc1 any more: the circuit is empty
    eff = C.effective_masks(arch, {"fc1": fc1_cut[None], "fc2": fc2[None], "head": head[None]})
    assert not any(bool(jnp.any(v)) for v in eff.values())


def test_effective_mask_through_conv_pool_and_flatten():
    arch = tiny_conv()  # conv1 3 -> conv2 4 (pool 2: 3x3 positions) -> fc1 6 -> fc2 5 -> head
    items = {"conv1": jnp.ones((3, 1, 3), bool)[0:1].at[0, 0, 2].set(False),
             "conv2": jnp.zeros((1, 3, 4), bool).at[0, 0, 1].set(True).at[0, 2, 3].set(True),
             "fc1": jnp.ones((1, 36, 6), bool), "fc2": jnp.ones((1, 6, 5), bool),
             "head": jnp.ones((1, 5), bool)}
    eff = C.effective_masks(arch, items)
    # conv1 channel 2 has no input, so conv2's kernel 2 -> 3 is gone; channel 1 -> 1 stays
    assert eff["conv2"].shape == (1, 3, 3, 3, 4)
    kernels = np.asarray(jnp.any(eff["conv2"][0], axis=(0, 1)))
    assert kernels.sum() == 1 and kernels[0, 1]
    # fc1 keeps only the rows of conv2 channel 1 (9 positions of 4 channels, HWC order)
    rows = np.asarray(jnp.any(eff["fc1"][0], axis=1))
    np.testing.assert_array_equal(np.flatnonzero(rows), np.arange(9) * 4 + 1)
    # conv1: only kernels into conv1 channel 0 stay (channel 1 has no kernel to an alive unit)
    np.testing.assert_array_equal(np.asarray(jnp.any(eff["conv1"][0], axis=(0, 1))),
                                  [[True, False, False]])


def test_jaccard_and_sparsity_of_hand_masks():
    arch = models.architecture("mlp", widths=(2,), input_dim=2, dropout=0.0, num_classes=2)
    masks = {"fc1": jnp.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], bool),
             "head": jnp.array([[1, 1], [1, 0]], bool)}
    jac = C.circuit_jaccard(arch, masks)
    np.testing.assert_allclose(jac["total"], [[1, 0.5], [0.5, 1]])
    empty = {"fc1": jnp.zeros((2, 2, 2), bool), "head": masks["head"]}
    assert np.isnan(C.circuit_jaccard(arch, empty)["total"][0, 1])  # undefined, not 1
    sp = C.sparsity(arch, masks)
    np.testing.assert_allclose(sp["fc1"], [0.5, 0.75])
    np.testing.assert_allclose(sp["total"], [2 / 6, 4 / 6])


# ----------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def digits_circuits(digits_net):
    arch, params, sets, job = digits_net
    return C.extract_circuits(arch, params, sets["scoring"], sets["extraction"], [0, 3, 7],
                              job.circuit)


def test_batched_sweep_equals_the_one_at_a_time_twin(digits_net, digits_circuits):
    arch, params, sets, job = digits_net
    cats = [0, 3, 7]
    fast = digits_circuits
    slow = C.extract_circuits(arch, params, sets["scoring"], sets["extraction"], cats,
                              job.circuit, sequential=True)
    for g in fast.groups:
        np.testing.assert_array_equal(fast.groups[g].kept_level, slow.groups[g].kept_level)
        np.testing.assert_array_equal(fast.groups[g].csa, slow.groups[g].csa)
        np.testing.assert_allclose(fast.groups[g].beta, slow.groups[g].beta, atol=1e-5)
    for name in fast.items:
        np.testing.assert_array_equal(fast.items[name], slow.items[name])
        np.testing.assert_array_equal(fast.effective[name], slow.effective[name])
    # a trained network: its circuits are sparse, keep the CSA criterion, and prune both groups
    assert np.all(fast.baseline_csa > 0.5)
    assert np.all(fast.extraction_csa >= 0.9 * fast.baseline_csa)
    assert np.all(fast.groups["dense"].kept_level >= 1)
    sp = C.sparsity(arch, fast.effective)["total"]
    assert np.all(sp >= C.sparsity(arch, fast.items)["total"]) and np.all(sp > 0.3)


@pytest.mark.parametrize("i,t", [(0, 0), (2, 7)])
def test_extraction_csa_is_the_effective_circuits(digits_net, digits_circuits, i, t):
    """The CSA a sweep reports at the kept level is that of the effective circuit, recomputed
    here by hand: mask the weights, replace the target logit, count hits and false alarms."""
    arch, params, sets, job = digits_net
    circuits = digits_circuits
    x, labels = sets["extraction"]
    eff = {k: np.asarray(v[i]).astype(np.float32) for k, v in circuits.effective.items()}
    masked = {name: {**p, "kernel": p["kernel"] * eff[name]} if name != "head" else p
              for name, p in params.items()}
    _, acts = models.apply(arch, masked, None, jnp.asarray(x))
    u = np.asarray(acts["fc2"]) @ (np.asarray(params["head"]["kernel"])[:, t] * eff["head"])
    full = np.array(models.apply(arch, params, None, jnp.asarray(x))[0])
    full[:, t] = u + circuits.beta[i]
    pred = full.argmax(1)
    by_hand = np.mean(pred[labels == t] == t) - np.mean(pred[labels != t] == t)
    np.testing.assert_allclose(circuits.extraction_csa[i], by_hand, atol=1e-6)
    assert circuits.extraction_csa[i] >= 0.9 * circuits.baseline_csa[i]


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error_before_any_work(digits_net):
    arch, params, sets, job = digits_net
    with pytest.raises(ValueError, match=r"categories \[10\] are out of range"):
        C.extract_circuits(arch, params, sets["scoring"], sets["extraction"], [10])
    x, y = sets["scoring"]
    with pytest.raises(ValueError, match=r"scoring set has no image of categories \[4\]"):
        C.extract_circuits(arch, params, (x[y != 4], y[y != 4]), sets["extraction"], [4])
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="threshold must be in"):
            C.CircuitConfig(threshold=bad)
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="class 0 has 5 images in here, fewer than asked"):
        image_sets((labels, labels), None, CircuitJob(None, 2, 3, 1), ("here", ""))


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory, digits_net):
    arch, params, _, _ = digits_net
    path = tmp_path_factory.mktemp("circ") / "model"
    stacked = jax.tree.map(lambda a: a[None], params)
    checkpoint.save(path, stacked, metadata={"data": "digits", "seeds": [0]}, arch=arch)
    return path


@pytest.mark.parametrize("extra,message", [
    (["--categories", "12"], "categories [12] are out of range"),
    (["--threshold", "1.5"], "--threshold: 1.5 is not in (0.0, 1.0]"),
    (["--extraction-per-class", "500"], "lower --scoring-per-class or --extraction-per-class"),
    (["--categories", "one"], "--categories must be 'all' or integers"),
])
def test_cli_errors(digits_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "c.json"
    code = main(["circuits", "--checkpoint", str(digits_checkpoint), "--no-progress",
                 "--json", str(out), "--figure", str(tmp_path / "f.png"), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert "circuits: error:" in err and message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "f.png").exists()


def test_cli_circuits_end_to_end(digits_checkpoint, tmp_path):
    out, fig = tmp_path / "c.json", tmp_path / "overlap.png"
    code = main(["circuits", "--checkpoint", str(digits_checkpoint), "--categories", "1,2,8",
                 "--threshold", "0.9", "--scoring-per-class", "3", "--extraction-per-class",
                 "10", "--eval-per-class", "15", "--levels", "5", "--json", str(out),
                 "--figure", str(fig), "--no-progress"])
    assert code == 0 and fig.stat().st_size > 0
    result = json.loads(out.read_text())
    assert result["categories"] == [1, 2, 8] and result["data"] == "digits"
    assert result["counts"] == {"scoring": 30, "extraction": 100, "eval": 150}
    assert result["options"]["circuit"]["threshold"] == 0.9
    assert len(result["rows"]) == 3 and result["jaxprune_version"]
    rows = result["rows"]
    np.testing.assert_allclose(result["mean_sparsity"], np.mean([r["sparsity"] for r in rows]))
    for r in rows:
        assert 0.0 < r["sparsity_extracted"] <= r["sparsity"] <= 1.0
        assert r["relative_csa"] == pytest.approx(r["heldout_csa"] / r["heldout_baseline_csa"])
    assert np.asarray(result["per_seed"][0]["jaccard"]["total"]).shape == (3, 3)


def test_alexnet_weights_and_image_folder_end_to_end(tmp_path):
    """The ImageNet path: a random-weight AlexNet (narrowed, 64x64 input) saved in
    torchvision's layout, a class-subfolder image folder whose folders name output units."""
    from PIL import Image

    from jaxprune.weights import _torch_shapes

    arch = models.architecture("alexnet", widths=(8, 8, 8, 8, 8, 16, 16),
                               input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    state = {}
    for prefix, w_shape, b_shape in _torch_shapes(arch).values():
        fan_in = np.prod(w_shape[1:])
        state[f"{prefix}.weight"] = rng.normal(0, 1 / np.sqrt(fan_in), w_shape).astype("f4")
        state[f"{prefix}.bias"] = np.zeros(b_shape, "f4")
    np.savez(tmp_path / "alexnet.npz", **state)
    for unit in (3, 500):
        folder = tmp_path / "images" / str(unit)
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    job = CircuitJob(None, 1, 2, 1, C.CircuitConfig(levels=(0.9,)))
    out = circuits_command(model="alexnet", weights=str(tmp_path / "alexnet.npz"),
                           images=str(tmp_path / "images"), image_size=64, job=job,
                           figure=str(tmp_path / "o.png"), progress=False,
                           model_config={"widths": (8, 8, 8, 8, 8, 16, 16)})
    assert out["categories"] == [3, 500] and out["counts"] == {"scoring": 2, "extraction": 4,
                                                                 "eval": 2}
    assert out["model"] == "alexnet" and len(out["rows"]) == 2
    assert set(out["rows"][0]["layer_sparsity"]) == {*arch.layer_names, "head"}
    assert (tmp_path / "o.png").stat().st_size > 0


# ----------------------------------------------------------------------------- experiment


def test_experiment_quick_mode_resumes_and_refuses_other_options(tmp_path, shared_data):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "circuits_experiment", Path(__file__).parents[1] / "experiments" / "circuits.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    args = ["--quick", "--datasets", "mnist", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--data-dir", str(shared_data), "--no-progress"]
    first = experiment.main(args)["mnist"]
    for ext in ("json", "md", "png"):
        assert (tmp_path / "out" / f"circuits_mnist.{ext}").stat().st_size > 0
    assert len(first["rows"]) == 2 * 10 and first["options"]["job"]["circuit"]["threshold"] == 0.9
    for key in ("mean_sparsity", "sd_sparsity", "mean_relative_csa", "sd_relative_csa"):
        assert np.isfinite(first[key])
    again = experiment.main(args)["mnist"]  # finished seeds are kept, not redone
    assert [s["seconds"] for s in again["per_seed"]] == [s["seconds"] for s in first["per_seed"]]
    path = tmp_path / "out" / "circuits_mnist.json"
    payload = json.loads(path.read_text())
    payload["options"]["job"]["circuit"]["threshold"] = 0.5
    path.write_text(json.dumps(payload))
    with pytest.raises(SystemExit, match="other options"):
        experiment.main(args)
