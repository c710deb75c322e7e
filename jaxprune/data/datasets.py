"""`load_dataset`: MNIST, CIFAR-10 and the embedded scikit-learn digits.

Where files are looked for (first match wins), for a data set `name`:
  1. the `data_dir` argument (only there, when given),
  2. else `$JAXPRUNE_DATA`,
  3. else `../shared/data` relative to the current directory, then to the repository root;
inside each root, in `<root>/<name>/` and then in `<root>/` itself.
If no local files are found, tensorflow-datasets is tried when a network is reachable
(see `jaxprune.data._tfds`); the error then says which local files would work.
`source="local"` never tries tensorflow-datasets, `source="tfds"` (CLI: --data-source tfds)
reads only from it (preparing MNIST/CIFAR-10 needs `pip install 'jaxprune[tfds]'`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _tfds
from .cache import cached
from .core import (
    DataFormatError,
    DataNotFoundError,
    ImageDataset,
    channel_stats,
    stratified_indices,
)
from .files import (
    CIFAR10_CLASSES,
    MNIST_FILES,
    find_mnist_files,
    fingerprint,
    list_image_entries,
    read_cifar_batches,
    read_mnist,
)
from .images import LOADER_VERSION, class_entries, decode_entries, select_subdir

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_search_paths(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Data roots in the order they are searched (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get("JAXPRUNE_DATA")
    if env:
        return [Path(env).expanduser()]
    roots: list[Path] = []
    for base in (Path.cwd(), _REPO_ROOT):
        cand = (base.parent / "shared" / "data").resolve()
        if cand not in roots:
            roots.append(cand)
    return roots


def _folders(name: str, data_dir) -> list[Path]:
    out: list[Path] = []
    for root in data_search_paths(data_dir):
        out += [root / name, root]
    return out


@dataclass(frozen=True)
class _Raw:
    """What a local loader returns: one split plus the train statistics."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    file_names: tuple[str, ...] = ()


# ------------------------------------------------------------------ MNIST

def _mnist_local(split: str, data_dir, cache_dir) -> _Raw | None:
    for folder in _folders("mnist", data_dir):
        files = find_mnist_files(folder, split)
        train_files = find_mnist_files(folder, "train")
        if files and train_files:
            images, labels = read_mnist(*files)
            train = images if split == "train" else read_mnist(*train_files)[0]
            mean, std = channel_stats(train)
            return _Raw(images, labels, tuple(str(i) for i in range(10)), mean, std,
                        str(files[0]))
    return None


_MNIST_EXPECTED = ("the IDX files " + ", ".join(f"{n}.gz" for pair in MNIST_FILES.values()
                                               for n in pair) + " (or uncompressed)")


# ---------------------------------------------------------------- CIFAR-10

_CIFAR_ARCHIVE_PREFIXES = ("cifar10", "cifar-10", "cifar_10")


def _cifar_sources(folder: Path) -> list[tuple[str, Path]]:
    """(kind, path) candidates in `folder`, in order of preference."""
    out = []
    if (folder / "cifar-10-batches-py").is_dir():
        out.append(("batches", folder / "cifar-10-batches-py"))
    if (folder / "data_batch_1").is_file():
        out.append(("batches", folder))
    if (folder / "cifar-10-python.tar.gz").is_file():
        out.append(("batches", folder / "cifar-10-python.tar.gz"))
    if (folder / "train" / "airplane").is_dir():
        out.append(("images", folder))
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            low = p.name.lower()
            if (p.is_file() and low.startswith(_CIFAR_ARCHIVE_PREFIXES)
                    and low.endswith((".tar", ".tar.gz", ".tgz"))
                    and p.name != "cifar-10-python.tar.gz"):
                out.append(("images", p))
    return out


