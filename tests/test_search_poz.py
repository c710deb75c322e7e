"""PoZ search: the vectorised engine makes the same decisions as its sequential twin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_search as assert_same

from jaxprune import geometry, models
from jaxprune.masks import layer_flops
from jaxprune.models.network import preactivations, readout_from, running_sum, unit_contribution
from jaxprune.search.curves import fraction_curve
from jaxprune.search.poz import (
    PoZConfig,
    candidate_flops,
    chunk_for,
    poz_search,
    poz_search_directions,
    poz_search_sequential,
)

CASES = [  # (network config, stimuli, threshold, chunk size)
    (("lenet5_cifar", {}), 60, 0.9, 4),
    (("lenet5_mnist", {"input_shape": (8, 8, 1), "widths": (8, 8, 24, 12)}), 50, 0.8, 5),
    (("mlp", {"input_dim": 20, "widths": (24, 16, 12), "dropout": 0.0}), 40, 0.95, 3),
]


@pytest.mark.parametrize("direction", ["bottom-up", "top-down"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_vectorised_equals_sequential(case, direction):
    (name, config), n, threshold, chunk = CASES[case]
    arch = models.architecture(name, **config)
    params = models.init_stack(arch, [case, case + 10])
    x = jax.random.normal(jax.random.key(case), (n, *arch.input_shape))
    cfg = PoZConfig(direction=direction, threshold=threshold, chunk_size=chunk)
    vec = poz_search(arch, params, x, cfg, stacked=True, seed_batch=2)
    seq = poz_search_sequential(arch, params, x, cfg, stacked=True)
    assert_same(vec, seq)
    # something was pruned, and the search stopped where the twin did
    assert any(sum(r.kept.values()) < sum(arch.widths.values()) for r in vec)


def test_recompute_rank_and_external_target():
    arch = models.architecture("mlp", input_dim=16, widths=(20, 10), dropout=0.0)
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (30, 16))
    human = np.asarray(geometry.rsm(jax.random.normal(jax.random.key(2), (30, 5))))
    for cfg, target in [(PoZConfig(rank="recompute", threshold=0.9), None),
                        (PoZConfig(direction="top-down"), human)]:
        vec = poz_search(arch, params, x, cfg, target_rsm=target)
        seq = poz_search_sequential(arch, params, x, cfg, target_rsm=target)
        assert_same(vec, seq)
    # external target: default threshold is the unpruned network's own fit
    r = poz_search(arch, params, x, PoZConfig(), target_rsm=human)[0]
    assert r.threshold == pytest.approx(r.baseline_score)


def test_seed_batches_and_single_equal_stacked():
    arch = models.architecture("mlp", input_dim=12, widths=(16, 8), dropout=0.0)
    params = models.init_stack(arch, [0, 1, 2])
    x = jax.random.normal(jax.random.key(3), (25, 12))
    cfg = PoZConfig(threshold=0.9)
    together = poz_search(arch, params, x, cfg, stacked=True, seed_batch=3)
    apart = poz_search(arch, params, x, cfg, stacked=True, seed_batch=1)
    single = poz_search(arch, jax.tree.map(lambda p: p[2], params), x, cfg)
    assert_same(together, apart)
    assert_same(together[2:], single)


def test_unit_contributions_sum_to_next_preactivation():
    arch = models.architecture("lenet5_cifar")
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    masks = {layer.name: jnp.ones(layer.width) for layer in arch.layers}
    pre = preactivations(arch, params, masks, x)
    for i in range(3):
        a = jax.nn.relu(pre[i])
        total = sum(unit_contribution(arch, params, i, a, jnp.int32(u))
                    for u in range(arch.layers[i].width))
        bias = params[arch.layers[i + 1].name]["bias"]
        np.testing.assert_allclose(total + bias.reshape((1,) * (total.ndim - 1) + (-1,)),
                                   pre[i + 1], atol=1e-4)
    _, acts = models.apply(arch, params, masks, x)
    np.testing.assert_allclose(readout_from(arch, params, masks, 2, pre[2]), acts["fc2"],
                               atol=1e-5)


def test_layer_keeps_one_unit_and_never_prunes_below_threshold():
    arch = models.architecture("mlp", input_dim=10, widths=(6, 4), dropout=0.0)
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (20, 10))
    r = poz_search(arch, params, x, PoZConfig(threshold=1e-6, metric="r"))[0]
    assert all(k >= 1 for k in r.kept.values())  # even a threshold no removal breaks
    assert r.trace[0].removed <= 5
    for threshold in (0.95, 0.8):
        r = poz_search(arch, params, x, PoZConfig(threshold=threshold))[0]
        for t in r.trace:
            accepted, refused = t.scores[: t.removed], t.scores[t.removed:]
            assert all(f >= threshold for f in accepted)  # every kept removal passed
            assert not refused or refused[0] < threshold  # the search stopped at a failure
        assert r.final_score >= threshold
        assert any(t.removed > 0 for t in r.trace) and any(t.scores[t.removed:] for t in r.trace)


def test_directions_jaccard_and_resume(tmp_path, monkeypatch):
    arch = models.architecture("mlp", input_dim=10, widths=(12, 8), dropout=0.0)
    params = models.init_stack(arch, [0, 1])
    x = jax.random.normal(jax.random.key(1), (20, 10))
    path = tmp_path / "search.json"
    first = poz_search_directions(arch, params, x, PoZConfig(threshold=0.9), stacked=True,
                                  resume_path=str(path), seed_batch=1)
    assert set(first.results) == {"bottom-up", "top-down"} and len(first.jaccard) == 2
    assert all(0.0 <= v <= 1.0 for j in first.jaccard for v in j.values())
    # a rerun finds every seed finished and returns the saved results without searching
    import jaxprune.search.poz as poz_module

    def no_search(*args, **kwargs):
        raise AssertionError("the rerun searched again")

    monkeypatch.setattr(poz_module, "_search_batch", no_search)
    again = poz_search_directions(arch, params, x, PoZConfig(threshold=0.9), stacked=True,
                                  resume_path=str(path), seed_batch=1)
    for d in first.results:
        for a, b in zip(first.results[d], again.results[d], strict=True):
            assert a.kept == b.kept and a.seed == b.seed


def test_fraction_curve_matches_explicit_masks():
    arch = models.architecture("mlp", input_dim=10, widths=(20, 8), dropout=0.0)
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (30, 10))
    curve = fraction_curve(arch, params, x, "fc1", levels=(0.25, 0.5), n_random=5)
    assert curve.removed == [5, 10]
    _, acts = models.apply(arch, params, None, x)
    base = acts["fc2"]
    poz = np.asarray(geometry.poz(acts["fc1"]))
    order = np.argsort(-poz, kind="stable")
    for k, fit in zip(curve.removed, curve.fit, strict=True):
        m = np.ones(20, np.float32)
        m[order[:k]] = 0.0
        _, pruned = models.apply(arch, params, {"fc1": jnp.asarray(m)}, x)
        expected = float(geometry.rsa(geometry.rsm(base), geometry.rsm(pruned["fc2"]))) ** 2
        assert fit == pytest.approx(expected, abs=1e-4)
    assert len(curve.random_fits) == 5 and len(curve.p_poz_beats_random) == 2


@pytest.mark.parametrize("kwargs, x_shape, match", [
    ({"config": PoZConfig(threshold=1.5)}, (10, 20), "threshold must be in"),
    ({"config": PoZConfig(threshold=0.0)}, (10, 20), "threshold must be in"),
    ({"config": PoZConfig(layers=("fc7",))}, (10, 20), "no layer 'fc7'"),
    ({}, (2, 20), "at least 3 stimuli"),
    ({}, (10, 21), r"stimuli have shape \(10, 21\)"),
    ({"target_rsm": np.eye(9)}, (10, 20), r"target RSM has shape \(9, 9\)"),
    ({"config": PoZConfig(direction="sideways")}, (10, 20), "direction must be"),
])
def test_bad_input(kwargs, x_shape, match):
    arch = models.architecture("mlp", input_dim=20, widths=(8,))
    params = models.init_params(arch, jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        poz_search(arch, params, np.zeros(x_shape, np.float32), **kwargs)


def test_chunks_follow_the_cost_model():
    arch = models.architecture("lenet5_cifar")
    small, large = PoZConfig(), PoZConfig(chunk_size=64)
    # conv1's candidates cost the most per stimulus, so its chunks are the smallest
    costs = [candidate_flops(arch, i, 1000) for i in range(4)]
    assert costs[0] == max(costs) and all(c > 0 for c in costs)
    # chunks shrink as stimuli grow, never below 1, never above chunk_size or width - 1
    for i, layer in enumerate(arch.layers):
        sizes = [chunk_for(arch, i, n, large) for n in (10, 1000, 10_000, 100_000)]
        assert sizes == sorted(sizes, reverse=True)
        assert all(1 <= c <= min(64, layer.width - 1) for c in sizes)
        assert chunk_for(arch, i, 10, small) == min(32, layer.width - 1)
    assert chunk_for(arch, 0, 100_000, large) == 1
    # the estimate counts the unit's share of the next layer and every layer above it
    n = 7
    geo_d = arch.widths["fc2"]
    per = layer_flops(arch)
    expected = n * (4 * geo_d**2 + per["fc2"] / arch.widths["fc1"])
    assert candidate_flops(arch, 2, n) == pytest.approx(expected)


@pytest.mark.parametrize("direction", ["bottom-up", "top-down"])
def test_cost_limited_chunks_equal_sequential(direction):
    """A tiny chunk_flops forces chunks of one candidate: still the twin's masks."""
    arch = models.architecture("lenet5_cifar")
    params = models.init_stack(arch, [5])
    x = jax.random.normal(jax.random.key(7), (40, *arch.input_shape))
    cfg = PoZConfig(direction=direction, threshold=0.9, chunk_flops=1.0)
    assert all(chunk_for(arch, i, 40, cfg) == 1 for i in range(4))
    vec = poz_search(arch, params, x, cfg, stacked=True)
    seq = poz_search_sequential(arch, params, x, cfg, stacked=True)
    assert_same(vec, seq)


def test_running_sum_equals_cumsum():
    c = jax.random.normal(jax.random.key(11), (7, 5, 3))
    np.testing.assert_allclose(running_sum(c), np.cumsum(np.asarray(c), axis=0), atol=1e-5)
