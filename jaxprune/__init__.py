"""jaxprune: geometry-preserving pruning of neural networks in JAX/Flax.

Submodules load on first use (``jaxprune.geometry``, ``jaxprune.search`` ...), so that
``import jaxprune`` and the command line's argument checks stay fast."""

import importlib
import importlib.metadata
import os
import platform
import sys

__version__ = "0.1.0"

#: XLA's YNNPACK fusion of dots on the CPU. Measured on 2-core x86-64 CPUs (jaxlib 0.10): the
#: gradient of a convolution's kernel runs up to 11x faster with it (Intel Xeon; up to 2.9x on
#: AMD EPYC) and a stacked LeNet5 training step faster (6x for lenet5_mnist on the Xeon,
#: 1.3x for lenet5_cifar on the EPYC), but a PoZ search compiles about 1.45x slower for no
#: steady gain warm (``benchmarks/conv_grad_cost.py``, ``train_throughput.py``,
#: ``search_cost.py``). Hence opt-in: ``jaxprune train`` adds it (:func:`add_cpu_conv_flag`);
#: searches run without it.
CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"


def add_cpu_conv_flag(environ=os.environ) -> bool:
    """Appends :data:`CPU_CONV_FLAG` to ``environ["XLA_FLAGS"]`` for a training-only process.
    Not added where the user set that flag already (their setting wins), on platforms where it
    was not measured (Linux x86-64, jaxlib >= 0.10; an unknown XLA flag aborts the process), or
    once JAX has created its backends (XLA reads ``XLA_FLAGS`` only then). Returns whether it
    was added."""
    flags = environ.get("XLA_FLAGS", "")
    if CPU_CONV_FLAG.split("=")[0] in flags or _jax_backends_started():
        return False
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        major, minor = (int(v) for v in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    if (major, minor) < (0, 10):
        return False
    environ["XLA_FLAGS"] = f"{flags} {CPU_CONV_FLAG}".strip()
    return True


def _jax_backends_started() -> bool:
    """Whether JAX has already created its backends (after which XLA flags are fixed)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())


__all__ = ["checkpoint", "data", "geometry", "masks", "models", "search", "train"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxprune.{name}")
    raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")
