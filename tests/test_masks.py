"""Mask utilities: validation errors, counts, cost, Jaccard, and compact() equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import masks as M
from jaxprune import models

SMALL_INPUTS = {  # keep the big networks cheap: compact() is about structure, not resolution
    "lenet5_cifar": {},
    "lenet5_mnist": {},
    "mlp": {},
    "vgg16": {"input_shape": (32, 32, 3)},
    "alexnet": {"input_shape": (96, 96, 3)},
}


def random_masks(arch, rng, single_unit_layer):
    masks = {}
    for layer in arch.layers:
        keep = rng.random(layer.width) < 0.5
        keep[rng.integers(layer.width)] = True
        if layer.name == single_unit_layer:
            keep[:] = False
            keep[rng.integers(layer.width)] = True
        masks[layer.name] = jnp.asarray(keep.astype(np.float32))
    return masks


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_compact_equals_masked(name):
    arch = models.architecture(name, **SMALL_INPUTS[name])
    params = models.init_params(arch, jax.random.key(1))
    rng = np.random.default_rng(0)
    single = arch.layers[rng.integers(len(arch.layers))].name
    masks = random_masks(arch, rng, single)
    x = jax.random.normal(jax.random.key(2), (3, *arch.input_shape))
    logits, acts = jax.jit(lambda p, m, x: models.apply(arch, p, m, x))(params, masks, x)

    small_arch, small_params = M.compact(arch, params, masks)
    assert small_arch.family == arch.family
    assert small_arch.widths == M.kept_counts(arch, masks)
    assert small_arch.widths[single] == 1
    small_logits, small_acts = jax.jit(
        lambda p, x: models.apply(small_arch, p, None, x))(small_params, x)
    scale = max(1.0, float(jnp.abs(logits).max()))
    np.testing.assert_allclose(small_logits, logits, atol=1e-5 * scale)
    for layer in arch.layers:
        kept = np.flatnonzero(np.asarray(masks[layer.name]))
        np.testing.assert_allclose(small_acts[layer.name], acts[layer.name][..., kept],
                                   atol=1e-5 * max(1.0, float(jnp.abs(acts[layer.name]).max())))
    n_small = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(small_params))
    assert n_small == M.param_count(arch, masks)
    assert M.param_count(small_arch) == n_small


def test_counts_cost_and_compression():
    arch = models.architecture("lenet5_cifar")
    full = M.full_masks(arch)
    assert M.kept_counts(arch, full) == {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}
    assert M.param_count(arch, full) == M.param_count(arch) == 62_006
    assert M.compression_rate(arch, full) == 1.0
    masks = {"fc1": jnp.zeros(120).at[:60].set(1.0)}
    # fc1 loses 60 units: 60*400 + 60 incoming, 60*84 outgoing
    removed = 60 * 400 + 60 + 60 * 84
    assert M.param_count(arch, masks) == 62_006 - removed
    assert M.compression_rate(arch, masks) == pytest.approx(62_006 / (62_006 - removed))
    # FLOPs of conv1: 28*28 positions * 25 taps * 3 * 6 multiply-adds
    conv1_only = 2 * 28 * 28 * 25 * 3 * 6
    one_unit = {"conv1": jnp.zeros(6).at[0].set(1.0)}
    assert M.flops(arch) - M.flops(arch, one_unit) == (
        conv1_only * 5 // 6 + 2 * 10 * 10 * 25 * 5 * 16)


def test_jaccard():
    a = {"l": jnp.array([1.0, 1.0, 0.0, 0.0]), "m": jnp.array([0.0, 0.0])}
    b = {"l": jnp.array([1.0, 0.0, 1.0, 0.0]), "m": jnp.array([0.0, 0.0])}
    assert M.jaccard(a, b) == {"l": pytest.approx(1 / 3), "m": 1.0}
    assert M.jaccard(a, b, of="removed")["l"] == pytest.approx(1 / 3)
    assert M.jaccard(a, a)["l"] == 1.0


@pytest.mark.parametrize(
    "masks, match",
    [
        ({"conv9": jnp.ones(6)}, r"unknown layer 'conv9'.*\['conv1', 'conv2', 'fc1', 'fc2'\]"),
        ({"conv1": jnp.ones(5)}, r"layer 'conv1' has shape \(5,\); expected \(6,\)"),
        ({"fc1": jnp.ones((2, 120))}, r"layer 'fc1' has shape \(2, 120\); expected \(120,\)"),
        ({"conv2": jnp.full(16, 0.5)}, r"layer 'conv2' \(shape \(16,\)\) is not binary"),
    ],
)
def test_bad_masks(masks, match):
    arch = models.architecture("lenet5_cifar")
    with pytest.raises(ValueError, match=match):
        M.validate_masks(arch, masks)
    with pytest.raises(ValueError, match=match):
        M.kept_counts(arch, masks)


def test_compact_refuses_empty_layer():
    arch = models.architecture("mlp", input_dim=4, widths=(3,))
    params = models.init_params(arch, jax.random.key(0))
    with pytest.raises(ValueError, match="keep no unit"):
        M.compact(arch, params, {"fc1": jnp.zeros(3)})


def test_layer_flops_of_lenet5_cifar_by_hand():
    arch = models.architecture("lenet5_cifar")
    per = M.layer_flops(arch)
    # 2 * output positions * taps * inputs * outputs
    assert per == {"conv1": 2 * 28 * 28 * 25 * 3 * 6, "conv2": 2 * 10 * 10 * 25 * 6 * 16,
                   "fc1": 2 * 400 * 120, "fc2": 2 * 120 * 84, "head": 2 * 84 * 10}
    assert sum(per.values()) == M.flops(arch)
