"""``PoZConfig.precision``: float32 by default (the run identity float32 searches always had),
tf32/bfloat16 recorded in the results and the identity, unknown values refused."""

import jax
import numpy as np
import pytest
from helpers import small_network

from jaxprune.search.poz import PoZConfig, poz_search, search_identity


def test_precision_is_recorded_and_float32_keeps_its_identity():
    arch, params, x = small_network("lenet5_cifar")
    plain = search_identity(arch, params, x, PoZConfig(), ["bottom-up"])
    assert "precision" not in plain
    assert search_identity(arch, params, x, PoZConfig(precision="float32"),
                           ["bottom-up"]) == plain
    half = search_identity(arch, params, x, PoZConfig(precision="bfloat16"), ["bottom-up"])
    assert half["precision"] == "bfloat16"
    base = poz_search(arch, params, x, PoZConfig(threshold=0.9))[0]
    other = poz_search(arch, params, x, PoZConfig(threshold=0.9, precision="tf32"))[0]
    assert base.config["precision"] == "float32" and other.config["precision"] == "tf32"
    if jax.default_backend() == "cpu":  # XLA:CPU computes every precision in float32
        for name in base.masks:
            np.testing.assert_array_equal(other.masks[name], base.masks[name])


def test_unknown_precision_is_refused():
    arch, params, x = small_network("lenet5_cifar")
    with pytest.raises(ValueError, match="precision must be one of float32, tf32, bfloat16"):
        poz_search(arch, params, x, PoZConfig(precision="float16"))
