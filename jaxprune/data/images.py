"""Image files: ImageNet-style preprocessing, image folders (class subfolders or flat)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .cache import cached
from .core import DataFormatError, DataNotFoundError, ImageDataset, normalize
from .files import IMAGE_EXTENSIONS, Entry, fingerprint, is_archive, list_image_entries

if TYPE_CHECKING:
    import jax

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Bump when decoding or preprocessing changes: invalidates cached arrays.
LOADER_VERSION = 2  # 2: class folders in class-interleaved order


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB version of `im`; transparency (RGBA, LA, palette with alpha) is composited on white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.rint(arr * (255.0 / top)).astype(np.uint8))
    return im.convert("RGB")


def preprocess(im: Image.Image, size: int | None = 224) -> np.ndarray:
    """uint8 [size, size, 3]: RGB, shorter side resized to round(256*size/224), center crop.

    The torchvision ImageNet evaluation transform (Resize(256), CenterCrop(224) for
    size=224; bilinear, antialiased). With size=None the RGB image is returned unchanged.
    """
    im = to_rgb(im)
    if size is None:
        return np.asarray(im, dtype=np.uint8)
    short = int(round(256 * size / 224))
    w, h = im.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    im = im.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8)


def _open(entry: Entry, name: str) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(entry) if isinstance(entry, bytes) else entry)
        im.load()
    except Exception as e:  # PIL raises many kinds for bad files
        raise DataFormatError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from e
    return im


def load_image(path: str | os.PathLike, size: int | None = 224) -> np.ndarray:
    """One image file, preprocessed as in `preprocess`: uint8 [size, size, 3]."""
    return preprocess(_open(Path(path), str(path)), size)


def decode_entries(
    items: Sequence[tuple[str, Entry]], size: int | None = 224, *,
    desc: str = "decoding images", progress: bool = True,
) -> np.ndarray:
    """uint8 [n, h, w, 3] from (name, bytes-or-path) pairs, in the given order.

    With size=None every image must already have the size of the first one.
    """
    out: np.ndarray | None = None
    if size is not None:
        out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    bar = tqdm(items, desc=desc, unit="img", disable=None if progress else True,
               mininterval=1.0)
    for i, (name, entry) in enumerate(bar):
        arr = preprocess(_open(entry, name), size)
        if out is None:
            out = np.empty((len(items), *arr.shape), dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise DataFormatError(f"{name}: image shape {arr.shape} differs from "
                                  f"{out.shape[1:]} of the others (pass a size to resize)")
        out[i] = arr
    if out is None:
        out = np.zeros((0, size or 0, size or 0, 3), dtype=np.uint8)
    return out


def class_entries(
    entries: dict[str, Entry], classes: Sequence[str] | None = None, where: str = "",
) -> tuple[list[tuple[str, Entry]], np.ndarray, tuple[str, ...]]:
    """Order class-subfolder entries: (items, int32 labels, class names).

    The class of `a/b/c.png` is `a`. Classes follow `classes` when given (every folder
    must be listed there), else sorted folder names; within a class, files are sorted by
    relative path. The order is **class-interleaved**: round-robin over the classes by
    within-class index (the first file of every class, then the second of every class, ...;
    a class that runs out is skipped), so every prefix ("the first N images") is as
    class-balanced as the counts allow.
    """
    found = sorted({k.split("/", 1)[0] for k in entries})
    names = tuple(classes) if classes is not None else tuple(found)
    unknown = [c for c in found if c not in names]
    if unknown:
        raise DataFormatError(f"{where}: class folders {unknown} are not among {list(names)}")
    index = {c: i for i, c in enumerate(names)}
    by_class = sorted(entries, key=lambda k: (index[k.split("/", 1)[0]], k))
    rank: dict[str, int] = {}
    seen: dict[str, int] = {}
    for k in by_class:
        c = k.split("/", 1)[0]
        rank[k], seen[c] = seen.get(c, 0), seen.get(c, 0) + 1
    keys = sorted(by_class, key=lambda k: (rank[k], index[k.split("/", 1)[0]]))
    labels = np.array([index[k.split("/", 1)[0]] for k in keys], dtype=np.int32)
    return [(k, entries[k]) for k in keys], labels, names


def select_subdir(entries: dict[str, Entry], subdir: str | None) -> dict[str, Entry]:
    """Entries under `subdir` (relative to it); all entries when subdir is None."""
    if not subdir:
        return entries
    prefix = subdir.strip("/") + "/"
    return {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}


def load_image_folder(
    path: str | os.PathLike,
    size: int | None = 224,
    *,
    model=None,
    subdir: str | None = None,
    classes: Sequence[str] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Images of a folder or .tar/.tar.gz archive, preprocessed as in `preprocess`.

    Layouts: class subfolders (`<class>/<file>`; labels follow sorted folder names or
    `classes`) or a flat folder (files in name order; labels -1, no classes). In an
    archive, a single top-level folder is taken as the root (`tar czf x.tgz folder/`).
    `subdir` selects a part of the tree first (e.g. "train"). Returns an ImageDataset with
    images uint8 [n, size, size, 3], `file_names` relative to the (sub)folder and the
    ImageNet mean/std (so `float_images()` equals `imagenet_normalize(images)`).
    Decoded arrays are cached on disk (see `jaxprune.data.cache`).
    `model` (a registered network's name or architecture) sets the size and the mean/std of
    its preprocessing (`jaxprune.models.preprocessing`), so `float_images()` is its input.
    """
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if model is not None:
        size, mean, std = _model_preprocessing(model)
    path = Path(path).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"image folder {path} does not exist")
    if not (path.is_dir() or is_archive(path)):
        raise DataFormatError(f"{path}: not a folder or a .tar/.tar.gz archive")

    def build() -> dict[str, np.ndarray]:
        entries = select_subdir(list_image_entries(path), subdir)
        where = f"{path}" + (f" (subdir {subdir!r})" if subdir else "")
        if not entries:
            raise DataNotFoundError(
                f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {where}")
        flat = [k for k in entries if "/" not in k]
        if flat and len(flat) != len(entries):
            nested = next(k for k in entries if "/" in k)
            raise DataFormatError(
                f"{where} mixes images at the top level ({flat[0]!r}) and in subfolders "
                f"({nested!r}); pass subdir= or reorganise")
        if flat:
            items = [(k, entries[k]) for k in sorted(flat)]
            labels = np.full(len(items), -1, dtype=np.int32)
            names: tuple[str, ...] = ()
        else:
            items, labels, names = class_entries(entries, classes, where)
        images = decode_entries(items, size, desc=f"decoding {path.name}", progress=progress)
        return {"images": images, "labels": labels,
                "file_names": np.array([k for k, _ in items], dtype=str),
                "class_names": np.array(names, dtype=str)}

    key = {"version": LOADER_VERSION, "source": fingerprint(path), "size": size,
           "subdir": subdir, "classes": list(classes) if classes is not None else None}
    arrays = cached("image_folder", key, build, cache_dir=cache_dir, enabled=cache)
    return ImageDataset(
        images=arrays["images"], labels=arrays["labels"],
        class_names=tuple(arrays["class_names"].tolist()),
        name=path.name + (f"/{subdir}" if subdir else ""),
        mean=mean, std=std,
        file_names=tuple(arrays["file_names"].tolist()), source=str(path),
    )


def _model_preprocessing(model) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(size, mean, std) of a registered network's preprocessing."""
    from jaxprune.models import preprocessing

    prep = preprocessing(model)
    if prep.mean is None:
        name = model if isinstance(model, str) else model.family
        raise ValueError(f"{name} is normalised with the statistics of the data it was trained "
                         f"on ({prep.note}); load its data set instead, or pass size={prep.size}"
                         " and normalise with that data set's mean/std")
    return prep.size, prep.mean, prep.std


def imagenet_normalize(images: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """float32 [..., 3]: (images / 255 - ImageNet mean) / ImageNet std (NumPy or JAX)."""
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)
