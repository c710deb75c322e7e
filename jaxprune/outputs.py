"""Output files: atomic writes, leftovers of killed runs, and checks that outputs can be
written — made before any long work, so a search never ends in a write error."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path``, then rename it onto ``path``: readers
    see the old file or the new one, never a part; the temporary never outlives a failure.
    A ``path`` that is a folder is an ``IsADirectoryError`` before anything is written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: The suffix of :func:`write_atomic`'s temporaries (``.NAME.XXXX.partial``).
TMP_SUFFIX = ".partial"


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries a killed :func:`write_atomic` left in ``folder``; returns them."""
    folder = Path(folder)
    stale = list(folder.glob(f".*{TMP_SUFFIX}")) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(path: str | Path | None, what: str) -> None:
    """Make sure a file can be written at ``path`` (None: nothing to check): not a folder, and
    its folder writable (:func:`check_folder_writable`). ``OSError`` subclasses otherwise, with
    ``what`` (e.g. ``"--json"``) in the message."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    check_folder_writable(path.parent, what)


def check_folder_writable(folder: str | Path, what: str) -> None:
    """Check that ``folder`` could be created (if missing) and written: its nearest existing
    ancestor must be a folder in which a probe file can be created. Creates nothing that
    stays."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{what}: {existing} is a file, so {folder} cannot be created; "
                                 "choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"{what}: cannot write in {existing} ({e.strerror or e}); choose "
                              "a writable location") from None