def _cifar_image_tree(path: Path, split: str, cache_dir) -> dict[str, np.ndarray]:
    """CIFAR-10 stored as `train|test/<class>/NNNN.jpg`: `split`'s arrays + train mean/std.

    Both splits are decoded in one pass over the archive and cached together; a cache
    hit reads (and verifies) only the arrays of `split`.
    """

    def build() -> dict[str, np.ndarray]:
        entries = list_image_entries(path)
        arrays: dict[str, np.ndarray] = {}
        for part_name in ("train", "test"):
            part = select_subdir(entries, part_name)
            if not part:
                raise DataFormatError(f"{path}: no images under {part_name}/<class>/")
            items, labels, _ = class_entries(part, CIFAR10_CLASSES, f"{path}:{part_name}")
            missing = sorted(set(CIFAR10_CLASSES) - {k.split("/", 1)[0] for k, _ in items})
            if missing:
                raise DataFormatError(f"{path}: {part_name}/ lacks class folders {missing}")
            images = decode_entries(items, None, desc=f"decoding CIFAR-10 {part_name}")
            if images.shape[1:] != (32, 32, 3):
                raise DataFormatError(f"{path}: images are {images.shape[1:]}, not 32x32x3")
            arrays[f"{part_name}_images"], arrays[f"{part_name}_labels"] = images, labels
            arrays[f"{part_name}_files"] = np.array([k for k, _ in items], dtype=str)
        mean, std = channel_stats(arrays["train_images"])
        arrays["train_mean"], arrays["train_std"] = np.array(mean), np.array(std)
        return arrays

    key = {"version": LOADER_VERSION, "source": fingerprint(path)}
    names = [f"{split}_images", f"{split}_labels", f"{split}_files", "train_mean", "train_std"]
    return cached("cifar10_images", key, build, names=names, cache_dir=cache_dir)


def _cifar_local(split: str, data_dir, cache_dir) -> _Raw | None:
    for folder in _folders("cifar10", data_dir):
        for kind, path in _cifar_sources(folder):
            if kind == "batches":
                images, labels, names = read_cifar_batches(path, split)
                train = images if split == "train" else read_cifar_batches(path, "train")[0]
                mean, std = channel_stats(train)
                return _Raw(images, labels, names, mean, std, str(path))
            arrays = _cifar_image_tree(path, split, cache_dir)
            return _Raw(arrays[f"{split}_images"], arrays[f"{split}_labels"], CIFAR10_CLASSES,
                        tuple(arrays["train_mean"].tolist()), tuple(arrays["train_std"].tolist()),
                        str(path), tuple(arrays[f"{split}_files"].tolist()))
    return None


_CIFAR_EXPECTED = ("cifar-10-python.tar.gz or an extracted cifar-10-batches-py/ (official "
                   "python batches), or an image tree train|test/<class>/*.jpg as a folder "
                   "or a cifar10*.tar.gz archive")


# ------------------------------------------------------------------ digits

DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


