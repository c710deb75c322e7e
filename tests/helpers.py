"""Helpers shared by the tests: small networks of every family, and slow, obviously-correct
twins that physically compact a network before measuring it."""

from __future__ import annotations

import jax
import numpy as np

from jaxprune import geometry, masks, models

#: Every registered family at a size a test can afford (same layer structure as the full one).
SMALL_NETWORKS = {
    "lenet5_cifar": {"widths": (6, 8, 20, 12), "input_shape": (16, 16, 3)},
    "lenet5_mnist": {"input_shape": (8, 8, 1), "widths": (8, 8, 24, 12)},
    "mlp": {"input_dim": 20, "widths": (24, 16, 12), "dropout": 0.0},
    "vgg16": {"widths": (4,) * 13 + (16, 12), "input_shape": (32, 32, 3)},
    "alexnet": {"widths": (4, 6, 6, 6, 6, 16, 12), "input_shape": (64, 64, 3)},
}


def numpy_params(arch, seed: int = 0, *, scale: str = "normal", dtype=np.float32):
    """Arrays shaped like ``init_params(arch, ...)``, drawn with NumPy (no XLA compilation):
    standard normal, or (``scale="fan_in"``) ``U(-1, 1) / sqrt(fan_in)``."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: models.init_params(arch, jax.random.key(0)))

    def draw(s):
        if scale == "normal":
            return rng.standard_normal(s.shape).astype(dtype)
        return (rng.uniform(-1, 1, s.shape) / np.sqrt(np.prod(s.shape[:-1]) or 1)).astype(dtype)

    return jax.tree.map(draw, shapes)


def numpy_stimuli(arch, seed: int = 0, n: int = 40, dtype=np.float32) -> np.ndarray:
    """``[n, *input_shape]`` standard normal stimuli drawn with NumPy."""
    return np.random.default_rng(seed).normal(size=(n, *arch.input_shape)).astype(dtype)


def assert_trees_equal(a, b) -> None:
    """Same tree structure, dtypes and values, leaf by leaf."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(u).dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(u, v)


def small_network(name: str, seed: int = 0):
    """``(arch, params, x)``: a small ``name`` network with random weights and 40 stimuli."""
    arch = models.architecture(name, **SMALL_NETWORKS[name])
    params = models.init_params(arch, jax.random.key(seed))
    x = jax.random.normal(jax.random.key(seed + 100), (40, *arch.input_shape))
    return arch, params, x


def random_masks(arch, rng: np.random.Generator, readout_keep: int | None = None) -> dict:
    """Random unit masks keeping at least one unit per layer (``readout_keep`` units of the
    readout when given)."""
    out = {}
    for layer in arch.layers:
        keep = rng.integers(1, layer.width + 1)
        if layer.name == arch.readout_layer and readout_keep is not None:
            keep = readout_keep
        m = np.zeros(layer.width, np.float32)
        m[rng.choice(layer.width, keep, replace=False)] = 1.0
        out[layer.name] = m
    return out


def compact_readout(arch, params, unit_masks, x) -> np.ndarray:
    """Readout features ``[n, d_kept]`` of the compacted network (no mask anywhere)."""
    small_arch, small_params = masks.compact(arch, params, unit_masks)
    _, acts = models.apply(small_arch, small_params, None, x)
    a = np.asarray(acts[small_arch.readout_layer])
    return a.reshape(a.shape[0], -1)


def compacting_poz_search(arch, params, x, fit, threshold: float, direction: str) -> dict:
    """The PoZ search by its definition: units ranked once by PoZ on the unpruned network,
    each candidate physically compacted and measured by ``fit`` (no mask), stop at the first
    candidate below ``threshold``. Returns the masks."""
    _, acts = models.apply(arch, params, None, x)
    current = {k: np.ones(v, np.float32) for k, v in arch.widths.items()}
    readout = arch.index(arch.readout_layer)
    names = [la.name for la in arch.layers[: readout + 1]]
    if direction == "top-down":
        names = names[::-1]
    for name in names:
        poz = np.asarray(geometry.poz(acts[name], conv=acts[name].ndim == 4))
        order = np.argsort(-poz, kind="stable")
        for k in range(1, arch.widths[name]):
            trial = {**current, name: current[name].copy()}
            trial[name][order[:k]] = 0.0
            if float(fit(compact_readout(arch, params, trial, x))) < threshold:
                break
            current = trial
    return current


def assert_same_search(vec, seq) -> None:
    """Two lists of search results made the same decisions: equal masks, the same layers
    visited with the same candidate orders and removals, scores equal to 2e-4; each final fit
    at or above its threshold."""
    for a, b in zip(vec, seq, strict=True):
        for name in a.masks:
            np.testing.assert_array_equal(a.masks[name], b.masks[name], err_msg=name)
        for ta, tb in zip(a.trace, b.trace, strict=True):
            assert ta.layer == tb.layer and ta.order == tb.order and ta.removed == tb.removed
            np.testing.assert_allclose(ta.scores, tb.scores, atol=2e-4)
        assert a.final_score >= a.threshold
