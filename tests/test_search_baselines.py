"""Baselines (L1, random, PoZ): orders checked against plain NumPy, counts, the shared
interface and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import numpy_params, numpy_stimuli

from jaxprune.masks import compression_rate
from jaxprune.models import architecture
from jaxprune.search import (
    METHODS,
    incoming_l1,
    l1_prune,
    poz_prune,
    prune_units,
    random_prune,
)

MLP = architecture("mlp", input_dim=10, widths=(12, 9), dropout=0.0)
CNN = architecture("lenet5_mnist", input_shape=(8, 8, 1), widths=(4, 5, 7, 6))


def net(arch, seed):
    return jax.tree.map(jnp.asarray, numpy_params(arch, seed))


def stim(arch, seed, n=30):
    return numpy_stimuli(arch, seed, n)


def numpy_forward(params, x, masks):
    """The MLP forward in NumPy: post-ReLU masked activations per layer."""
    acts, h = {}, x
    for name in ("fc1", "fc2"):
        p = params[name]
        h = np.maximum(h @ np.asarray(p["kernel"]) + np.asarray(p["bias"]), 0) * masks[name]
        acts[name] = h
    return acts


def test_l1_order_matches_numpy_and_sees_removed_inputs():
    params = net(MLP, 0)
    start = {"fc1": np.array([1, 1, 0, 1] * 3, np.float32)}
    result = l1_prune(MLP, params, fraction=0.5, masks=start)
    w1, w2 = (np.abs(np.asarray(params[k]["kernel"])) for k in ("fc1", "fc2"))
    norms1 = np.array([sum(w1[i, u] for i in range(10)) for u in range(12)])
    kept1 = [u for u in np.argsort(norms1, kind="stable") if start["fc1"][u]]
    assert result.trace[0].order == kept1 and result.trace[0].removed == 5  # 9 kept: 4.5 -> 5
    np.testing.assert_allclose(result.trace[0].scores, norms1[kept1], rtol=1e-6)
    removed1 = kept1[:5]
    m1 = start["fc1"].copy()
    m1[removed1] = 0
    np.testing.assert_array_equal(result.masks["fc1"], m1)
    norms2 = np.array([sum(w2[i, u] * m1[i] for i in range(12)) for u in range(9)])
    order2 = list(np.argsort(norms2, kind="stable"))
    assert result.trace[1].order == order2 and result.trace[1].removed == 5  # round(4.5) = 5
    assert result.kept == {"fc1": 4, "fc2": 4}
    assert result.compression_rate == pytest.approx(compression_rate(MLP, result.masks))
    assert result.final_score is None  # no stimuli, no CKA


def test_l1_conv_and_flattened_dense_inputs():
    params = net(CNN, 1)
    masks = {"conv2": np.array([1, 0, 1, 1, 0], np.float32)}
    k = np.abs(np.asarray(params["fc1"]["kernel"]))  # [4·4·5, 7], HWC flattening
    expect = np.zeros(7)
    for row in range(k.shape[0]):
        expect += k[row] * masks["conv2"][row % 5]
    np.testing.assert_allclose(incoming_l1(CNN, params, "fc1", masks), expect, rtol=1e-6)
    kc = np.abs(np.asarray(params["conv2"]["kernel"]))  # HWIO
    m1 = np.array([0, 1, 1, 1], np.float32)
    expect = np.einsum("hwio,i->o", kc, m1)
    np.testing.assert_allclose(incoming_l1(CNN, params, "conv2", {"conv1": m1}), expect,
                               rtol=1e-6)


def test_random_order_is_seeded_and_uniform_over_kept_units():
    start = {"fc2": np.array([0, 1] * 4 + [1], np.float32)}
    a = random_prune(MLP, fraction=0.4, masks=start, seed=5)
    b = random_prune(MLP, fraction=0.4, masks=start, seed=5)
    c = random_prune(MLP, fraction=0.4, masks=start, seed=6)
    assert [t.order for t in a.trace] == [t.order for t in b.trace]
    assert [t.order for t in a.trace] != [t.order for t in c.trace]
    expect = np.random.default_rng([5, 1]).permutation(np.flatnonzero(start["fc2"]))
    assert a.trace[1].order == list(expect) and a.trace[1].removed == 2  # round(0.4·5)
    assert np.all(a.masks["fc2"][expect[:2]] == 0) and a.kept["fc2"] == 3
    counts = np.zeros(12)
    for seed in range(300):
        counts += 1 - random_prune(MLP, fraction=0.25, layers="fc1", seed=seed).masks["fc1"]
    assert counts.sum() == 300 * 3 and counts.min() > 40 and counts.max() < 110


def test_poz_order_matches_numpy_on_the_pruned_network():
    params, x = net(MLP, 2), stim(MLP, 2)
    result = poz_prune(MLP, params, x, fraction=0.5)
    ones = {k: np.ones(w, np.float32) for k, w in MLP.widths.items()}
    poz1 = (numpy_forward(params, x, ones)["fc1"] <= 0).mean(axis=0)
    order1 = list(np.argsort(-poz1, kind="stable"))
    assert result.trace[0].order == order1
    np.testing.assert_allclose(result.trace[0].scores, poz1[order1])
    m = dict(ones, fc1=result.masks["fc1"])
    poz2 = (numpy_forward(params, x, m)["fc2"] <= 0).mean(axis=0)  # after fc1 was pruned
    assert result.trace[1].order == list(np.argsort(-poz2, kind="stable"))
    assert result.kept == {"fc1": 6, "fc2": 4}
    assert 0.0 < result.final_score <= 1.0 and result.config["stimuli"] == 30


def test_prune_units_dispatches_and_checks():
    params, x = net(MLP, 3), stim(MLP, 3)
    assert METHODS == ("cka", "l1", "random", "poz")
    for method in METHODS:
        result = prune_units(method, MLP, params, x, fraction=0.3, layers=["fc2"], seed=1)
        assert result.method == method
        assert result.kept == {"fc1": 12, "fc2": 6}  # round(0.3·9) = 3 removed
        assert [t.layer for t in result.trace] == ["fc2"]
    with pytest.raises(ValueError, match="unknown pruning method"):
        prune_units("magnitude", MLP, params, x)
    for bad in (1.0, -0.2):
        with pytest.raises(ValueError, match="fraction"):
            prune_units("l1", MLP, params, x, fraction=bad)
    with pytest.raises(ValueError, match=r"fc1.*fc2"):
        prune_units("random", MLP, params, x, layers=["fc7"])
    with pytest.raises(ValueError, match="stimuli"):
        poz_prune(MLP, params, None)


@pytest.mark.parametrize("method", METHODS)
def test_stacked_seeds_equal_one_network_at_a_time(method):
    params = jax.tree.map(lambda *a: jnp.stack(a), net(MLP, 0), net(MLP, 1))
    x = stim(MLP, 2)
    per_seed = {"fc1": np.ones((2, 12), np.float32)}
    per_seed["fc1"][1, :3] = 0.0  # seed 1 starts with three units removed
    many = prune_units(method, MLP, params, x, fraction=0.4, masks=per_seed, seed=10,
                       stacked=True)
    assert len(many) == 2
    for s, result in enumerate(many):
        one = prune_units(method, MLP, jax.tree.map(lambda a, s=s: a[s], params), x,
                          fraction=0.4, masks={"fc1": per_seed["fc1"][s]}, seed=10 + s)
        assert result.seed == 10 + s
        for name in MLP.widths:
            np.testing.assert_array_equal(result.masks[name], one.masks[name])
        assert result.final_score == one.final_score
    assert not np.array_equal(many[0].masks["fc1"], many[1].masks["fc1"])
