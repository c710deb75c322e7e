"""jaxprune.data on tiny synthetic files: formats, image folders, cache, digits, errors."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from PIL import Image

import jaxprune.data as jd
from jaxprune.data import (
    CIFAR10_CLASSES,
    CacheWarning,
    DataFormatError,
    DataNotFoundError,
    ImageDataset,
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No network probe, no writes to ~/.cache, no inherited data folder."""
    monkeypatch.setenv("JAXPRUNE_OFFLINE", "1")
    monkeypatch.setenv("JAXPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXPRUNE_DATA", raising=False)


# ----------------------------------------------------------------- builders

def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
        out[prefix] = (x, y)
    return out


def cifar_batch_pickle(data: np.ndarray, labels: list[int], legacy: bool = False) -> bytes:
    """A CIFAR-style protocol-2 pickle with bytes keys (as the Python 2 originals)."""
    blob = pickle.dumps({b"batch_label": b"batch", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)
    if legacy:  # the originals reference numpy.core, which NumPy 2 renamed
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return blob


def write_cifar_python(folder: Path, per_batch: int = 4, archive: bool = True) -> dict:
    """cifar-10-batches-py/ (folder or tar.gz) with 5 train batches and a test batch."""
    rng = np.random.default_rng(1)
    arrays = {}
    top = folder / "cifar-10-batches-py"
    top.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        (top / name).write_bytes(cifar_batch_pickle(data, labels, legacy=name == "test_batch"))
        arrays[name] = (data, labels)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (top / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    if archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tf:
            tf.add(top, arcname="cifar-10-batches-py")
        for p in top.iterdir():
            p.unlink()
        top.rmdir()
    return arrays


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_cifar_tree(path: Path) -> dict[str, np.ndarray]:
    """cifar10*.tar.gz with train/<class>/{0000,0001}.png and test/<class>/0000.png."""
    rng = np.random.default_rng(2)
    files, pixels = {}, {}
    for split, n in (("train", 2), ("test", 1)):
        for c in reversed(CIFAR10_CLASSES):  # archive order differs from class order
            for i in reversed(range(n)):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                files[f"{split}/{c}/{i:04d}.png"] = png_bytes(arr)
                pixels[f"{split}/{c}/{i:04d}.png"] = arr
    write_tar(path, files)
    return pixels


# ----------------------------------------------------------------------- IDX

def test_read_idx_roundtrip_and_dtypes(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(jd.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(idx_bytes(f, code=0x0D)))
    got = jd.read_idx(tmp_path / "f.idx.gz")
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, f)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01\x02" + b[2:], "bad IDX magic"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\0\0", "trailing bytes"),
        (lambda b: b[:2], "too short"),
    ],
)
def test_read_idx_rejects_corruption(tmp_path, mutate, message):
    raw = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(mutate(raw)))
    with pytest.raises(DataFormatError, match=message):
        jd.read_idx(p)


def test_read_idx_corrupt_gzip_and_wrong_magic(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8)))
    p = tmp_path / "cut.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="gzip"):
        jd.read_idx(p)
    labels = tmp_path / "labels.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(3, dtype=np.uint8))))
    with pytest.raises(DataFormatError, match="magic number 2049, expected 2051"):
        jd.read_idx(labels, expect_magic=2051)


def test_mnist_from_idx_files(tmp_path):
    truth = write_mnist(tmp_path / "mnist")
    train = jd.load_dataset("mnist", "train", data_dir=tmp_path)
    test = jd.load_dataset("mnist", "test", data_dir=tmp_path)
    assert train.images.shape == (20, 28, 28, 1) and test.images.shape == (10, 28, 28, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    np.testing.assert_array_equal(test.images[..., 0], truth["t10k"][0])
    np.testing.assert_array_equal(test.labels, truth["t10k"][1])
    x = truth["train"][0] / 255.0
    assert test.mean == pytest.approx((x.mean(),)) and test.std == pytest.approx((x.std(),))
    assert train.name == "mnist/train" and train.class_names == tuple("0123456789")


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(9, dtype=np.uint8))))
    with pytest.raises(DataFormatError, match="10 images but .* 9 labels"):
        jd.load_dataset("mnist", "test", data_dir=tmp_path)


