"""Mini-batches on device: one permutation per epoch, array slicing, one `device_put` per batch.

Shuffling: `None` keeps the stored order; an int seed uses NumPy's generator seeded
with (seed, epoch); a JAX PRNG key uses `jax.random.permutation(fold_in(key, epoch), n)`.
So `per_seed_batches(..., seeds=[s])` yields exactly `batches(..., key_or_seed=s)` with
a leading axis of 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import jax
import numpy as np

SeedOrKey = int | np.integer | jax.Array | np.ndarray


def _is_key(x, stacked: bool = False) -> bool:
    """True for JAX keys: typed key arrays, or raw uint32 keys of shape [2] ([S, 2] if stacked)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == np.uint32 and np.ndim(x) == 1 + stacked and np.shape(x)[-1] == 2


def _permutation(seed: SeedOrKey, epoch: int, n: int) -> np.ndarray:
    if _is_key(seed):
        return np.asarray(jax.random.permutation(jax.random.fold_in(seed, epoch), n))
    return np.random.default_rng([int(seed), epoch]).permutation(n)


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches per epoch for n examples."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def _check(images, labels, batch_size: int, drop_remainder: bool) -> int:
    n = int(np.shape(images)[0])
    if np.shape(labels)[:1] != (n,):
        raise ValueError(f"{n} images but labels of shape {np.shape(labels)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if drop_remainder and batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} examples; "
                         "with drop_remainder=True no batch would be yielded")
    return n


def _epochs(epochs: int | None) -> Iterator[int]:
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
    return itertools.count() if epochs is None else iter(range(epochs))


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    key_or_seed: SeedOrKey | None = None,
    drop_remainder: bool = False,
    epochs: int | None = 1,
    sharding: jax.sharding.Sharding | None = None,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield (x [b, ...], y [b]) device arrays, each example once per epoch.

    `key_or_seed` None keeps the stored order. The last batch of an epoch is smaller
    unless `drop_remainder` (then every batch has `batch_size` rows, which avoids a
    recompilation). `epochs=None` repeats forever. `sharding` is passed to `device_put`.
    """
    n = _check(images, labels, batch_size, drop_remainder)
    stop = n - n % batch_size if drop_remainder else n
    for epoch in _epochs(epochs):
        order = None if key_or_seed is None else _permutation(key_or_seed, epoch, n)
        for lo in range(0, stop, batch_size):
            hi = min(lo + batch_size, stop)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            yield jax.device_put((images[idx], labels[idx]), sharding)


def per_seed_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seeds: Sequence[int] | jax.Array | np.ndarray,
    *,
    drop_remainder: bool = False,
    epochs: int | None = 1,
    sharding: jax.sharding.Sharding | None = None,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield (x [S, b, ...], y [S, b]): S independent data orders, for S vmapped networks.

    `seeds` is a sequence of S ints or an array of S JAX keys (typed [S] or raw
    [S, 2] uint32). Row s is the batch `batches(..., key_or_seed=seeds[s])` yields.
    """
    n = _check(images, labels, batch_size, drop_remainder)
    keys = _is_key(seeds, stacked=True)
    if keys:
        if jax.dtypes.issubdtype(seeds.dtype, jax.dtypes.prng_key) and np.ndim(seeds) != 1:
            raise ValueError(f"seeds must be S keys of shape [S], got shape {np.shape(seeds)}")
        fold = jax.vmap(lambda k, e: jax.random.permutation(jax.random.fold_in(k, e), n),
                        in_axes=(0, None))
    else:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds is empty")
    stop = n - n % batch_size if drop_remainder else n
    for epoch in _epochs(epochs):
        if keys:
            orders = np.asarray(fold(seeds, epoch))
        else:
            orders = np.stack([_permutation(s, epoch, n) for s in seeds])
        for lo in range(0, stop, batch_size):
            idx = orders[:, lo:min(lo + batch_size, stop)]
            yield jax.device_put((images[idx], labels[idx]), sharding)
