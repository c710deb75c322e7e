"""Readers for on-disk formats: IDX (MNIST), CIFAR python batches, image trees in folders/tars.

Everything here works on local files only and raises `DataFormatError` (naming the
file) for corrupted or truncated input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from .core import DataFormatError

# ------------------------------------------------------------------------- IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path: Path) -> bytes:
    """File bytes, gunzipped when the file starts with the gzip magic number."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{path}: corrupted or truncated gzip stream ({e})") from e


def read_idx(path: str | os.PathLike, expect_magic: int | None = None) -> np.ndarray:
    """Array stored in an IDX file (optionally gzip-compressed), native byte order.

    IDX: 2 zero bytes, a dtype code, the number of dimensions, then one big-endian
    uint32 per dimension and the big-endian data. MNIST images use magic 2051
    (uint8, 3 dims), labels 2049 (uint8, 1 dim).
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataFormatError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(f"{path}: bad IDX magic number {magic} (0x{magic:08x})")
    if expect_magic is not None and magic != expect_magic:
        raise DataFormatError(f"{path}: IDX magic number {magic}, expected {expect_magic}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header
    if body != expected:
        what = "truncated" if body < expected else "has trailing bytes"
        raise DataFormatError(
            f"{path}: IDX file {what}: header says shape {dims} ({expected} bytes of data), "
            f"file holds {body}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_mnist_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) IDX paths of `split` in `folder` (.gz or uncompressed), or None."""
    found = []
    for stem in MNIST_FILES[split]:
        for cand in (folder / f"{stem}.gz", folder / stem):
            if cand.is_file():
                found.append(cand)
                break
        else:
            return None
    return found[0], found[1]


def read_mnist(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 28, 28, 1] images and int32 [n] labels from an MNIST IDX pair."""
    images = read_idx(images_path, expect_magic=2051)
    labels = read_idx(labels_path, expect_magic=2049)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images[..., None], labels.astype(np.int32)


# --------------------------------------------------------- CIFAR python batches

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

# Globals that the official CIFAR pickles (and NumPy re-pickles of them) need.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds dicts, lists, strings, numbers and NumPy arrays."""

    def find_class(self, module: str, name: str):
        target = _PICKLE_ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        return super().find_class(*target)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a bad file
        raise DataFormatError(f"{where}: not a readable CIFAR python batch ({e})") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, where)
    if "data" not in d or "labels" not in d:
        raise DataFormatError(f"{where}: batch lacks 'data'/'labels' (keys: {sorted(d)})")
    x = np.asarray(d["data"])
    y = np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{where}: 'data' must be uint8 [n, 3072], got {x.dtype} {x.shape}")
    if y.shape != (x.shape[0],):
        raise DataFormatError(f"{where}: {x.shape[0]} images but {y.size} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataFormatError(f"{where}: labels outside 0..9")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int32)


def read_cifar_batches(source: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """uint8 [n, 32, 32, 3], int32 [n] and class names of one CIFAR-10 split.

    `source` is the official `cifar-10-python.tar.gz` or the extracted
    `cifar-10-batches-py` folder (pickled `data_batch_1..5`, `test_batch`,
    `batches.meta`). Pickles are read with an unpickler that only allows NumPy arrays.
    """
    source = Path(source)
    wanted = set(CIFAR10_BATCHES[split]) | {"batches.meta"}
    blobs: dict[str, bytes] = {}
    if source.is_dir():
        for name in wanted:
            if (source / name).is_file():
                blobs[name] = (source / name).read_bytes()
    else:
        try:
            with tarfile.open(source) as tf:
                for m in tf:
                    base = PurePosixPath(m.name).name
                    if m.isfile() and base in wanted:
                        blobs[base] = tf.extractfile(m).read()  # type: ignore[union-attr]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{source}: corrupted or truncated archive ({e})") from e
    missing = sorted(n for n in CIFAR10_BATCHES[split] if n not in blobs)
    if missing:
        raise DataFormatError(f"{source}: missing CIFAR-10 batches {missing}")
    parts = [_cifar_batch(blobs[n], f"{source}:{n}") for n in CIFAR10_BATCHES[split]]
    names = CIFAR10_CLASSES
    if "batches.meta" in blobs:
        meta = _unpickle(blobs["batches.meta"], f"{source}:batches.meta")
        raw = meta.get("label_names")
        if raw is not None:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw)
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    return images, np.concatenate([p[1] for p in parts]), names


# ------------------------------------------------------------ image trees

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp",
                              ".tif", ".tiff", ".ppm", ".pgm"})

Entry = bytes | Path  # encoded bytes (from an archive) or a file path (from a folder)


def is_archive(path: Path) -> bool:
    """True for a .tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz file."""
    name = path.name.lower()
    return path.is_file() and (name.endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")))


def _is_image_name(name: str) -> bool:
    p = PurePosixPath(name)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_image_entries(source: str | os.PathLike) -> dict[str, Entry]:
    """Image files of a folder or tar archive: {relative posix path: bytes or Path}.

    Archives are read in one streaming pass (encoded bytes kept in memory, nothing
    extracted to disk). A single top-level folder in an archive is treated as the
    root (what `tar czf x.tar.gz folder/` produces). Hidden files are skipped.
    """
    source = Path(source)
    entries: dict[str, Entry] = {}
    if source.is_dir():
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(source).as_posix()
            for f in filenames:
                if _is_image_name(f):
                    entries[f if rel == "." else f"{rel}/{f}"] = Path(dirpath) / f
        return entries
    if not is_archive(source):
        raise DataFormatError(f"{source}: not a folder or a .tar/.tar.gz archive")
    try:
        with tarfile.open(source) as tf:
            for m in tf:
                name = PurePosixPath(m.name)  # PurePosixPath drops "./" components
                if m.isfile() and _is_image_name(m.name) and not any(
                    part.startswith(".") for part in name.parts
                ):
                    entries[name.as_posix()] = tf.extractfile(m).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{source}: corrupted or truncated archive ({e})") from e
    tops = {k.split("/", 1)[0] for k in entries}
    if len(tops) == 1 and all("/" in k for k in entries):
        top = tops.pop() + "/"
        entries = {k[len(top):]: v for k, v in entries.items()}
    return entries


def fingerprint(path: str | os.PathLike) -> dict:
    """Content key of a file or folder: absolute path, size and mtime (of every file)."""
    path = Path(path).resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    count = total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            st = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
            total += st.st_size
    return {"path": str(path), "files": count, "size": total, "tree": h.hexdigest()}