# ----------------------------------------------------------- CIFAR batches

@pytest.mark.parametrize("archive", [True, False])
def test_cifar_python_batches(tmp_path, archive):
    truth = write_cifar_python(tmp_path / "cifar10", archive=archive)
    train = jd.load_dataset("cifar10", "train", data_dir=tmp_path)
    test = jd.load_dataset("cifar10", "test", data_dir=tmp_path)
    assert train.images.shape == (20, 32, 32, 3) and test.images.shape == (4, 32, 32, 3)
    data, labels = truth["data_batch_2"]
    np.testing.assert_array_equal(train.images[4:8],
                                  data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(train.labels[4:8], labels)
    np.testing.assert_array_equal(test.labels, truth["test_batch"][1])
    assert train.class_names == CIFAR10_CLASSES
    allx = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 1024)
    expected_mean = (allx / 255.0).mean(axis=(0, 2))
    np.testing.assert_allclose(test.mean, expected_mean, rtol=1e-12)


def test_cifar_pickle_with_foreign_globals_is_rejected(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    top = tmp_path / "cifar-10-batches-py"
    write_cifar_python(tmp_path, archive=False)
    (top / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataFormatError, match="not allowed"):
        jd.read_cifar_batches(top, "train")


def test_cifar_truncated_archive_and_missing_batch(tmp_path):
    write_cifar_python(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="corrupted or truncated"):
        jd.load_dataset("cifar10", data_dir=tmp_path)
    write_cifar_python(tmp_path / "b", archive=False)
    (tmp_path / "b" / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataFormatError, match="data_batch_5"):
        jd.read_cifar_batches(tmp_path / "b" / "cifar-10-batches-py", "train")


def test_cifar_batch_count_mismatch(tmp_path):
    top = tmp_path / "cifar-10-batches-py"
    write_cifar_python(tmp_path, archive=False)
    data = np.zeros((4, 3072), dtype=np.uint8)
    (top / "test_batch").write_bytes(cifar_batch_pickle(data, [1, 2, 3]))
    with pytest.raises(DataFormatError, match="4 images but 3 labels"):
        jd.read_cifar_batches(top, "test")


# -------------------------------------------------------- CIFAR image tree

def test_cifar_image_tree_archive_and_cache(tmp_path, monkeypatch):
    pixels = write_cifar_tree(tmp_path / "cifar10" / "cifar10_tiny.tar.gz")
    cache = tmp_path / "c"
    train = jd.load_dataset("cifar10", "train", data_dir=tmp_path, cache_dir=cache)
    test = jd.load_dataset("cifar10", "test", data_dir=tmp_path, cache_dir=cache)
    assert len(train) == 20 and len(test) == 10
    np.testing.assert_array_equal(train.labels, np.tile(np.arange(10), 2))  # interleaved
    assert train.file_names[:3] == ("airplane/0000.png", "automobile/0000.png",
                                    "bird/0000.png")
    assert train.file_names[10] == "airplane/0001.png"
    for i, f in enumerate(train.file_names):
        np.testing.assert_array_equal(train.images[i], pixels[f"train/{f}"])
    mean, std = jd.channel_stats(train.images)
    assert test.mean == mean and test.std == std
    assert len(list(cache.glob("cifar10_images-*.npz"))) == 1
    # A cache hit decodes nothing.
    monkeypatch.setattr("jaxprune.data.datasets.decode_entries",
                        lambda *a, **k: pytest.fail("decoded despite a valid cache"))
    again = jd.load_dataset("cifar10", "test", data_dir=tmp_path, cache_dir=cache)
    np.testing.assert_array_equal(again.images, test.images)


def test_cifar_image_tree_missing_class(tmp_path):
    files = {f"{s}/airplane/0000.png": png_bytes(np.zeros((32, 32, 3), np.uint8))
             for s in ("train", "test")}
    write_tar(tmp_path / "cifar10_bad.tar.gz", files)
    with pytest.raises(DataFormatError, match="lacks class folders"):
        jd.load_dataset("cifar10", data_dir=tmp_path)


# ------------------------------------------------------------- image folders

def test_preprocess_resize_and_center_crop():
    w, h = 300, 200
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, :100, 0] = 255
    arr[:, 100:200, 1] = 255
    arr[:, 200:, 2] = 255
    out = jd.preprocess(Image.fromarray(arr), 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # Resized to 384x256, crop columns 80..303: red 0..47, green 48..175, blue 176..
    assert out[112, 10].tolist() == [255, 0, 0]
    assert out[112, 112].tolist() == [0, 255, 0]
    assert out[112, 210].tolist() == [0, 0, 255]
    assert jd.preprocess(Image.fromarray(arr), 32).shape == (32, 32, 3)


def test_preprocess_modes():
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[:20, :, :] = [10, 20, 30, 255]  # top opaque, bottom fully transparent
    out = jd.preprocess(Image.fromarray(rgba, "RGBA"), None)
    assert out[0, 0].tolist() == [10, 20, 30] and out[-1, -1].tolist() == [255, 255, 255]
    gray = np.tile(np.arange(40, dtype=np.uint8), (40, 1))
    out = jd.preprocess(Image.fromarray(gray, "L"), None)
    assert out.shape == (40, 40, 3) and (out[..., 0] == out[..., 2]).all()
    np.testing.assert_array_equal(out[..., 1], gray)


def _pets_files() -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    files, arrays = {}, {}
    for name in ("dog/b.png", "cat/z.png", "cat/a.png", "dog/a.png"):
        a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        files[f"pets/{name}"], arrays[name] = png_bytes(a), a
    return files, arrays


def test_image_folder_class_archive(tmp_path):
    files, arrays = _pets_files()
    archive = write_tar(tmp_path / "pets.tar.gz", files)
    ds = jd.load_image_folder(archive, size=None)
    assert ds.class_names == ("cat", "dog")
    assert ds.file_names == ("cat/a.png", "dog/a.png", "cat/z.png", "dog/b.png")  # interleaved
    np.testing.assert_array_equal(ds.labels, [0, 1, 0, 1])
    for i, f in enumerate(ds.file_names):
        np.testing.assert_array_equal(ds.images[i], arrays[f])
    assert ds.mean == jd.IMAGENET_MEAN
    np.testing.assert_allclose(ds.float_images(), jd.imagenet_normalize(ds.images))
    ordered = jd.load_image_folder(archive, size=16, classes=["dog", "cat"])
    assert ordered.images.shape == (4, 16, 16, 3)
    assert ordered.file_names[0] == "dog/a.png" and ordered.labels.tolist() == [0, 1, 0, 1]


def test_class_folders_are_interleaved_so_every_prefix_is_balanced():
    entries = {f"{c}/{i:02d}.png": None for c, n in (("a", 3), ("b", 1), ("c", 2))
               for i in range(n)}
    from jaxprune.data.images import class_entries

    items, labels, names = class_entries(entries)
    assert [k for k, _ in items] == ["a/00.png", "b/00.png", "c/00.png", "a/01.png",
                                     "c/01.png", "a/02.png"]
    assert labels.tolist() == [0, 1, 2, 0, 2, 0] and names == ("a", "b", "c")


def test_image_folder_flat_and_subdir(tmp_path):
    rng = np.random.default_rng(4)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, fmt in (("b.png", "PNG"), ("a.jpg", "JPEG"), ("c.png", "PNG")):
        (flat / name).write_bytes(png_bytes(rng.integers(0, 256, (50, 60, 3), np.uint8), fmt))
    (flat / "notes.txt").write_text("not an image")
    ds = jd.load_image_folder(flat, size=32)
    assert ds.file_names == ("a.jpg", "b.png", "c.png")
    assert ds.images.shape == (3, 32, 32, 3) and ds.labels.tolist() == [-1, -1, -1]
    assert ds.class_names == ()
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        (tree / split / "x").mkdir(parents=True)
        (tree / split / "x" / "1.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    part = jd.load_image_folder(tree, size=None, subdir="test")
    assert part.file_names == ("x/1.png",) and part.name == "tree/test"


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        jd.load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no image files"):
        jd.load_image_folder(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    (mixed / "cls").mkdir(parents=True)
    img = png_bytes(np.zeros((8, 8, 3), np.uint8))
    (mixed / "top.png").write_bytes(img)
    (mixed / "cls" / "in.png").write_bytes(img)
    with pytest.raises(DataFormatError, match="mixes images"):
        jd.load_image_folder(mixed)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.png").write_bytes(img)
    (bad / "broken.png").write_bytes(img[:30])
    with pytest.raises(DataFormatError, match="broken.png: cannot decode"):
        jd.load_image_folder(bad, cache=False)
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    (sizes / "a.png").write_bytes(img)
    (sizes / "b.png").write_bytes(png_bytes(np.zeros((9, 8, 3), np.uint8)))
    with pytest.raises(DataFormatError, match="differs"):
        jd.load_image_folder(sizes, size=None)
    archive = write_tar(tmp_path / "x.tar.gz", {"a/b.png": img})
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="corrupted or truncated archive"):
        jd.load_image_folder(archive)
    with pytest.raises(DataFormatError, match=r"class folders \['dog'\] are not among"):
        jd.load_image_folder(write_tar(tmp_path / "p.tar", _pets_files()[0]), classes=["cat"])


# --------------------------------------------------------------------- cache

def _folder(tmp_path: Path) -> Path:
    files, _ = _pets_files()
    root = tmp_path / "imgs"
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root / "pets"


def test_cache_hit_and_key(tmp_path, monkeypatch):
    folder, cache = _folder(tmp_path), tmp_path / "cache1"
    first = jd.load_image_folder(folder, size=16, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("image_folder-")
    assert not list(cache.glob(".*.tmp"))
    calls = []
    real = jd.images.decode_entries
    monkeypatch.setattr("jaxprune.data.images.decode_entries",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    hit = jd.load_image_folder(folder, size=16, cache_dir=cache)
    assert calls == [] and hit.file_names == first.file_names
    np.testing.assert_array_equal(hit.images, first.images)
    jd.load_image_folder(folder, size=8, cache_dir=cache)  # other options: other key
    img = folder / "cat" / "a.png"
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    jd.load_image_folder(folder, size=16, cache_dir=cache)  # changed source: rebuilt
    assert len(calls) == 2 and len(list(cache.glob("*.npz"))) == 3
    assert jd.clear_cache(cache) == 3 and not list(cache.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_cache_damaged_file_is_rebuilt(tmp_path, damage):
    folder, cache = _folder(tmp_path), tmp_path / "cache2"
    first = jd.load_image_folder(folder, size=16, cache_dir=cache)
    (path,) = cache.glob("*.npz")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":  # a pixel byte inside the images array
        raw[600] ^= 0xFF
    else:
        raw = bytearray(b"not a zip file")
    path.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="damaged"):
        again = jd.load_image_folder(folder, size=16, cache_dir=cache)
    np.testing.assert_array_equal(again.images, first.images)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jd.load_image_folder(folder, size=16, cache_dir=cache)  # repaired: clean hit


def test_cache_unwritable_folder_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(CacheWarning, match="could not write"):
        ds = jd.load_image_folder(_folder(tmp_path), size=8, cache_dir=blocker / "sub")
    assert len(ds) == 4


def test_cache_root_env(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPRUNE_CACHE", str(tmp_path / "env"))
    assert jd.cache_root() == tmp_path / "env"
    assert jd.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("JAXPRUNE_CACHE")
    assert jd.cache_root() == Path.home() / ".cache" / "jaxprune"


# ---------------------------------------------------------------- similarity

def write_similarity(root: Path, n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 1, (n, n))
    sim = (a + a.T) / 2
    np.fill_diagonal(sim, 1.0)
    names = np.array([f"im{i}.png" for i in range(n)])
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "peterson_similarity.npz", toy=sim, toy_fnames=names, other=sim,
             other_fnames=names)
    img_dir = root / "images" / "toy"
    img_dir.mkdir(parents=True)
    for i, f in enumerate(names):
        (img_dir / f).write_bytes(png_bytes(np.full((30, 40, 4), i * 40, np.uint8)))
    return sim


def test_similarity_set_synthetic(tmp_path):
    sim = write_similarity(tmp_path / "peterson")
    s = jd.load_similarity_set("toy", root=tmp_path, size=16)
    assert s.similarity.dtype == np.float64
    np.testing.assert_array_equal(s.similarity, sim)
    assert s.file_names == ("im0.png", "im1.png", "im2.png", "im3.png")
    assert s.images.shape == (4, 16, 16, 3) and s.images.dtype == np.uint8
    assert s.float_images().shape == (4, 16, 16, 3)
    assert jd.similarity_sets(tmp_path) == ("other", "toy")
    bare = jd.load_similarity_set("toy", root=tmp_path / "peterson", with_images=False)
    assert bare.images is None


def test_similarity_errors(tmp_path):
    write_similarity(tmp_path / "peterson")
    with pytest.raises(ValueError, match="available: other, toy"):
        jd.load_similarity_set("nope", root=tmp_path)
    with pytest.raises(DataNotFoundError, match=r"4 of 4 images .*: im0.png, im1.png, im2.png"):
        jd.load_similarity_set("other", root=tmp_path)
    user = tmp_path / "user"
    user.mkdir()
    (user / "im1.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(DataNotFoundError, match=r"3 of 4 .*: im0.png, im2.png, im3.png$"):
        jd.load_similarity_set("other", root=tmp_path, image_dir=user)
    with pytest.raises(DataNotFoundError, match="peterson_similarity.npz"):
        jd.load_similarity_set("toy", root=tmp_path / "user")
    with pytest.raises(DataNotFoundError, match="turkResults_CogSci2016.mat"):
        jd.split_half_reliability(tmp_path)
    with pytest.raises(ValueError, match="only for 'animals'"):
        jd.split_half_reliability(tmp_path, name="toy")


def test_split_half_reliability_synthetic(tmp_path):
    write_similarity(tmp_path)
    rng = np.random.default_rng(6)
    truth = rng.uniform(0, 10, (30, 30))
    truth = (truth + truth.T) / 2
    a, b = truth + rng.normal(0, 1, truth.shape), truth + rng.normal(0, 1, truth.shape)
    scipy.io.savemat(tmp_path / "turkResults_CogSci2016.mat",
                     {"simMatrixFirstBatch": a, "simMatrixSecondBatch": b})
    iu = np.triu_indices(30, 1)
    r = np.corrcoef(a[iu], b[iu])[0, 1]
    assert jd.split_half_reliability(tmp_path) == pytest.approx(2 * r / (1 + r))
    assert 0 < jd.split_half_reliability(tmp_path, method="spearman") < 1


# -------------------------------------------------- data sets, paths, errors

def test_unknown_names():
    with pytest.raises(ValueError, match="'imagenet'; available: cifar10, digits, mnist"):
        jd.load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\], not 'val'"):
        jd.load_dataset("mnist", "val")


def test_missing_files_name_the_places_tried(tmp_path):
    empty = tmp_path / "empty"
    with pytest.raises(DataNotFoundError) as info:
        jd.load_dataset("mnist", data_dir=empty)
    msg = str(info.value)
    assert str(empty / "mnist") in msg and str(empty) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "JAXPRUNE_DATA" in msg
    assert "tensorflow-datasets fallback failed: no network" in msg
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz") as info:
        jd.load_dataset("cifar10", data_dir=empty, download=False)
    assert "download=False" in str(info.value)


def test_data_search_paths(tmp_path, monkeypatch):
    write_mnist(tmp_path / "elsewhere" / "mnist", n_train=3, n_test=2)
    monkeypatch.setenv("JAXPRUNE_DATA", str(tmp_path / "elsewhere"))
    assert jd.data_search_paths() == [tmp_path / "elsewhere"]
    assert len(jd.load_dataset("mnist", "test")) == 2
    assert jd.data_search_paths(tmp_path / "x") == [tmp_path / "x"]
    monkeypatch.delenv("JAXPRUNE_DATA")
    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    paths = jd.data_search_paths()
    assert paths[0] == (tmp_path / "shared" / "data").resolve()
    repo = Path(jd.__file__).resolve().parents[2]
    assert (repo.parent / "shared" / "data").resolve() in paths


def test_digits_split():
    train, test = jd.load_dataset("digits", "train"), jd.load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and train.num_classes == 10
    frac = np.bincount(test.labels, minlength=10) / np.bincount(
        np.concatenate([train.labels, test.labels]), minlength=10)
    assert np.all(np.abs(frac - 0.2) < 0.01)
    again = jd.load_digits("test")
    np.testing.assert_array_equal(again.images, test.images)
    assert again.mean == test.mean == train.mean
    x = train.float_images()
    assert x.dtype == np.float32 and abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4


# ---------------------------------------------------------------- data model

def _toy(n: int = 40) -> ImageDataset:
    rng = np.random.default_rng(7)
    return ImageDataset(rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
                        np.arange(n) % 4, ("a", "b", "c", "d"), "toy/train",
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                        file_names=tuple(f"{i}.png" for i in range(n)))


def test_dataset_subset_take_split():
    ds = _toy()
    assert ds.labels.dtype == np.int32 and ds.image_shape == (4, 4, 3)
    sub = ds.subset([3, 1])
    assert sub.file_names == ("3.png", "1.png") and sub.labels.tolist() == [3, 1]
    assert ds.take(5).file_names == tuple(f"{i}.png" for i in range(5))
    assert len(ds.subset(np.zeros(0, dtype=int))) == 0 and len(ds.subset([])) == 0
    fit, val = ds.split(0.2, seed=1)
    assert len(fit) == 32 and len(val) == 8 and val.name == "toy/train:val"
    assert np.bincount(val.labels).tolist() == [2, 2, 2, 2]
    assert not set(fit.file_names) & set(val.file_names)
    assert ds.split(0.2, seed=1)[1].file_names == val.file_names
    assert ds.split(0.2, seed=2)[1].file_names != val.file_names
    with pytest.raises(ValueError, match="fraction"):
        ds.split(1.0)


def test_normalize_numpy_and_jax():
    ds = _toy()
    x = ds.float_images()
    np.testing.assert_allclose(x[0, 0, 0], (ds.images[0, 0, 0] / 255 - 0.5) / 0.25, rtol=1e-6)
    on_device = jd.normalize(jnp.asarray(ds.images), ds.mean, ds.std)  # strict rank promotion
    np.testing.assert_allclose(np.asarray(on_device), x, atol=1e-6)
    white = jd.imagenet_normalize(np.full((1, 1, 1, 3), 255, np.uint8))
    np.testing.assert_allclose(white[0, 0, 0], (1 - np.array(jd.IMAGENET_MEAN)) /
                               np.array(jd.IMAGENET_STD), rtol=1e-6)


def test_dataset_validation():
    img = np.zeros((5, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        ImageDataset(img, np.zeros(4, int), ("a",), "x", (0.0,), (1.0,))
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(img.astype(np.float32), np.zeros(5, int), ("a",), "x", (0.0,), (1.0,))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ImageDataset(np.zeros((5, 4, 4, 2), np.uint8), np.zeros(5, int), ("a",), "x",
                     (0.0,) * 2, (1.0,) * 2)
    with pytest.raises(ValueError, match="mean/std need 1"):
        ImageDataset(img, np.zeros(5, int), ("a",), "x", (0.0, 0.0), (1.0,))
    with pytest.raises(ValueError, match="labels span"):
        ImageDataset(img, np.full(5, 3), ("a",), "x", (0.0,), (1.0,))
    with pytest.raises(ValueError, match="5 images but 2 file names"):
        ImageDataset(img, np.zeros(5, int), ("a",), "x", (0.0,), (1.0,), file_names=("a", "b"))
