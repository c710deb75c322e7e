"""Data for jaxprune: named data sets, image folders, human similarity sets, batching.

- `load_dataset("mnist" | "cifar10" | "digits", split)` -> `ImageDataset` (uint8 NHWC).
  Local files first (data_dir, $JAXPRUNE_DATA, ../shared/data), then tensorflow-datasets.
  "digits" (scikit-learn's 8x8 digits) is embedded and needs neither files nor network.
- `load_image_folder(path, size)`: class-subfolder or flat folders/tar archives with
  ImageNet-style preprocessing; `imagenet_normalize`.
- `load_similarity_set(name)`, `split_half_reliability()`: Peterson et al. (2018).
- `batches`, `per_seed_batches`: device batches, optionally one data order per seed.
- Decoded image data are cached on disk ($JAXPRUNE_CACHE, else ~/.cache/jaxprune).

The batching names load `jaxprune.data.batching` (and with it JAX) on first use, so that the
loaders and the command line's checks do not pay for JAX.
"""

import importlib

from .cache import CacheWarning, cache_root, clear_cache
from .core import (
    DataFormatError,
    DataNotFoundError,
    ImageDataset,
    channel_stats,
    normalize,
)
from .datasets import available_datasets, data_search_paths, load_dataset, load_digits
from .files import CIFAR10_CLASSES, read_cifar_batches, read_idx, read_mnist
from .images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_normalize,
    load_image,
    load_image_folder,
    preprocess,
)
from .similarity import (
    MATRIX_FORMATS,
    SimilaritySet,
    load_similarity_set,
    load_target_rsm,
    similarity_sets,
    split_half_reliability,
)

__all__ = [
    "MATRIX_FORMATS",
    "load_target_rsm",
    "CIFAR10_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CacheWarning",
    "DataFormatError",
    "DataNotFoundError",
    "ImageDataset",
    "SimilaritySet",
    "available_datasets",
    "batches",
    "cache_root",
    "channel_stats",
    "clear_cache",
    "data_search_paths",
    "imagenet_normalize",
    "load_dataset",
    "load_digits",
    "load_image",
    "load_image_folder",
    "load_similarity_set",
    "normalize",
    "num_batches",
    "per_seed_batches",
    "preprocess",
    "read_cifar_batches",
    "read_idx",
    "read_mnist",
    "similarity_sets",
    "split_half_reliability",
]

#: Loaded on first use: jaxprune.data.batching imports JAX.
_LAZY = {"batches": "batching", "num_batches": "batching", "per_seed_batches": "batching",
         "batching": None}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.batching")
        return module if _LAZY[name] is None else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
