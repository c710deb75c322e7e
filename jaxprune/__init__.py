"""jaxprune: geometry-preserving pruning of neural networks in JAX/Flax.

Submodules load on first use (``jaxprune.geometry``, ``jaxprune.search`` ...), so that
``import jaxprune`` and the command line's argument checks stay fast."""

import importlib

__version__ = "0.1.0"

__all__ = ["checkpoint", "data", "geometry", "masks", "models", "search", "train"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxprune.{name}")
    raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")
