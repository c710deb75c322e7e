"""Greedy CKA pruning: the vectorised search makes the sequential twin's choices, the rank-one
scores equal geometry.cka of explicitly masked activations, the search is greedy, bad input.

The twin comparisons run in float64 (``jax.enable_x64``): in float32, rounding (~1e-7) can
reorder two candidates whose CKAs differ by less than that; float32 scores are compared with
a tolerance instead.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import numpy_params, numpy_stimuli

from jaxprune import geometry
from jaxprune.masks import compression_rate
from jaxprune.models import apply, architecture, init_params
from jaxprune.search.cka import (
    TIE_ULPS,
    _quadratic_form,
    candidate_cka,
    cka_prune,
    cka_prune_layer,
    layerwise_cka,
    n_to_remove,
)
from jaxprune.search.result import write_json

MLP = architecture("mlp", input_dim=12, widths=(14, 10, 8), dropout=0.0)
CNN = architecture("lenet5_mnist", input_shape=(8, 8, 1), widths=(4, 6, 12, 8))


def net(arch, seed, dtype=np.float32):
    return jax.tree.map(jnp.asarray, numpy_params(arch, seed, scale="fan_in", dtype=dtype))


def stim(arch, seed, n=40, dtype=np.float32):
    return numpy_stimuli(arch, seed, n, dtype)


def orders(result):
    return [(t.layer, t.order, t.removed) for t in result.trace]


def assert_twins(arch, seed, width_note="", **options):
    with jax.enable_x64(True):
        params, x = net(arch, seed, np.float64), stim(arch, seed, dtype=np.float64)
        fast = cka_prune(arch, params, x, **options)
        slow = cka_prune(arch, params, x, sequential=True, **options)
    assert orders(fast) == orders(slow), (seed, width_note, options)
    for a, b in zip(fast.trace, slow.trace, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-10)
    for k in fast.masks:
        np.testing.assert_array_equal(fast.masks[k], slow.masks[k])


@pytest.mark.parametrize("widths", [(14, 10, 8), (9, 16, 6)])
def test_twin_layer_linear(widths):
    arch = architecture("mlp", input_dim=12, widths=widths, dropout=0.0)
    for seed in range(3):
        assert_twins(arch, seed, widths, fraction=0.75, layers=("fc1", "fc2"))
        assert_twins(arch, seed, widths, fraction=0.6, debiased=True, layers=("fc1", "fc2"))


@pytest.mark.parametrize(
    "options",
    [
        dict(compare="readout"),
        dict(compare="later"),
        dict(compare="readout", debiased=True),
        dict(compare="layer", kernel="rbf", layers=("fc2",)),
        dict(compare="readout", kernel="rbf", sigma=0.5),
        dict(compare="preact"),
        dict(compare="preact", debiased=True),
        dict(compare="preact", kernel="rbf", layers=("fc2",)),
        dict(compare="readout", greedy="once"),
        dict(compare="preact", greedy="once"),
    ],
    ids=["readout", "later", "readout-debiased", "layer-rbf", "readout-rbf", "preact",
         "preact-debiased", "preact-rbf", "readout-once", "preact-once"],
)
def test_twin_other_comparisons(options):
    options = {"layers": ("fc1", "fc2"), **options}
    for seed in (0,) if options.get("kernel") == "rbf" else (0, 3):
        assert_twins(MLP, seed, fraction=0.5, chunk_size=3, **options)


def test_twin_conv_network():
    """Conv maps (units = channels over positions), pooling, flattening into a dense layer."""
    assert_twins(CNN, 5, fraction=0.5, compare="readout", layers=("conv1", "conv2"))


forward = jax.jit(apply, static_argnums=0)


def explicit_scores(arch, params, x, layer, masks, reference, **cka):
    """geometry.cka of the layer's explicitly masked activations, one candidate at a time."""
    _, ref = forward(arch, params, reference, x)
    out = np.full(arch.widths[layer], -np.inf)
    for u in np.flatnonzero(masks[layer]):
        m = {**masks, layer: masks[layer].at[u].set(0.0)}
        _, acts = forward(arch, params, m, x)
        out[u] = geometry.cka(ref[layer].reshape(len(x), -1), acts[layer].reshape(len(x), -1),
                              **cka)
    return out


