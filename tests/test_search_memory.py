"""How many seeds one vectorised PoZ search call stacks: bounded by the host's memory, and the
batching never changes a result."""

import jax
import numpy as np
import pytest

from jaxprune import models
from jaxprune.search import poz
from tests.helpers import SMALL_NETWORKS


def test_bytes_per_seed_counts_the_cache_and_the_largest_chunk():
    arch = models.architecture("lenet5_mnist")
    config = poz.PoZConfig()
    n = 5000
    per_seed = poz.search_bytes_per_seed(arch, n, config)
    geometries, _ = models.layer_geometry(arch)
    sizes = [int(np.prod(g.out_shape)) for g in geometries]
    largest_chunk = max(poz.chunk_for(arch, i, n, config) * poz.candidate_bytes(arch, i, n)
                        for i in range(len(sizes)))
    assert per_seed == 4.0 * n * (sum(sizes) + max(sizes)) + largest_chunk
    # the MNIST protocol: about 5 GB a seed, so 24 GB hosts stack 2 seeds (5 were OOM-killed)
    assert poz.seeds_within_memory(arch, n, config, available=24e9) == 2
    assert poz.seeds_within_memory(arch, n, config, available=1e6) == 1  # never below one


@pytest.mark.parametrize("available", [None, 1.0])
def test_memory_capped_batches_give_the_same_masks(monkeypatch, available):
    arch = models.architecture("lenet5_mnist", **SMALL_NETWORKS["lenet5_mnist"])
    params = models.init_stack(arch, [0, 1, 2])
    x = jax.random.normal(jax.random.key(3), (60, *arch.input_shape))
    config = poz.PoZConfig(threshold=0.9)
    wide = poz.poz_search(arch, params, x, config, stacked=True, seed_batch=3)
    assert all(sum(r.kept.values()) < sum(arch.widths.values()) for r in wide)  # units removed
    calls = []
    search_batch = poz._search_batch
    monkeypatch.setattr(poz, "_search_batch", lambda *a: calls.append(1) or search_batch(*a))
    monkeypatch.setattr(poz, "seeds_within_memory",
                        lambda *a, **k: None if available is None else 1)
    capped = poz.poz_search(arch, params, x, config, stacked=True, seed_batch=3)
    assert len(calls) == (1 if available is None else 3)
    for a, b in zip(wide, capped, strict=True):
        assert a.kept == b.kept and a.final_score == pytest.approx(b.final_score, abs=1e-6)
        for k in a.masks:
            np.testing.assert_array_equal(a.masks[k], b.masks[k])
