"""jaxprune: geometry-preserving pruning of neural networks in JAX/Flax."""

__version__ = "0.1.0"

from jaxprune import checkpoint, data, geometry, masks, models, search, train  # noqa: E402

__all__ = ["checkpoint", "data", "geometry", "masks", "models", "search", "train"]