@pytest.mark.filterwarnings("ignore::jaxprune.geometry.UndefinedFitWarning")  # last unit gone
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("arch,layer", [(MLP, "fc2"), (CNN, "conv2"), (CNN, "conv1")])
def test_rank_one_scores_equal_geometry_cka(arch, layer, debiased):
    params, x = net(arch, 7), jnp.asarray(stim(arch, 7))
    rng = np.random.default_rng(0)
    masks = {l.name: jnp.asarray((rng.random(l.width) > 0.3).astype(np.float32))
             for l in arch.layers}
    masks[layer] = masks[layer].at[0].set(1.0)
    reference = {k: jnp.ones_like(v) for k, v in masks.items()}  # the unpruned network
    fast = candidate_cka(arch, params, x, layer, masks, reference_masks=reference,
                         debiased=debiased)
    slow = explicit_scores(arch, params, x, layer, masks, reference, debiased=debiased)
    assert np.array_equal(np.isinf(fast), np.asarray(masks[layer]) == 0)
    np.testing.assert_allclose(fast, slow, atol=2e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_and_kernel_forms_agree(debiased):
    rng = np.random.default_rng(1)
    a = jnp.asarray(np.maximum(rng.normal(size=(30, 5, 4)), 0), jnp.float32)
    x = jnp.asarray(rng.normal(size=(30, 7)), jnp.float32)
    for u, v in zip(_quadratic_form(x, a, debiased, True), _quadratic_form(x, a, debiased, False),
                    strict=True):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-3)


def test_float32_scores_match_twin_within_rounding():
    params, x = net(MLP, 4), stim(MLP, 4)
    rng = np.random.default_rng(2)
    masks = {"fc1": (rng.random(14) > 0.4).astype(np.float32)}
    for compare in ("layer", "readout", "later"):
        fast = candidate_cka(MLP, params, x, "fc1", masks, compare=compare, chunk_size=4)
        slow = candidate_cka(MLP, params, x, "fc1", masks, compare=compare, sequential=True)
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_search_is_greedy_not_one_shot():
    """Each step's scores are those of the network with the earlier choices removed."""
    params, x = net(MLP, 12), stim(MLP, 12)
    result = cka_prune_layer(MLP, params, x, "fc1", fraction=0.6)
    (trace,) = result.trace
    assert trace.removed == len(trace.order) == n_to_remove(14, 0.6) == 8
    ref = {"fc1": np.ones(14, np.float32)}
    mask = np.ones(14, np.float32)
    first = candidate_cka(MLP, params, x, "fc1")
    for u, score in zip(trace.order, trace.scores, strict=True):
        scores = candidate_cka(MLP, params, x, "fc1", {"fc1": mask}, reference_masks=ref)
        best = np.flatnonzero(scores >= scores.max() * (1 - TIE_ULPS * np.finfo(np.float32).eps))
        assert u == best[0] and score == pytest.approx(scores[u], abs=1e-6)  # ties: lowest
        mask[u] = 0.0
        _, acts = apply(MLP, params, {"fc1": jnp.asarray(mask)}, jnp.asarray(x))
        _, orig = apply(MLP, params, None, jnp.asarray(x))
        assert score == pytest.approx(float(geometry.cka(orig["fc1"], acts["fc1"])), abs=2e-5)
    one_shot = list(np.argsort(-first, kind="stable")[:8])
    assert trace.order != one_shot  # later scores moved after earlier removals
    np.testing.assert_array_equal(result.masks["fc1"], mask)
    assert np.all(np.diff(trace.scores) <= 1e-6)


