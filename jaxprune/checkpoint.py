"""Checkpoints: parameters, unit masks, extra state arrays and JSON metadata in one folder.

Layout of a checkpoint folder ``path/``::

    path/arrays/         orbax (StandardCheckpointHandler): {"params", "masks"?, "state"?}
    path/metadata.json   library version, architecture, shapes/dtypes of every array, and
                         the caller's metadata (seeds, data set, network config, training config)

``metadata.json`` is written last, so a folder without it is an incomplete checkpoint. A save
writes a temporary sibling folder and renames it into place; the previous checkpoint at
``path`` is replaced only once the new one is complete, so a failed save leaves it intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import shutil
import signal
import threading
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

import jaxprune
from jaxprune.models.arch import Architecture, Layer

FORMAT = "jaxprune-checkpoint"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAYS_DIR = "arrays"
RESERVED_KEYS = ("format", "format_version", "jaxprune_version", "created", "architecture",
                 "arrays")

PyTree = Any


class CheckpointError(ValueError):
    """A checkpoint could not be read or written (a ``ValueError``: a bad input to a job)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path."""


class CheckpointCorruptError(CheckpointError):
    """The checkpoint folder is incomplete or its files are damaged."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's arrays differ (tree, shapes, dtypes) from the expected abstract tree."""


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`restore` returns: arrays, masks (or None), extra state (or None), metadata."""

    params: PyTree
    masks: PyTree | None
    state: PyTree | None
    metadata: dict[str, Any]

    @property
    def architecture(self) -> Architecture | None:
        """The saved :class:`Architecture`, rebuilt from metadata (None if none was saved)."""
        data = self.metadata.get("architecture")
        return None if data is None else arch_from_dict(data)


# ---------------------------------------------------------------- architecture as JSON data


def arch_to_dict(arch: Architecture) -> dict[str, Any]:
    """A JSON-able dict of ``arch`` (``dataclasses.asdict``; tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(arch)))


def _tuple(value):
    return None if value is None else tuple(value)


def arch_from_dict(data: Mapping[str, Any]) -> Architecture:
    """The :class:`Architecture` (or residual architecture) that :func:`arch_to_dict`
    described (exact round trip)."""
    if "blocks" in data:
        return _residual_from_dict(data)
    layers = tuple(
        Layer(**{**layer, "pool": _tuple(layer.get("pool")),
                 "adaptive_pool": _tuple(layer.get("adaptive_pool"))})
        for layer in data["layers"]
    )
    fields = {k: v for k, v in data.items() if k != "layers"}
    fields["input_shape"] = tuple(fields["input_shape"])
    return Architecture(**fields, layers=layers)


def _residual_from_dict(data: Mapping[str, Any]):
    from jaxprune.models.residual import Block, Op, ResidualArchitecture

    def op(d):
        return None if d is None else Op(**{**d, "pool": _tuple(d.get("pool"))})

    blocks = tuple(Block(**{**b, "ops": tuple(op(o) for o in b["ops"]),
                            "shortcut": op(b.get("shortcut"))}) for b in data["blocks"])
    fields = {k: v for k, v in data.items() if k != "blocks"}
    fields["input_shape"] = tuple(fields["input_shape"])
    fields["readout_keep"] = _tuple(fields.get("readout_keep"))
    return ResidualArchitecture(**fields, blocks=blocks)


# ---------------------------------------------------------------- trees


def _shape_dtype(x) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return tuple(int(d) for d in x.shape), np.dtype(x.dtype)
    x = np.asarray(x)
    return x.shape, x.dtype


def abstract_tree(tree: PyTree) -> PyTree:
    """``jax.ShapeDtypeStruct`` leaves with the shapes and dtypes of ``tree``'s leaves."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(*_shape_dtype(x)), tree)


def _path_str(path) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        else:
            parts.append(str(key))
    return "/".join(parts)


def describe(tree: PyTree) -> dict[str, dict[str, Any]]:
    """``{"layer/kernel": {"shape": [...], "dtype": "float32"}}`` for every leaf of ``tree``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        _path_str(path): {"shape": list(shape), "dtype": str(dtype)}
        for path, leaf in leaves
        for shape, dtype in [_shape_dtype(leaf)]
    }


