"""jaxprune.data batching: coverage per epoch, determinism, per-seed orders."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from jaxprune.data import batches, num_batches, per_seed_batches
from jaxprune.streams import shuffle_order

N = 23


@pytest.fixture
def data():
    ids = np.arange(N, dtype=np.int32)
    images = np.broadcast_to(ids[:, None, None, None], (N, 2, 2, 1)).astype(np.uint8)
    return images, ids


def _ids(stream) -> list[np.ndarray]:
    out = []
    for x, y in stream:
        assert isinstance(x, jax.Array) and isinstance(y, jax.Array)
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_array_equal(x[..., 0, 0, 0], y)  # images travel with labels
        out.append(y)
    return out


def test_sequential_order_and_remainder(data):
    got = _ids(batches(*data, 5))
    assert [len(b) for b in got] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(got), np.arange(N))
    dropped = _ids(batches(*data, 5, drop_remainder=True))
    assert [len(b) for b in dropped] == [5] * 4
    assert num_batches(N, 5) == 5 and num_batches(N, 5, drop_remainder=True) == 4


@pytest.mark.parametrize("seed", [0, 7])
def test_shuffled_epochs_cover_every_example_once(data, seed):
    got = _ids(batches(*data, 4, seed=seed, epochs=3))
    per_epoch = N // 4  # the remainder of each epoch's order is dropped
    assert len(got) == 3 * per_epoch
    epochs = [np.concatenate(got[i * per_epoch:(i + 1) * per_epoch]) for i in range(3)]
    for e in epochs:
        assert len(np.unique(e)) == len(e) == per_epoch * 4
    assert not np.array_equal(epochs[0], np.arange(len(epochs[0])))
    assert not np.array_equal(epochs[0], epochs[1])
    again = _ids(batches(*data, 4, seed=seed, epochs=3))
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(got))


def test_different_seeds_differ_and_forever(data):
    a = np.concatenate(_ids(batches(*data, N, seed=1)))
    b = np.concatenate(_ids(batches(*data, N, seed=2)))
    assert not np.array_equal(a, b)
    forever = batches(*data, 10, seed=0, epochs=None)
    assert len(list(itertools.islice(forever, 50))) == 50


def test_per_seed_batches_are_the_training_order(data):
    seeds = [4, 5, 6]
    out = list(per_seed_batches(*data, 8, seeds, epochs=2))
    assert [y.shape for _, y in out] == [(3, 8), (3, 8)] * 2
    assert out[0][0].shape == (3, 8, 2, 2, 1)
    ys = np.concatenate([np.asarray(y) for _, y in out], axis=1)  # [S, 2 * 16]
    assert not np.array_equal(ys[0], ys[1]) and not np.array_equal(ys[1], ys[2])
    for s, seed in enumerate(seeds):
        single = np.concatenate(_ids(batches(*data, 8, seed=seed, epochs=2)))
        np.testing.assert_array_equal(ys[s], single)  # row s is the seed's own stream
        for epoch in range(2):  # ... which is the seed's shuffle stream, remainder dropped
            order = np.asarray(shuffle_order(seed, epoch, N))[:16]
            np.testing.assert_array_equal(ys[s, epoch * 16:(epoch + 1) * 16], order)


def test_batching_errors(data):
    images, labels = data
    with pytest.raises(ValueError, match="23 images but labels of shape"):
        next(batches(images, labels[:-1], 4))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(batches(images, labels, 0))
    with pytest.raises(ValueError, match="no batch would be yielded"):
        next(per_seed_batches(images, labels, 50, [0]))
    with pytest.raises(ValueError, match="epochs"):
        next(batches(images, labels, 4, epochs=0))
    with pytest.raises(ValueError, match="seeds is empty"):
        next(per_seed_batches(images, labels, 4, []))