def test_floor_stops_before_the_first_removal_below_it():
    params, x = net(MLP, 2), stim(MLP, 2)
    full = cka_prune_layer(MLP, params, x, "fc1", fraction=None, floor=1e-6)
    floor = float(np.mean(full.trace[0].scores[3:5]))
    result = cka_prune_layer(MLP, params, x, "fc1", fraction=None, floor=floor)
    (trace,) = result.trace
    assert trace.removed == len(trace.order) - 1
    assert min(trace.scores[:-1]) >= floor > trace.scores[-1]
    assert trace.order[:-1] == full.trace[0].order[: trace.removed]
    assert int(result.masks["fc1"].sum()) == 14 - trace.removed
    capped = cka_prune_layer(MLP, params, x, "fc1", fraction=0.2, floor=floor)
    assert capped.trace[0].removed == min(3, trace.removed)


def test_result_fields_masks_and_json(tmp_path):
    params, x = net(MLP, 0), stim(MLP, 0)
    start = {"fc2": np.array([1, 0] * 5, np.float32)}
    result = cka_prune(MLP, params, x, fraction=0.5, masks=start, compare="readout", seed=3)
    assert result.method == "cka" and result.seed == 3 and result.direction == "bottom-up"
    assert [t.layer for t in result.trace] == ["fc1", "fc2", "fc3"]
    assert result.kept == {"fc1": 7, "fc2": 2, "fc3": 4}  # fc2: 5 kept, round(2.5) = 3 removed
    assert np.all(result.masks["fc2"][1::2] == 0)
    assert result.compression_rate == pytest.approx(compression_rate(MLP, result.masks))
    assert result.baseline_score == 1.0 and 0 < result.final_score < 1
    lc = layerwise_cka(MLP, x, params, result.masks, ref_masks=start)
    assert result.final_score == pytest.approx(lc["fc3"], abs=1e-6)
    path = write_json(tmp_path / "r.json", result)
    assert json.loads(path.read_text())["kept"]["fc1"] == 7
    top = cka_prune(MLP, params, x, fraction=0.5, direction="top-down")
    assert [t.layer for t in top.trace] == ["fc3", "fc2", "fc1"]


def test_fraction_zero_and_small_layers():
    params, x = net(MLP, 0), stim(MLP, 0)
    assert cka_prune(MLP, params, x, fraction=0.0).kept == MLP.widths
    assert [n_to_remove(k, 0.99) for k in (0, 1, 2, 10)] == [0, 0, 1, 9]
    assert n_to_remove(5, 0.5) == 3 and n_to_remove(4, 0.5) == 2 and n_to_remove(7, None) == 6


def test_bad_input_gives_clear_errors():
    params, x = net(MLP, 0), stim(MLP, 0)
    for fraction in (1.0, -0.1, 1.5, "half", None):
        with pytest.raises(ValueError, match="fraction"):
            cka_prune(MLP, params, x, fraction=fraction)
    with pytest.raises(ValueError, match=r"fc1.*fc2.*fc3"):
        cka_prune(MLP, params, x, layers=["conv9"])
    for floor in (0.0, 1.2, -1.0):
        with pytest.raises(ValueError, match="floor"):
            cka_prune(MLP, params, x, floor=floor)
    with pytest.raises(ValueError, match="compare"):
        cka_prune(MLP, params, x, compare="logits")
    with pytest.raises(ValueError, match="kernel"):
        cka_prune(MLP, params, x, kernel="cosine")
    with pytest.raises(ValueError, match="stimuli"):
        cka_prune(MLP, params, x[:, :5])
    with pytest.raises(ValueError, match="at least 4"):
        cka_prune(MLP, params, x[:3], debiased=True)
    with pytest.raises(ValueError, match="twice"):
        cka_prune(MLP, params, x, layers=["fc1", "fc1"])
    low = architecture("mlp", input_dim=12, widths=(6, 5), dropout=0.0)
    low = type(low)(**{**low.__dict__, "readout": "fc1"})
    with pytest.raises(ValueError, match="above the readout"):
        cka_prune(low, init_params(low, jax.random.key(0)), x, layers=["fc2"], compare="readout")
    with pytest.raises(ValueError, match="not binary"):
        cka_prune(MLP, params, x, masks={"fc1": np.full(14, 0.5, np.float32)})