def _compare(name: str, saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    problems = []
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    if missing:
        problems.append(f"{name}: expected but not in the checkpoint: {missing}")
    if extra:
        problems.append(f"{name}: in the checkpoint but not expected: {extra}")
    for key in expected:
        if key in saved and saved[key] != expected[key]:
            s, e = saved[key], expected[key]
            problems.append(
                f"{name}/{key}: checkpoint has shape {tuple(s['shape'])} {s['dtype']}, "
                f"expected {tuple(e['shape'])} {e['dtype']}"
            )
    return problems


# ---------------------------------------------------------------- save


def _checkpointer() -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.StandardCheckpointHandler())


def _write_arrays(directory: Path, tree: dict[str, PyTree]) -> None:
    with _checkpointer() as ckptr:
        ckptr.save(directory, args=ocp.args.StandardSave(tree))


def _write_metadata(directory: Path, text: str) -> None:
    (directory / METADATA_FILE).write_text(text)


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds a complete checkpoint (its metadata file exists)."""
    return (Path(path) / METADATA_FILE).is_file()


def save(
    path: str | Path,
    params: PyTree,
    masks: PyTree | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    arch: Architecture | None = None,
    state: PyTree | None = None,
) -> Path:
    """Save ``params`` (any pytree of arrays, e.g. stacked ``[S, ...]``), ``masks`` and extra
    ``state`` arrays with JSON ``metadata`` to the folder ``path``; returns ``path``.

    ``metadata`` is the caller's JSON-able dict (seeds, data set, network config, training
    config...); the library version, ``arch`` (as :func:`arch_to_dict`) and the shape/dtype of
    every array are added. An existing checkpoint at ``path`` is replaced only after the new
    one is fully written; a folder at ``path`` that is not a checkpoint is never replaced.
    """
    path = Path(path).absolute()
    metadata = dict(metadata or {})
    clash = [k for k in metadata if k in RESERVED_KEYS]
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the checkpoint format")
    if path.exists() and not is_checkpoint(path) and any(path.iterdir()):
        raise CheckpointError(f"{path} exists and is not a jaxprune checkpoint; not replacing it")
    tree: dict[str, PyTree] = {"params": params}
    if masks is not None:
        tree["masks"] = masks
    if state is not None:
        tree["state"] = state
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxprune_version": jaxprune.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "architecture": None if arch is None else arch_to_dict(arch),
        "arrays": {name: describe(sub) for name, sub in tree.items()},
    }
    try:  # fail before touching the disk if the metadata is not JSON-able
        text = json.dumps({**header, **metadata}, indent=1, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"checkpoint metadata is not JSON-serialisable: {err}") from err

    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.parent / f".{path.name}.tmp-{tag}"
    old = path.parent / f".{path.name}.old-{tag}"
    with interrupts_deferred():
        try:
            tmp.mkdir()
            _write_arrays(tmp / ARRAYS_DIR, jax.device_get(tree))
            _write_metadata(tmp, text)
            if path.exists():
                path.rename(old)
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not path.exists():
                old.rename(path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    return path


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise ``KeyboardInterrupt``: a save
    runs to its end (orbax's writer threads cannot be stopped half-way without noise), and
    the interrupted run resumes from the checkpoint just written. No-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.tmp-*`` folders that a killed :func:`save` left in ``folder`` (a
    kill between the two renames leaves ``.NAME.old-*``, which :func:`restore` still finds
    while ``NAME`` is missing, so those stay); returns what was removed."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.tmp-*") if p.is_dir()] if folder.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


# ---------------------------------------------------------------- restore


def _locate(path: Path) -> Path:
    """``path``, or the previous checkpoint a save interrupted between its two renames."""
    if path.exists():
        return path
    backups = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    backups = [b for b in backups if is_checkpoint(b)]
    if backups:
        warnings.warn(
            f"{path} is missing; restoring the previous checkpoint {backups[-1]} left by an "
            "interrupted save", stacklevel=3,
        )
        return backups[-1]
    raise CheckpointNotFoundError(f"no checkpoint at {path}: the folder does not exist")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata dict of the checkpoint at ``path`` (no arrays are read)."""
    path = _locate(Path(path).absolute())
    file = path / METADATA_FILE
    if not file.is_file():
        raise CheckpointCorruptError(
            f"{path} is not a complete checkpoint: {METADATA_FILE} is missing "
            "(an interrupted save, or not a jaxprune checkpoint)"
        )
    try:
        metadata = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointCorruptError(f"{file} is truncated or not valid JSON: {err}") from err
    if metadata.get("format") != FORMAT:
        raise CheckpointCorruptError(f"{file} does not describe a jaxprune checkpoint")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {metadata['format_version']}; this jaxprune "
            f"({jaxprune.__version__}) reads up to {FORMAT_VERSION}"
        )
    return metadata


