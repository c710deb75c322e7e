"""Mini-batches: the one batcher of the library, shared by training and by users' own loops.

Epoch ``e`` of seed ``s`` visits the examples in the order
:func:`jaxprune.streams.shuffle_order` ``(s, e, n)`` and drops the last ``n % batch_size``
of that order (a different subset each epoch), exactly as :func:`jaxprune.train.fit` does,
so a hand-written loop over :func:`per_seed_batches` sees the batches training saw.
``seed=None`` keeps the stored order (and, with ``drop_remainder=False``, a smaller last batch).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.streams import shuffle_order


@partial(jax.jit, static_argnames=("batch_size",))
def epoch_indices(examples: jax.Array, seeds: jax.Array, epoch: jax.Array,
                  batch_size: int) -> jax.Array:
    """``[steps, S, B]`` example indices of every step of epoch ``epoch`` for every seed: row
    ``s`` of ``examples [S, n]`` (the seed's training examples) in the order
    ``shuffle_order(seeds[s], epoch, n)``, cut into ``steps = n // B`` batches."""
    n = examples.shape[1]
    steps = n // batch_size

    def order(seed, idx):
        return idx[shuffle_order(seed, epoch, n)[: steps * batch_size]].reshape(steps, batch_size)

    return jnp.swapaxes(jax.vmap(order)(seeds, examples), 0, 1)


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


def per_seed_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seeds: Sequence[int] | np.ndarray,
    *,
    epochs: int | None = 1,
    sharding: jax.sharding.Sharding | None = None,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield ``(x [S, B, ...], y [S, B])``: the batches of S seeds (one data order each) for S
    vmapped networks, ``n // B`` per epoch. ``epochs=None`` repeats forever; ``sharding`` is
    passed to ``device_put``."""
    n = _check(images, labels, batch_size, drop_remainder=True)
    seeds = np.asarray([int(s) for s in seeds], np.uint32)
    if seeds.size == 0:
        raise ValueError("seeds is empty")
    examples = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (seeds.size, n))
    for epoch in _epochs(epochs):
        for idx in np.asarray(epoch_indices(examples, jnp.asarray(seeds), epoch, batch_size)):
            yield jax.device_put((images[idx], labels[idx]), sharding)


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    seed: int | None = None,
    drop_remainder: bool = False,
    epochs: int | None = 1,
    sharding: jax.sharding.Sharding | None = None,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yield ``(x [B, ...], y [B])`` device arrays: with a ``seed``, row 0 of
    :func:`per_seed_batches` for ``seeds=[seed]`` (the remainder always dropped); without,
    the stored order, the last batch smaller unless ``drop_remainder``."""
    if seed is not None:
        for x, y in per_seed_batches(images, labels, batch_size, [seed], epochs=epochs,
                                     sharding=sharding):
            yield x[0], y[0]
        return
    n = _check(images, labels, batch_size, drop_remainder)
    stop = n - n % batch_size if drop_remainder else n
    for _ in _epochs(epochs):
        for lo in range(0, stop, batch_size):
            sl = slice(lo, min(lo + batch_size, stop))
            yield jax.device_put((images[sl], labels[sl]), sharding)
