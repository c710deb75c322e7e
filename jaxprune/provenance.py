"""What produced a result: content hashes and run identities, checked before anything is reused.

Every resumable or result file records an *identity* — a flat dict of what produced it (hashes of
the parameters, stimuli and targets; data set, split, counts; every option that changes the
result; the library version). A file is reused only when its identity equals the one the
current command would write; otherwise :func:`check_identity` refuses it, naming the fields that
differ and how to start afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Bump when the meaning of saved results changes (v2: removed units are absent from fits).
RESULTS_FORMAT = 2


class IdentityMismatch(ValueError):
    """A resume or result file was written by another run."""


def fingerprint(*trees: Any) -> str:
    """A hash (hex, 128 bits) of the shapes, dtypes and values of every array in ``trees``
    (``None`` leaves count as absent)."""
    import jax

    h = hashlib.blake2b(digest_size=16)
    for tree in trees:
        for leaf in jax.tree.leaves(tree):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def file_hash(path: str) -> str:
    """A hash (hex, 128 bits) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity(**fields: Any) -> dict[str, Any]:
    """A run identity: ``fields`` (JSON-able values) plus the library version and results
    format."""
    from jaxprune import __version__

    return {"jaxprune": __version__, "results_format": RESULTS_FORMAT,
            **{k: _plain(v) for k, v in fields.items()}}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(u) for u in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(u) for k, u in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def differing(saved: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> list[str]:
    """Names of the fields whose values differ (a field missing on one side differs)."""
    saved = saved or {}
    return sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))


def check_identity(saved: Mapping[str, Any] | None, expected: Mapping[str, Any], path: Any,
                   fresh: str = "rerun with --fresh to start afresh") -> None:
    """Refuse (``IdentityMismatch``) a file at ``path`` whose identity is not ``expected``."""
    if saved is None:
        raise IdentityMismatch(f"{path} records no run identity (written by an older jaxprune "
                               f"or another program); {fresh}, or choose another file")
    diff = differing(saved, expected)
    if diff:
        shown = ", ".join(f"{k} ({_short(saved.get(k))} in the file, {_short(expected.get(k))} "
                          "now)" for k in diff)
        raise IdentityMismatch(f"{path} was written by another run: it differs in {shown}; "
                               f"{fresh}, or choose another file")


def _short(v: Any) -> str:
    text = "default/none" if v is None else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
