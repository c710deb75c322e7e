"""JAX's persistent compilation cache for the command line: compile once per machine.

Compiled XLA programs are kept in ``<cache root>/xla`` (the cache root of
:func:`jaxprune.data.cache.cache_root`: ``$JAXPRUNE_CACHE``, else ``~/.cache/jaxprune``), so a
second run of the same command skips most compilation. ``JAXPRUNE_NO_COMPILE_CACHE=1`` (or
the CLI's ``--no-compile-cache``) turns it off; a cache folder the user set for JAX itself
(``JAX_COMPILATION_CACHE_DIR`` / ``jax_compilation_cache_dir``) is left as it is.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

OPT_OUT_ENV = "JAXPRUNE_NO_COMPILE_CACHE"

#: Programs that compile faster than this are not stored (JAX's default is 1 s; jaxprune's
#: programs are small and many: with 1 s only 5 of the main prune job's programs were stored,
#: with 0.1 s 10, with 0 35 (benchmarks/compile_cache.py)).
MIN_COMPILE_SECONDS = 0.1

#: Smallest entry stored, in bytes (0: any size, cheap since few entries are tiny).
MIN_ENTRY_BYTES = 0


def compile_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The ``xla/`` folder under the jaxprune cache root (see the module docstring)."""
    from jaxprune.data.cache import cache_root

    return cache_root(cache_dir) / "xla"


def opted_out() -> bool:
    """True when ``$JAXPRUNE_NO_COMPILE_CACHE`` is set to anything but "" or "0"."""
    return os.environ.get(OPT_OUT_ENV, "") not in ("", "0")


def enable_compile_cache(cache_dir: str | os.PathLike | None = None, *,
                         min_compile_seconds: float | None = None,
                         min_entry_bytes: int | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache; returns its folder, or None if off.

    Programs compiling faster than ``min_compile_seconds`` (default `MIN_COMPILE_SECONDS`) or
    smaller than ``min_entry_bytes`` (default `MIN_ENTRY_BYTES`) are not stored. Off when
    opted out (``$JAXPRUNE_NO_COMPILE_CACHE``) or when the folder cannot be created (then with
    a warning: the command runs as before, only compiling afresh). Call it before the first
    JAX computation.
    """
    if opted_out():
        return None
    import jax

    configured = jax.config.jax_compilation_cache_dir
    path = Path(configured) if configured else compile_cache_dir(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache {path} cannot be created ({e}); compiling without "
                      f"it (set {OPT_OUT_ENV}=1 to silence this)", RuntimeWarning, stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    seconds = MIN_COMPILE_SECONDS if min_compile_seconds is None else min_compile_seconds
    size = MIN_ENTRY_BYTES if min_entry_bytes is None else min_entry_bytes
    jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", size)
    return path
