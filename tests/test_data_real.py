"""jaxprune.data on the real shared data (../shared/data); skipped where it is absent."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

import jaxprune.data as jd

CIFAR_ARCHIVE = "cifar10/cifar10_jpeg_q75.tar.gz"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXPRUNE_OFFLINE", "1")
    monkeypatch.setenv("JAXPRUNE_CACHE", str(tmp_path / "cache"))


def test_mnist(shared_data):
    train = jd.load_dataset("mnist", "train", data_dir=shared_data)
    test = jd.load_dataset("mnist", "test", data_dir=shared_data)
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert train.std[0] == pytest.approx(0.3081, abs=1e-4)
    assert test.mean == train.mean
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                  974, 1009]


@pytest.fixture(scope="module")
def cifar(shared_data, tmp_path_factory):
    """One cold decode of the JPEG CIFAR-10 into a fresh cache, then cached loads."""
    if not (shared_data / CIFAR_ARCHIVE).is_file():
        pytest.skip(f"{CIFAR_ARCHIVE} absent")
    cache = tmp_path_factory.mktemp("cifar_cache")
    t0 = time.perf_counter()
    train = jd.load_dataset("cifar10", "train", data_dir=shared_data, cache_dir=cache)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = jd.load_dataset("cifar10", "test", data_dir=shared_data, cache_dir=cache)
    train_again = jd.load_dataset("cifar10", "train", data_dir=shared_data, cache_dir=cache)
    warm = time.perf_counter() - t0
    print(f"CIFAR-10 JPEG: cold decode {cold:.1f} s, both splits from cache {warm:.2f} s")
    return train, test, train_again, cold, warm


@pytest.mark.slow
def test_cifar10_jpeg_counts_and_order(cifar, shared_data):
    train, test, _, _, _ = cifar
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.class_names == jd.CIFAR10_CLASSES
    assert train.file_names[0] == "airplane/0000.jpg" and test.file_names[-1] == "truck/0999.jpg"
    # class-interleaved: image i is class i % 10, file number i // 10 (NNNN order per class),
    # so the first N images of either split are balanced
    np.testing.assert_array_equal(train.labels, np.arange(50000) % 10)
    np.testing.assert_array_equal(test.labels, np.arange(10000) % 10)
    for c, name in enumerate(jd.CIFAR10_CLASSES):
        files = train.file_names[c::10]
        assert files == tuple(f"{name}/{i:04d}.jpg" for i in range(5000))
    assert np.bincount(train.labels[:5000]).tolist() == [500] * 10
    np.testing.assert_allclose(train.mean, (0.4913, 0.4821, 0.4465), atol=2e-4)
    assert test.mean == train.mean and "jpeg" in train.source
    # Pixels equal a direct PIL decode of one member (the first in archive order).
    with tarfile.open(shared_data / CIFAR_ARCHIVE) as tf:
        member = next(m for m in tf if m.isfile())
        raw = tf.extractfile(member).read()  # type: ignore[union-attr]
    direct = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    rel = member.name.split("/", 1)[1] if member.name.startswith("train/") else None
    assert rel is not None
    np.testing.assert_array_equal(train.images[train.file_names.index(rel)], direct)


@pytest.mark.slow
def test_cifar10_cache_roundtrip(cifar):
    train, _, train_again, cold, warm = cifar
    assert np.array_equal(train_again.images, train.images)  # (assert_array_equal is slow)
    assert np.array_equal(train_again.labels, train.labels)
    assert warm < cold


def test_peterson_animals(shared_data):
    s = jd.load_similarity_set("animals", root=shared_data / "peterson", cache=False)
    assert s.images.shape == (120, 224, 224, 3) and s.images.dtype == np.uint8
    assert s.similarity.shape == (120, 120) and s.similarity.dtype == np.float64
    np.testing.assert_array_equal(s.similarity, s.similarity.T)
    np.testing.assert_array_equal(np.diag(s.similarity), 1.0)
    assert s.similarity.min() >= 0 and s.similarity.max() <= 1
    assert list(s.file_names) == sorted(s.file_names) and s.file_names[0] == "stim-0007.png"
    assert s.images.std() > 10  # real pictures, not blank


def test_peterson_sets_and_reliability(shared_data, tmp_path):
    root = shared_data / "peterson"
    assert set(jd.similarity_sets(root)) == {"animals", "automobiles", "fruits", "furniture",
                                              "various", "vegetables"}
    r = jd.split_half_reliability(root)
    assert 0 < r < 1 and r == pytest.approx(0.9547, abs=1e-3)
    with pytest.raises(jd.DataNotFoundError, match="120 of 120 images of 'automobiles'") as info:
        jd.load_similarity_set("automobiles", root=root)
    bare = jd.load_similarity_set("automobiles", root=root, with_images=False)
    assert all(f in str(info.value) for f in bare.file_names)
    # A user-supplied folder completes a set whose images are not shipped.
    for i, f in enumerate(bare.file_names):
        Image.fromarray(np.full((12, 16, 3), i, np.uint8)).save(tmp_path / f)
    s = jd.load_similarity_set("automobiles", root=root, image_dir=tmp_path, size=8,
                               cache_dir=tmp_path / "cache")
    assert s.images.shape == (120, 8, 8, 3) and abs(int(s.images[5].max()) - 5) <= 1


def test_default_search_finds_shared_data(shared_data, monkeypatch):
    monkeypatch.delenv("JAXPRUNE_DATA", raising=False)
    if shared_data.resolve() not in jd.data_search_paths():
        pytest.skip("shared data is not at ../shared/data of the repository")
    assert len(jd.load_dataset("mnist", "test")) == 10000
