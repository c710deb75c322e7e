"""On-disk cache of decoded arrays: one checksummed `.npz` per (loader, source, options).

Layout: `<cache root>/<loader>-<key>.npz`, where the cache root is the `cache_dir`
argument, else `$JAXPRUNE_CACHE`, else `~/.cache/jaxprune`, and `<key>` is the first
20 hex digits of the SHA-256 of the JSON key (source path, size, mtime, loader
version, options). Besides the arrays, each file holds `__meta__`: JSON with the
full key and the SHA-256 of every array. A file that cannot be read, whose key
differs or whose checksum fails is reported with a `CacheWarning` and rebuilt.
Files are written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

_META = "__meta__"


class CacheWarning(UserWarning):
    """A cache file was damaged (and rebuilt) or could not be written."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $JAXPRUNE_CACHE, else ~/.cache/jaxprune."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("JAXPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jaxprune"


def cache_path(loader: str, key: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cache file for `key` (a JSON-serialisable dict)."""
    digest = hashlib.sha256(_key_json(key).encode()).hexdigest()[:20]
    return cache_root(cache_dir) / f"{loader}-{digest}.npz"


def _key_json(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _checksum(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _read(path: Path, key: dict, names: Iterable[str] | None) -> dict[str, np.ndarray]:
    """Arrays `names` (all when None) from a cache file; raises ValueError if damaged."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z[_META][()]))
        if meta.get("key") != json.loads(_key_json(key)):
            raise ValueError("key mismatch")
        sums = meta["checksums"]
        names = list(sums) if names is None else list(names)
        out = {}
        for n in names:
            if n not in sums:
                raise ValueError(f"array {n!r} missing")
            a = z[n]
            if _checksum(a) != sums[n]:
                raise ValueError(f"checksum mismatch in {n!r}")
            out[n] = a
    return out


def write_atomic(path: Path, arrays: dict[str, np.ndarray], key: dict) -> None:
    """Write `arrays` + checksummed metadata to `path` (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"key": json.loads(_key_json(key)),
            "checksums": {n: _checksum(a) for n, a in arrays.items()}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{_META: np.array(json.dumps(meta))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(
    loader: str,
    key: dict,
    build: Callable[[], dict[str, np.ndarray]],
    *,
    names: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    enabled: bool = True,
) -> dict[str, np.ndarray]:
    """Arrays for `key`, from the cache when valid, else from `build()` (then stored).

    `names` selects which arrays to return (all when None); only those are read and
    verified on a hit. A damaged file gives a `CacheWarning` and is rebuilt; a failed
    write gives a `CacheWarning` and the built arrays are returned anyway.
    """
    key = {"loader": loader, **key}
    if not enabled:
        arrays = build()
        return arrays if names is None else {n: arrays[n] for n in names}
    path = cache_path(loader, key, cache_dir)
    if path.exists():
        try:
            return _read(path, key, names)
        except Exception as e:  # any failure means: rebuild
            warnings.warn(f"cache file {path} is damaged ({type(e).__name__}: {e}); rebuilding",
                          CacheWarning, stacklevel=3)
    arrays = {n: np.asarray(a) for n, a in build().items()}
    try:
        write_atomic(path, arrays, key)
    except OSError as e:
        warnings.warn(f"could not write cache file {path} ({e}); continuing without cache",
                      CacheWarning, stacklevel=3)
    return arrays if names is None else {n: arrays[n] for n in names}


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete this module's cache files (and stale temporaries); returns how many."""
    root = cache_root(cache_dir)
    if not root.is_dir():
        return 0
    pattern = re.compile(r"(\.)?[\w.-]+-[0-9a-f]{20}\.npz(\..*\.tmp)?")
    n = 0
    for p in root.iterdir():
        if p.is_file() and pattern.fullmatch(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n
