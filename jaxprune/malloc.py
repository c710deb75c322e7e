"""Large host buffers on transparent huge pages (glibc ``malloc``), for XLA:CPU.

XLA:CPU allocates the outputs and temporaries of every compiled call with ``malloc``, which
maps a buffer above 32 MiB fresh from the kernel on each call and returns it afterwards, so
every call pays the page faults of its large buffers again. On 4 KiB pages a fresh GiB
costs about 0.39 s (a 2-core AMD EPYC, ``benchmarks/malloc_pages.py``), more than the
arithmetic of a PoZ search candidate of ``lenet5_mnist`` on 5,000 stimuli, whose candidates
each write GiB-sized pre-activations. glibc >= 2.35 backs ``malloc`` with transparent huge
pages when started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (2 MiB faults): a fresh
GiB then costs about 0.1 s.

The tunable is read only when a process starts, so the ``jaxprune`` command,
``experiments/aim1.py``, ``experiments/redundant.py`` and ``benchmarks/search_cost.py`` call
:func:`relaunch_with_huge_pages` first, which
re-executes the running command once with it set. A user's own ``glibc.malloc.hugetlb``
setting wins (``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns this off).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _glibc_at_least(version: str, wanted: tuple[int, int] = (2, 35)) -> bool:
    try:
        return tuple(int(v) for v in version.split(".")[:2]) >= wanted
    except ValueError:
        return False


def thp_available(mode_file: Path = THP_MODE) -> bool:
    """Whether the kernel offers transparent huge pages to ``madvise`` (mode ``always`` or
    ``madvise``, the bracketed word of ``mode_file``)."""
    try:
        text = mode_file.read_text()
    except OSError:
        return False
    return "[always]" in text or "[madvise]" in text


def huge_page_environment(environ: Mapping[str, str], libc: tuple[str, str] | None = None,
                          thp: bool | None = None) -> dict[str, str] | None:
    """``environ`` with :data:`TUNABLE` added to ``GLIBC_TUNABLES``, or None where there is
    nothing to do: not Linux, not glibc >= 2.35 (``libc``: ``platform.libc_ver()``), no
    transparent huge pages (``thp``: :func:`thp_available`), or ``glibc.malloc.hugetlb``
    already set (by the user, or by an earlier relaunch)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables or platform.system() != "Linux":
        return None
    name, version = platform.libc_ver() if libc is None else libc
    if name != "glibc" or not _glibc_at_least(version):
        return None
    if not (thp_available() if thp is None else thp):
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, TUNABLE]))}


def relaunch_with_huge_pages() -> None:
    """Re-execute the running command (``sys.orig_argv``) with :data:`TUNABLE` in its
    environment where :func:`huge_page_environment` says so; returns only when it does not.
    For entry points only, before any work: the process is replaced."""
    env = huge_page_environment(os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
