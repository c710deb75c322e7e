"""jaxprune: geometry-preserving pruning of neural networks in JAX/Flax."""

__version__ = "0.1.0"
