"""What a training run carries: the per-seed :class:`TrainState`, the fixed per-seed inputs
(:class:`SeedInputs`), and the conversions of user inputs to stacked ``[S, ...]`` trees."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import masks as mask_ops
from jaxprune.models.arch import Architecture
from jaxprune.models.network import Params, init_params

PyTree = Any


class TrainState(NamedTuple):
    """The state of S seeds trained together; every field has a leading seed axis.

    ``best_*``: the best validation score so far (lower is better), its parameters and epoch
    (0-based, -1: none); ``bad_epochs``: epochs since the last improvement; ``active``: seeds
    still training; ``stopped_epoch``: epoch after which early stopping froze a seed (-1)."""

    params: Params
    opt_state: PyTree
    best_params: Params
    best_score: jax.Array
    best_epoch: jax.Array
    bad_epochs: jax.Array
    active: jax.Array
    stopped_epoch: jax.Array


class SeedInputs(NamedTuple):
    """What every step of a run reads and never changes, per seed (leading axis S): unit
    ``masks`` ``{layer: [S, width]}``, ``weight_masks`` (params-shaped, or None), ``keep``
    (params-shaped 0/1: the entries an update may change, or None for all) and ``seeds``."""

    masks: dict[str, jax.Array]
    weight_masks: Params | None
    keep: Params | None
    seeds: jax.Array


def initial_state(tx: optax.GradientTransformation, params: Params) -> TrainState:
    """The state before the first epoch of stacked ``params [S, ...]``."""
    n = jax.tree.leaves(params)[0].shape[0]
    return TrainState(params, _opt_init(tx, params), params,
                      jnp.full((n,), jnp.inf, jnp.float32), jnp.full((n,), -1, jnp.int32),
                      jnp.zeros((n,), jnp.int32), jnp.ones((n,), bool),
                      jnp.full((n,), -1, jnp.int32))


@partial(jax.jit, static_argnums=0)
def _opt_init(tx: optax.GradientTransformation, params: Params) -> PyTree:
    return jax.vmap(tx.init)(params)


_init_one = jax.jit(init_params, static_argnums=0)


def init_seeds(arch: Architecture, seeds: np.ndarray) -> Params:
    """``init_stack(arch, seeds)`` (bit-identical), computed seed by seed so that one
    compilation serves every stack size (XLA compiles the random number generator slowly)."""
    per_seed = [_init_one(arch, jax.random.key(int(s))) for s in seeds]
    return jax.tree.map(lambda *a: jnp.stack(a), *per_seed)


def _param_rank(arch: Architecture) -> int:
    shape = jax.eval_shape(lambda: init_params(arch, jax.random.key(0)))
    return len(jax.tree.leaves(shape)[0].shape)


def is_stacked(arch: Architecture, params: Params) -> bool:
    """Whether ``params`` carry a leading seed axis."""
    return len(jax.tree.leaves(params)[0].shape) == _param_rank(arch) + 1


def stack_masks(masks: Mapping[str, Any] | None, n_seeds: int) -> dict[str, jax.Array]:
    """Unit masks as ``{layer: float32 [S, width]}`` (shared masks are broadcast)."""
    out = {}
    for name, m in (masks or {}).items():
        m = jnp.asarray(m, jnp.float32)
        if m.ndim == 1:
            m = jnp.broadcast_to(m, (n_seeds, m.shape[0]))
        if m.ndim != 2 or m.shape[0] != n_seeds:
            raise ValueError(f"mask {name!r} must be [width] or [{n_seeds}, width], got {m.shape}")
        out[name] = m
    return out


def stack_tree(arch: Architecture, tree: PyTree | None, n_seeds: int) -> PyTree | None:
    """A params-shaped tree (params or weight masks) stacked to ``[S, ...]``."""
    if tree is None:
        return None
    tree = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)
    if is_stacked(arch, tree):
        n = jax.tree.leaves(tree)[0].shape[0]
        if n != n_seeds:
            raise ValueError(f"stacked params have {n} seeds, the config has {n_seeds}")
        return tree
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n_seeds, *a.shape)), tree)


def trainable_entries(arch: Architecture, masks: dict[str, jax.Array],
                      weight_masks: Params | None, params: Params) -> Params | None:
    """``[S, ...]`` params-shaped 0/1: the entries an update may change, i.e. those kept by
    the unit masks (:func:`jaxprune.masks.kept_entries`) and by the weight masks; None when
    nothing is masked. Zeroing the updates elsewhere keeps a pruned weight fixed under any
    optimizer setting (weight decay and momentum included)."""
    if not masks and weight_masks is None:
        return None
    n = jax.tree.leaves(params)[0].shape[0]
    one = jax.tree.map(lambda a: a[0], params)
    if masks:
        per_seed = [mask_ops.kept_entries(arch, {k: np.asarray(m[s]) for k, m in masks.items()},
                                          one) for s in range(n)]
        keep = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *per_seed)
    else:
        keep = jax.tree.map(jnp.ones_like, params)
    if weight_masks is not None:
        keep = jax.tree.map(lambda k, w: k * (w != 0).astype(k.dtype), keep, weight_masks)
    return keep


def as_data(x, y) -> tuple[jax.Array, jax.Array]:
    """``(float32 [n, ...], int32 [n])`` from normalised images and integer labels."""
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    y = y if isinstance(y, jax.Array) else np.asarray(y)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point (normalised images), got {x.dtype}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"y must be integer class labels, got {y.dtype}")
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x [n, ...] and y [n] disagree: {x.shape} and {y.shape}")
    return x, y


def seed_slice(tree: PyTree, s: int) -> PyTree:
    """Seed ``s`` of a stacked tree, keeping a seed axis of length 1."""
    return jax.tree.map(lambda a: a[s:s + 1], tree)


def concat_seeds(trees: list[PyTree]) -> PyTree:
    """The inverse of slicing a stack seed by seed: leaves concatenated on axis 0."""
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)