def _rebuild(expected: PyTree, raw: PyTree) -> PyTree:
    """``raw``'s leaves arranged in ``expected``'s tree structure, matched by path name (a
    restore without a target gives named tuples back as dicts and tuples as lists)."""
    by_path = {_path_str(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(raw)[0]}
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    return jax.tree.unflatten(jax.tree.structure(expected), [by_path[p] for p in paths])


def restore(
    path: str | Path,
    abstract: PyTree | None = None,
    *,
    abstract_masks: PyTree | None = None,
    abstract_state: PyTree | None = None,
) -> Checkpoint:
    """Read the checkpoint at ``path``.

    ``abstract`` (a params-shaped tree of ``jax.ShapeDtypeStruct`` or arrays, see
    :func:`abstract_tree`), ``abstract_masks`` and ``abstract_state`` give the expected tree
    structure, shapes and dtypes; the restored arrays then have exactly that structure (named
    tuples of optimizer states included). Without them, params and masks come back as nested
    dicts. A missing folder raises :class:`CheckpointNotFoundError`, a truncated one
    :class:`CheckpointCorruptError`, a tree/shape/dtype difference from the abstract trees
    :class:`CheckpointMismatchError`, each naming the path and what differs.
    """
    path = _locate(Path(path).absolute())
    metadata = read_metadata(path)
    saved = metadata["arrays"]
    expected = {"params": abstract, "masks": abstract_masks, "state": abstract_state}
    problems = []
    for name, tree in expected.items():
        if tree is None:
            continue
        if name not in saved:
            problems.append(f"{name}: expected, but the checkpoint has no {name}")
        else:
            problems += _compare(name, saved[name], describe(tree))
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the expected arrays:\n  " + "\n  ".join(problems)
        )
    arrays = path / ARRAYS_DIR
    if not arrays.is_dir():
        raise CheckpointCorruptError(f"{path} is incomplete: the folder {ARRAYS_DIR}/ is missing")
    try:
        with _checkpointer() as ckptr:
            if all(expected[name] is not None for name in saved):
                target = {name: abstract_tree(expected[name]) for name in saved}
                tree = ckptr.restore(arrays, args=ocp.args.StandardRestore(target))
            else:
                tree = ckptr.restore(arrays)
    except Exception as err:  # orbax/tensorstore report damage as several exception types
        raise CheckpointCorruptError(
            f"checkpoint {path} could not be read (truncated or damaged files?): {err}"
        ) from err
    restored = {}
    for name in ("params", "masks", "state"):
        sub = tree.get(name)
        restored[name] = sub if sub is None or expected[name] is None else _rebuild(
            expected[name], sub)
    problems = []
    for name, sub in restored.items():
        if sub is not None and name in saved:
            problems += _compare(name, describe(sub), saved[name])
    if problems:
        raise CheckpointCorruptError(
            f"checkpoint {path}: arrays differ from its metadata:\n  " + "\n  ".join(problems)
        )
    return Checkpoint(restored["params"], restored["masks"], restored["state"], metadata)


__all__ = [
    "Checkpoint",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "abstract_tree",
    "arch_from_dict",
    "arch_to_dict",
    "describe",
    "is_checkpoint",
    "read_metadata",
    "restore",
    "save",
]
