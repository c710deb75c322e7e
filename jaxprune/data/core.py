"""The in-memory data model: uint8 NHWC images, int32 labels, normalisation statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax


class DataNotFoundError(FileNotFoundError):
    """No usable files were found; the message names every place that was tried."""


class DataFormatError(ValueError):
    """A data file exists but is corrupted, truncated or not in the expected format."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image set held in memory.

    images: uint8 [n, h, w, c] (NHWC), c = 1 or 3.
    labels: int32 [n]; -1 marks an unlabelled image (flat image folders).
    class_names: label index -> name.
    name: e.g. "mnist/train".
    mean, std: per-channel statistics in [0, 1] units of the *train* split of the
        data set (ImageNet's for preprocessed image folders), used by `float_images`.
    file_names: relative file name per image where the images came from files, else ().
    source: where the pixels came from (a path, "sklearn", "tfds:...").
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    file_names: tuple[str, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        images, labels = self.images, np.asarray(self.labels)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"{self.name}: images must be a uint8 array [n, h, w, c], got "
                f"{type(images).__name__} {getattr(images, 'dtype', '')} "
                f"{getattr(images, 'shape', '')}"
            )
        if images.shape[-1] not in (1, 3):
            raise ValueError(f"{self.name}: images must have 1 or 3 channels (NHWC), "
                             f"got shape {images.shape}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{self.name}: labels must be a 1-D integer array, "
                             f"got {labels.dtype} {labels.shape}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {labels.shape[0]} labels")
        object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "file_names", tuple(str(f) for f in self.file_names))
        c = images.shape[-1]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"{self.name}: mean/std need {c} entries, "
                             f"got {len(self.mean)}/{len(self.std)}")
        if self.file_names and len(self.file_names) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but "
                             f"{len(self.file_names)} file names")
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < -1 or (self.class_names and hi >= len(self.class_names)):
                raise ValueError(f"{self.name}: labels span [{lo}, {hi}] but there are "
                                 f"{len(self.class_names)} classes")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, images={self.images.shape} uint8, "
                f"classes={len(self.class_names)}, source={self.source!r})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(h, w, c) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def float_images(self) -> np.ndarray:
        """float32 [n, h, w, c]: (images / 255 - mean) / std."""
        return normalize(self.images, self.mean, self.std)

    def subset(self, idx: np.ndarray | Sequence[int] | slice) -> ImageDataset:
        """The examples at `idx` (integer indices, boolean mask or slice), same statistics."""
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.dtype != np.bool_ and not np.issubdtype(idx.dtype, np.integer):
                if idx.size:
                    raise TypeError(f"subset needs integer indices or a boolean mask, "
                                    f"got {idx.dtype}")
                idx = idx.astype(np.int64)
        files = tuple(np.asarray(self.file_names, dtype=object)[idx]) if self.file_names else ()
        return replace(self, images=self.images[idx], labels=self.labels[idx], file_names=files)

    def take(self, n: int) -> ImageDataset:
        """The first `n` examples."""
        return self.subset(slice(0, n))

    def split(self, fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Stratified split into (rest, held_out); held_out has `fraction` of each class.

        Deterministic in `seed`; both parts keep the original order of examples and this
        data set's mean/std. Names get ":fit" and ":val" appended.
        """
        held = stratified_indices(self.labels, fraction, seed)
        mask = np.zeros(len(self), dtype=bool)
        mask[held] = True
        rest, val = self.subset(~mask), self.subset(mask)
        return (replace(rest, name=f"{self.name}:fit"), replace(val, name=f"{self.name}:val"))


def normalize(
    images: np.ndarray | jax.Array, mean: Sequence[float], std: Sequence[float],
) -> np.ndarray | jax.Array:
    """float32 (images / 255 - mean) / std for uint8 [..., c] images (NumPy or JAX array).

    mean and std are reshaped to the rank of `images`, so this also works under
    JAX's strict rank promotion.
    """
    shape = (1,) * (images.ndim - 1) + (len(mean),)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    if isinstance(images, np.ndarray):
        return ((images.astype(np.float32) / np.float32(255.0) - m) / s).astype(np.float32)
    import jax.numpy as jnp

    x = jnp.asarray(images).astype(jnp.float32) / jnp.float32(255.0)
    return (x - jnp.asarray(m)) / jnp.asarray(s)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel (mean, std) in [0, 1] units of uint8 [n, h, w, c] images.

    Computed from a 256-bin histogram per channel (exact, no float32 accumulation).
    """
    if images.dtype != np.uint8:
        raise ValueError(f"channel_stats needs uint8 images, got {images.dtype}")
    c = images.shape[-1]
    flat = images.reshape(-1, c)
    if flat.shape[0] == 0:
        raise ValueError("channel_stats of an empty image set")
    hist = np.zeros((c, 256), dtype=np.int64)
    for lo in range(0, flat.shape[0], 1 << 20):  # chunks keep bincount's int64 copy small
        chunk = flat[lo:lo + (1 << 20)]
        for k in range(c):
            hist[k] += np.bincount(chunk[:, k], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for k in range(c):
        total = float(hist[k].sum())
        m = float(hist[k] @ values / total)
        means.append(m)
        stds.append(float(hist[k] @ (values - m) ** 2 / total) ** 0.5)
    return tuple(means), tuple(stds)


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a held-out part with round(fraction * count) examples per label."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(fraction * members.size))
        held.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