def load_digits(split: str = "train") -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images): uint8 [n, 8, 8, 1], 10 classes.

    Pixel values 0..16 are scaled to 0..255 (rounded). The split is a fixed stratified
    80/20 partition (seed 0; 1,438 train / 359 test images), original order kept; mean/std
    are the train split's. Needs no files and no network.
    """
    from sklearn.datasets import load_digits as sk_digits

    if split not in ("train", "test"):
        raise ValueError(f"digits has splits ['test', 'train'], not {split!r}")
    d = sk_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    test = np.zeros(len(labels), dtype=bool)
    test[stratified_indices(labels, DIGITS_TEST_FRACTION, DIGITS_SEED)] = True
    mean, std = channel_stats(images[~test])
    pick = test if split == "test" else ~test
    return ImageDataset(images[pick], labels[pick], tuple(str(i) for i in range(10)),
                        f"digits/{split}", mean, std, source="sklearn.datasets.load_digits")


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class _Spec:
    splits: tuple[str, ...]
    local: Callable[[str, object, object], _Raw | None] | None
    expected: str
    tfds_name: str | None


_DATASETS = {
    "mnist": _Spec(("train", "test"), _mnist_local, _MNIST_EXPECTED, "mnist"),
    "cifar10": _Spec(("train", "test"), _cifar_local, _CIFAR_EXPECTED, "cifar10"),
    "digits": _Spec(("train", "test"), None, "", None),
}


def available_datasets() -> tuple[str, ...]:
    """Names accepted by `load_dataset`."""
    return tuple(sorted(_DATASETS))


#: Values of `load_dataset(source=...)` and the CLI's --data-source.
SOURCES = ("auto", "local", "tfds")


_default_source: str | None = None


def set_default_source(source: str | None) -> None:
    """The source `load_dataset(source=None)` uses (the CLI's --data-source); None: unset."""
    global _default_source
    if source is not None and source not in SOURCES:
        raise ValueError(f"data source {source!r}; use one of {', '.join(SOURCES)}")
    _default_source = source


def data_source(source: str | None = None, download: bool = True) -> str:
    """`source`, else `set_default_source`'s, else $JAXPRUNE_DATA_SOURCE, else "auto";
    `download=False` turns "auto" into "local"."""
    chosen = source or _default_source or os.environ.get("JAXPRUNE_DATA_SOURCE") or "auto"
    if chosen not in SOURCES:
        where = "source" if source or _default_source else "$JAXPRUNE_DATA_SOURCE"
        raise ValueError(f"{where} is {chosen!r}; use one of {', '.join(SOURCES)}")
    return "local" if chosen == "auto" and not download else chosen


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    source: str | None = None,
) -> ImageDataset:
    """One split of a named data set as an ImageDataset (uint8 NHWC, int32 labels).

    name: "mnist" ([n, 28, 28, 1]; 60,000 train / 10,000 test), "cifar10"
    ([n, 32, 32, 3]; 50,000 / 10,000; image-tree copies are ordered by class, then
    file name) or "digits" ([n, 8, 8, 1]; embedded, see `load_digits`).
    source: "auto" (local files as described in this module's docstring, else
    tensorflow-datasets when a network is reachable), "local" (files only) or "tfds"
    (tensorflow-datasets only; downloading needs `jaxprune[tfds]`); None: the one set by
    `set_default_source` (the CLI's --data-source), else $JAXPRUNE_DATA_SOURCE, else
    "auto". `download=False` makes "auto" mean "local". "digits" ignores it. mean/std
    are always the train split's.
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available_datasets())}")
    spec = _DATASETS[name]
    if split not in spec.splits:
        raise ValueError(f"{name} has splits {list(spec.splits)}, not {split!r}")
    source = data_source(source, download)
    if name == "digits":
        return load_digits(split)
    assert spec.local is not None and spec.tfds_name
    raw = None if source == "tfds" else spec.local(split, data_dir, cache_dir)
    if raw is None:
        raw = _from_tfds(spec, name, split, data_dir, source)
    return ImageDataset(raw.images, raw.labels, raw.class_names, f"{name}/{split}",
                        raw.mean, raw.std, file_names=raw.file_names, source=raw.source)


def _from_tfds(spec: _Spec, name: str, split: str, data_dir, source: str) -> _Raw:
    """`split` (and the train statistics) from tensorflow-datasets; errors say what to do."""
    where = "\n".join(f"  {p}" for p in _folders(name, data_dir))
    hint = (f"{name}: no local files found. Looked in:\n{where}\n"
            f"for {spec.expected}.\nPut them in <data_dir>/{name}/ and pass "
            f"--data-dir (data_dir= in Python), or set JAXPRUNE_DATA.")
    if source == "local":
        raise DataNotFoundError(hint + " (download=False or source 'local': "
                                       "tensorflow-datasets not tried)")
    try:
        (train_x, _, _), (images, labels, names) = _tfds.load(
            spec.tfds_name, ("train", split), offline_ok=source == "tfds")
    except _tfds.TfdsUnavailable as e:
        if source == "tfds":
            raise DataNotFoundError(f"{name}/{split} from tensorflow-datasets: {e}") from e
        raise DataNotFoundError(f"{hint}\ntensorflow-datasets fallback failed: {e}") from e
    mean, std = channel_stats(train_x)
    return _Raw(images, labels, names, mean, std, f"tfds:{spec.tfds_name}/{split}")
