"""The random streams of a seed: every random choice of a run is a function of the seed and
the position in the run, so a seed gives the same network alone or in a stack, and a resumed
run the same as an uninterrupted one.

- initialisation: ``init_params(arch, jax.random.key(seed))``;
- validation split: ``stream_key(seed, SPLIT)``;
- data order of epoch e: ``stream_key(seed, SHUFFLE, e)``;
- dropout of step t of epoch e: ``stream_key(seed, DROPOUT, e, t)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SPLIT, SHUFFLE, DROPOUT = 1, 2, 3


def stream_key(seed: jax.Array | int, *path: jax.Array | int) -> jax.Array:
    """The key ``fold_in(...fold_in(key(seed), path[0])..., path[-1])`` of a seed's stream."""
    key = jax.random.key(jnp.asarray(seed, jnp.uint32))
    for p in path:
        key = jax.random.fold_in(key, p)
    return key


def shuffle_order(seed: jax.Array | int, epoch: jax.Array | int, n: int) -> jax.Array:
    """``[n]`` int32: the order in which a seed visits ``n`` examples in epoch ``epoch``."""
    return jax.random.permutation(stream_key(seed, SHUFFLE, epoch), n).astype(jnp.int32)


def split_order(seed: jax.Array | int, n: int) -> jax.Array:
    """``[n]`` int32: a seed's permutation of ``n`` examples for its validation split (the
    first ``n_val`` are held out)."""
    return jax.random.permutation(stream_key(seed, SPLIT), n).astype(jnp.int32)
