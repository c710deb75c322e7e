"""PoZ searches beyond one greedy pass (``alternate``, ``global``, ``global-alternate``): the
vectorised engine makes the same decisions as its sequential twin, and each direction does
what it says."""

import jax
import numpy as np
import pytest
from helpers import SMALL_NETWORKS, numpy_stimuli
from helpers import assert_same_search as assert_same

from jaxprune import models
from jaxprune.search.poz import (
    PoZConfig,
    global_steps,
    poz_order,
    poz_search,
    poz_search_sequential,
)

BEYOND = ["alternate", "global", "global-alternate"]


def lenet(seeds=(0, 1)):
    arch = models.architecture("lenet5_mnist", **SMALL_NETWORKS["lenet5_mnist"])
    params = models.init_stack(arch, list(seeds))
    return arch, params, numpy_stimuli(arch, 5, n=40)


@pytest.fixture(scope="module")
def searched():
    """Vectorised results of the two-seed LeNet per direction, computed once."""
    arch, params, x = lenet()
    cache = {}

    def search(direction):
        if direction not in cache:
            cfg = PoZConfig(direction=direction, threshold=0.9, chunk_size=3)
            cache[direction] = poz_search(arch, params, x, cfg, stacked=True, seed_batch=2)
        return cache[direction]

    return arch, params, x, search


@pytest.mark.parametrize("direction", BEYOND)
def test_vectorised_equals_sequential(direction, searched):
    arch, params, x, search = searched
    cfg = PoZConfig(direction=direction, threshold=0.9, chunk_size=3)
    vec = search(direction)
    seq = poz_search_sequential(arch, params, x, cfg, stacked=True)
    assert_same(vec, seq)
    assert [r.config["passes"] for r in vec] == [r.config["passes"] for r in seq]
    assert all(sum(r.kept.values()) < sum(arch.widths.values()) for r in vec)


def test_alternate_recompute_on_a_residual_network_equals_sequential():
    arch = models.architecture("resnet18", input_shape=(12, 12, 3), num_classes=5,
                               depths=(1, 1), widths=(4, 6))
    params = jax.tree.map(lambda p: p[None] * 1.7, models.init_params(arch, jax.random.key(0)))
    x = numpy_stimuli(arch, 1, n=16)
    cfg = PoZConfig(direction="alternate", threshold=0.9, rank="recompute", chunk_size=4)
    vec = poz_search(arch, params, x, cfg, stacked=True)
    assert_same(vec, poz_search_sequential(arch, params, x, cfg, stacked=True))


def test_alternate_starts_with_top_down_and_ends_with_a_pass_removing_nothing(searched):
    arch, _, _, search = searched
    layers = len(arch.widths)
    for alt, td in zip(search("alternate"), search("top-down"), strict=True):
        passes = alt.config["passes"]
        assert passes >= 2 and len(alt.trace) == passes * layers
        first = alt.trace[:layers]
        assert [t.removed for t in first] == [t.removed for t in td.trace]
        assert [t.order for t in first] == [t.order for t in td.trace]
        per_pass = [sum(t.removed for t in alt.trace[p * layers:(p + 1) * layers])
                    for p in range(passes)]
        assert per_pass[-1] == 0 and all(n > 0 for n in per_pass[:-1])  # the last ends it
        for name in arch.widths:  # it continues from the top-down masks: never keeps more
            assert np.all(alt.masks[name] <= td.masks[name])
        assert alt.final_score >= alt.threshold


def test_global_removes_in_one_ranking_across_layers_and_stops_at_the_first_failure():
    arch, params, x = lenet(seeds=(3,))
    one = jax.tree.map(lambda p: p[0], params)
    r = poz_search(arch, one, x, PoZConfig(direction="global", threshold=0.9))[0]
    _, acts = models.apply(arch, one, None, x)
    orders = {arch.index(n): poz_order(acts[n]) for n in arch.widths}
    steps = global_steps(arch, orders, list(arch.widths))
    flat = [(i, int(u)) for i, units in steps for u in units]
    removed = [(arch.index(t.layer), u) for t in r.trace for u in t.order[: t.removed]]
    assert removed == flat[: len(removed)]  # the global order's prefix
    for name, m in r.masks.items():
        gone = {u for i, u in removed if i == arch.index(name)}
        assert set(np.flatnonzero(m == 0)) == gone and m.sum() >= 1
    if len(removed) < len(flat):  # stopped by the first removal below the threshold
        assert r.trace[-1].scores[-1] < r.threshold
        assert all(s >= r.threshold for t in r.trace for s in t.scores[:-1])
    assert r.config["passes"] == 0 and r.final_score >= r.threshold


def test_global_steps_merge_runs_of_one_layer_and_spare_each_layers_last_unit():
    arch = models.architecture("mlp", input_dim=4, widths=(3, 2), dropout=0.0)
    orders = {0: (np.array([2, 0, 1]), np.array([0.5, 0.2, 0.9])),
              1: (np.array([1, 0]), np.array([0.1, 0.7]))}
    # candidates: layer 0 units 2 (0.9), 0 (0.5); layer 1 unit 1 (0.7); last-ranked spared
    steps = global_steps(arch, orders, ["fc1", "fc2"])
    assert [(i, u.tolist()) for i, u in steps] == [(0, [2]), (1, [1]), (0, [0])]
    tied = {0: (np.array([0, 1, 2]), np.zeros(3)), 1: (np.array([0, 1]), np.zeros(2))}
    assert [(i, u.tolist()) for i, u in global_steps(arch, tied, ["fc1", "fc2"])] == \
        [(0, [0, 1]), (1, [0])]  # ties: lower layer, then the layer's own order


@pytest.mark.parametrize("config, match", [
    (PoZConfig(direction="global", rank="recompute"), "rank='once'"),
    (PoZConfig(direction="sideways"), "direction must be one of"),
])
def test_bad_directions_are_refused(config, match):
    arch, params, x = lenet(seeds=(0,))
    with pytest.raises(ValueError, match=match):
        poz_search(arch, params, x, config, stacked=True)
