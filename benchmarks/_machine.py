"""What every benchmark records about the machine it ran on, and /proc readings it shares.

Imported by the scripts in this folder (``python benchmarks/NAME.py`` puts the folder on
``sys.path``)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxprune


def proc_field(path: str, key: str) -> int | None:
    """The number after ``key:`` in a /proc file (``/proc/meminfo`` ``MemTotal`` in kB,
    ``/proc/self/status`` ``VmHWM`` ...); None where the file or field is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(*packages: str) -> dict[str, Any]:
    """Platform, processor, cores, memory, load average now, Python/JAX/NumPy/jaxprune
    versions, JAX backend and devices, ``XLA_FLAGS``, and the versions of ``packages``."""
    memory_kib = proc_field("/proc/meminfo", "MemTotal")
    return {
        "platform": platform.platform(),
        "processor": _processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_total_bytes": None if memory_kib is None else memory_kib * 1024,
        "load_average_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jaxprune": jaxprune.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **{name: _package_version(name) for name in packages},
    }


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run added."""
    info["load_average_end"] = list(os.getloadavg())
    return info
