"""The PoZ search within a memory budget (``PoZConfig.memory_budget``): the budget sets each
layer's chunk of candidates from :func:`candidate_bytes`, and never changes the result."""

import numpy as np
import pytest
from helpers import small_network

from jaxprune import models
from jaxprune.cli import main
from jaxprune.search.poz import PoZConfig, candidate_bytes, chunk_for, poz_search


@pytest.mark.parametrize("name", ["lenet5_cifar", "vgg16"])
def test_the_budget_bounds_each_chunk(name):
    arch, _, _ = small_network(name)
    for index, layer in enumerate(arch.layers[:-1]):
        per = candidate_bytes(arch, index, 40)
        for budget in (per * 0.5, per * 3, per * 64, 1e15):
            chunk = chunk_for(arch, index, 40, PoZConfig(memory_budget=budget))
            assert chunk == 1 or chunk * per <= budget
            assert chunk <= max(1, layer.width - 1)
            assert chunk & (chunk - 1) == 0 or chunk == layer.width - 1  # 2^k, or the layer
        assert chunk_for(arch, index, 40, PoZConfig(memory_budget=1e15)) == max(1, layer.width - 1)


def test_lower_layers_hold_more_and_bytes_grow_with_stimuli():
    arch, _, _ = small_network("vgg16")
    held = [candidate_bytes(arch, i, 40) for i in range(len(arch.layers))]
    assert held == sorted(held, reverse=True)
    assert candidate_bytes(arch, 0, 80) > candidate_bytes(arch, 0, 40)


def test_residual_bytes_count_the_ops_after_the_consumer():
    arch = models.architecture("resnet18", input_shape=(32, 32, 3), num_classes=5,
                               depths=(1, 1), widths=(8, 12))
    held = [candidate_bytes(arch, i, 10) for i in range(len(arch.layer_names))]
    assert all(h > 0 for h in held) and held[0] > held[-1]


def test_every_budget_gives_the_default_search():
    arch, params, x = small_network("lenet5_cifar")
    for direction in ("top-down",):
        base = poz_search(arch, params, x, PoZConfig(direction=direction, threshold=0.9))
        for budget in (1.0, 1e12):  # one candidate per call, the whole layer per call
            got = poz_search(arch, params, x, PoZConfig(direction=direction, threshold=0.9,
                                                        memory_budget=budget))
            for name in base[0].masks:
                np.testing.assert_array_equal(got[0].masks[name], base[0].masks[name])
            for a, b in zip(got[0].trace, base[0].trace, strict=True):
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.parametrize("value, message", [("lots", "is not a byte count"),
                                            ("-3GB", "need a positive byte count")])
def test_bad_budgets_are_refused(value, message, capsys):
    assert main(["bench", "--model", "lenet5_cifar", f"--memory-budget={value}"]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="memory_budget must be a positive"):
        arch, params, x = small_network("lenet5_cifar")
        poz_search(arch, params, x, PoZConfig(memory_budget=0))