def test_greedy_once_removes_in_the_order_of_the_first_scores():
    params, x = net(MLP, 4), stim(MLP, 4)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        x64 = x.astype(np.float64)
        first = candidate_cka(MLP, params64, x64, "fc1")
        once = cka_prune_layer(MLP, params64, x64, "fc1", fraction=0.5, greedy="once")
        truly = cka_prune_layer(MLP, params64, x64, "fc1", fraction=0.5)
    (trace,) = once.trace
    assert trace.order == list(np.argsort(-first, kind="stable")[:7])
    np.testing.assert_allclose(trace.scores, first[trace.order], atol=1e-12)
    assert once.config["greedy"] == "once" and truly.trace[0].order != trace.order
    with pytest.raises(ValueError, match="greedy must be one of"):
        cka_prune(MLP, params, x, greedy="sometimes")


def test_preact_compares_the_pre_activation_with_the_unit_at_its_bias():
    params, x = net(MLP, 8), stim(MLP, 8)
    scores = candidate_cka(MLP, params, x, "fc2", compare="preact")
    z = x @ np.asarray(params["fc1"]["kernel"]) + np.asarray(params["fc1"]["bias"])
    z = np.maximum(z, 0) @ np.asarray(params["fc2"]["kernel"]) + np.asarray(params["fc2"]["bias"])
    for u in (0, 3):
        zu = z.copy()
        zu[:, u] = float(params["fc2"]["bias"][u])
        assert scores[u] == pytest.approx(float(geometry.cka(z, zu)), abs=1e-5)


def test_ties_are_relative_so_float32_choices_follow_float64():
    """A wide pre-ReLU layer: at some step the best two candidates differ by less than the old
    absolute tie tolerance (8 float32 eps) but by more than float32 rounding, so they must not be
    tied; the float32 search makes the float64 twin's choices."""
    arch = architecture("mlp", input_dim=32, widths=(256, 16), dropout=0.0)
    kwargs = dict(layers=("fc1",), fraction=8 / 256, compare="preact")
    with jax.enable_x64(True):
        params, x = net(arch, 0, np.float64), stim(arch, 1, n=300, dtype=np.float64)
        r64 = cka_prune(arch, params, x, **kwargs)
        mask, gaps = np.ones(256), []
        for u in r64.trace[0].order:
            s = np.sort(candidate_cka(arch, params, x, "fc1", {"fc1": mask},
                                      reference_masks={}, compare="preact"))[::-1]
            gaps.append(s[0] - s[1])
            mask[u] = 0.0
        params32 = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
    r32 = cka_prune(arch, params32, x.astype(np.float32), **kwargs)
    assert r32.trace[0].order == r64.trace[0].order
    assert min(gaps) < 8 * np.finfo(np.float32).eps


def test_cka_config_is_validated_hashable_data():
    from jaxprune.search import CKAConfig

    config = CKAConfig(fraction=0.3, layers=["fc1"], sigma=1)
    assert config.layers == ("fc1",) and config.sigma == 1.0
    assert hash(config) == hash(CKAConfig(fraction=0.3, layers=("fc1",), sigma=1.0))
    assert config.score == {"compare": "layer", "kernel": "linear", "debiased": False,
                            "sigma": 1.0}
    for bad, match in [({"fraction": 1.0}, "fraction"), ({"floor": 0.0}, "floor"),
                       ({"compare": "logits"}, "compare"), ({"kernel": "poly"}, "kernel"),
                       ({"chunk_size": 0}, "chunk_size"), ({"greedy": "twice"}, "greedy"),
                       ({"direction": "sideways"}, "direction"),
                       ({"fraction": None}, "fraction")]:
        with pytest.raises(ValueError, match=match):
            CKAConfig(**bad)
    assert CKAConfig(fraction=None, floor=0.9).fraction is None  # a floor alone may decide
    # a config and keyword options are the same call
    params, x = net(MLP, 0), stim(MLP, 1)
    a = cka_prune(MLP, params, x, CKAConfig(fraction=0.25, compare="readout"))
    b = cka_prune(MLP, params, x, fraction=0.25, compare="readout")
    assert orders(a) == orders(b) and a.config == b.config
