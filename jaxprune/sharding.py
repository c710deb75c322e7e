"""Laying a seed axis or a candidate axis over the local devices (``jax.sharding``).

``sharding="seeds"`` places the leading seed axis of stacked parameters over a one-axis
:class:`~jax.sharding.Mesh` of all local devices, so each device runs its own seeds of the
same ``jit(vmap(...))`` program; a seed count that does not divide the device count is padded
by repeating the last seed (the copies are computed and dropped). ``sharding="candidates"``
constrains the candidate axis of a search chunk to the mesh inside the program. Neither
changes what is computed: seeds and candidates are independent, so results on one device and
on many agree (tested with 8 forced CPU devices).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: The axes that can be laid over devices (``None``: everything on the default device).
SHARDINGS = ("seeds", "candidates")

PyTree = Any


def check_sharding(sharding: str | None) -> None:
    """Refuse an unknown sharding value (``ValueError`` naming the allowed ones)."""
    if sharding is not None and sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)} or None, "
                         f"got {sharding!r}")


def device_mesh(axis: str) -> Mesh:
    """A one-axis mesh named ``axis`` over every local device."""
    return Mesh(np.asarray(jax.local_devices()), (axis,))


def leading_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays split along their leading axis over the mesh's one axis, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``n``."""
    return -(-n // multiple) * multiple


def pad_leading(tree: PyTree, size: int) -> PyTree:
    """Every leaf ``[S, ...]`` extended to ``[size, ...]`` by repeating its last entry."""
    def pad(leaf):
        extra = size - leaf.shape[0]
        if extra <= 0:
            return leaf
        return jax.numpy.concatenate([leaf, jax.numpy.repeat(leaf[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def shard_seeds(tree: PyTree) -> tuple[PyTree, int]:
    """``tree`` (leaves with a leading seed axis S) padded to a multiple of the local device
    count and placed with its seed axis over the devices; returns it and S."""
    mesh = device_mesh("seeds")
    seeds = jax.tree.leaves(tree)[0].shape[0]
    padded = pad_leading(tree, round_up(seeds, mesh.size))
    return jax.device_put(padded, leading_sharding(mesh)), seeds


def candidate_sharding(sharding: str | None) -> NamedSharding | None:
    """The sharding of a chunk's candidate axis under ``sharding`` (None unless
    ``"candidates"`` with more than one local device)."""
    if sharding != "candidates" or jax.local_device_count() == 1:
        return None
    return leading_sharding(device_mesh("candidates"))


def seed_share(count: int, share: tuple[int, int]) -> np.ndarray:
    """Positions ``[k]`` of share ``i`` of ``n`` (``share = (i, n)``, 0-based) of ``count``
    seeds: contiguous blocks whose sizes differ by at most one (``np.array_split``), so the
    ``n`` shares of a job array cover every seed once."""
    i, n = share
    if not 0 <= i < n:
        raise ValueError(f"seeds slice {i}/{n}: need 0 <= i < n")
    if n > count:
        raise ValueError(f"seeds slice {i}/{n}: only {count} seeds to share; use n <= {count}")
    return np.array_split(np.arange(count), n)[i]


def constrain(x: jax.Array, sharding: NamedSharding | None) -> jax.Array:
    """``x`` with its leading axis laid over ``sharding``'s devices (inside a jitted program;
    under ``vmap`` the spec applies to the unbatched shape), or ``x`` unchanged."""
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)
