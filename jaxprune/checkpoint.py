"""Checkpoints: parameters, unit masks, extra state arrays and JSON metadata, as the steps
of an orbax ``CheckpointManager`` folder.

Layout of a checkpoint folder ``path/``::

    path/<step>/arrays/     orbax StandardSave: {"params", "masks"?, "state"?}
    path/<step>/metadata/   orbax JsonSave: library version, architecture, shapes/dtypes of
                            every array, and the caller's metadata (seeds, data set, configs)

A save is a new step, committed atomically by orbax (an interrupted save leaves only an
uncommitted temporary that orbax ignores); older steps beyond ``keep`` are deleted after the
commit, so a failed save leaves the previous checkpoint intact. A read takes the newest step
and falls back to an older one, with a warning, when the newest is damaged. Training runs
save one step per epoch (``step`` = epochs completed). Folders of format 1 (``metadata.json``
and ``arrays/`` at the top) are still read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import signal
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxprune
from jaxprune.models.arch import Architecture, Layer

FORMAT = "jaxprune-checkpoint"
FORMAT_VERSION = 2
ARRAYS = "arrays"
METADATA = "metadata"
LEGACY_METADATA_FILE = "metadata.json"  # format 1
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


def _ocp():
    """``orbax.checkpoint``, imported on first use (it is slow to import)."""
    import orbax.checkpoint

    return orbax.checkpoint


def _manager(path: Path, keep: int | None = None):
    options = _ocp().CheckpointManagerOptions(max_to_keep=keep, create=False,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=keep is not None)
    return _ocp().CheckpointManager(path, options=options)


def steps(path: str | Path) -> list[int]:
    """The committed steps of the checkpoint folder ``path``, newest first ([] if none)."""
    path = Path(path).absolute()
    if not path.is_dir():
        return []
    with _manager(path) as manager:
        return sorted(manager.all_steps(), reverse=True)


def _is_legacy(path: Path) -> bool:
    return (path / LEGACY_METADATA_FILE).is_file()


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds at least one committed checkpoint step (or a format-1 folder)."""
    path = Path(path)
    return _is_legacy(path) or bool(steps(path))


def _check_replaceable(path: Path) -> None:
    """A folder at ``path`` that holds anything but checkpoint steps is never written into."""
    if not path.exists():
        return
    if not path.is_dir() or _is_legacy(path):
        raise CheckpointError(f"{path} exists and is not a checkpoint folder of this jaxprune "
                              "(or is of format 1); not replacing it: choose another path")
    foreign = [p.name for p in path.iterdir() if not p.name.split(".")[0].isdigit()]
    if foreign:
        raise CheckpointError(f"{path} exists and is not a jaxprune checkpoint (it holds "
                              f"{sorted(foreign)[:3]}); not replacing it")


def _header(tree: dict[str, PyTree], arch: Architecture | None,
            metadata: Mapping[str, Any]) -> dict[str, Any]:
    clash = [k for k in metadata if k in RESERVED_KEYS]
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the checkpoint format")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxprune_version": jaxprune.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "architecture": None if arch is None else arch_to_dict(arch),
        "arrays": {name: describe(sub) for name, sub in tree.items()},
    }
    try:  # fail before touching the disk if the metadata is not JSON-able
        return json.loads(json.dumps({**header, **metadata}, allow_nan=True))
    except TypeError as err:
        raise ValueError(f"checkpoint metadata is not JSON-serialisable: {err}") from err


def save(
    path: str | Path,
    params: PyTree,
    masks: PyTree | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    arch: Architecture | None = None,
    state: PyTree | None = None,
    step: int | None = None,
    keep: int = 1,
) -> Path:
    """Save ``params`` (any pytree of arrays, e.g. stacked ``[S, ...]``), ``masks`` and extra
    ``state`` arrays with JSON ``metadata`` as a new step of the folder ``path``; returns
    ``path``.

    ``metadata`` is the caller's JSON-able dict; the library version, ``arch`` (as
    :func:`arch_to_dict`) and the shape/dtype of every array are added. ``step``: the step
    number (default: one past the newest); ``keep``: how many newest steps stay. The steps
    replaced go only after the new one is committed; a folder that is not a checkpoint is
    never written into.
    """
    path = Path(path).absolute()
    tree: dict[str, PyTree] = {"params": params}
    if masks is not None:
        tree["masks"] = masks
    if state is not None:
        tree["state"] = state
    header = _header(tree, arch, dict(metadata or {}))
    _check_replaceable(path)
    path.mkdir(parents=True, exist_ok=True)
    with interrupts_deferred(), _manager(path, keep) as manager:
        latest = manager.latest_step()
        step = (0 if latest is None else latest + 1) if step is None else int(step)
        ocp = _ocp()
        args = ocp.args.Composite(**{ARRAYS: ocp.args.StandardSave(jax.device_get(tree)),
                                     METADATA: ocp.args.JsonSave(header)})
        manager.save(step, args=args, force=True)
        manager.wait_until_finished()
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


# ---------------------------------------------------------------- restore


def _step_of(path: Path, step: int | None) -> int | None:
    """``step``, or the newest committed step; None for a format-1 folder."""
    if _is_legacy(path):
        return None
    found = steps(path)
    if not found:
        if path.is_dir() and any(path.iterdir()):
            raise CheckpointCorruptError(f"{path} holds no complete checkpoint (an interrupted "
                                         "save, or not a jaxprune checkpoint)")
        raise CheckpointNotFoundError(f"no checkpoint at {path}: the folder does not exist "
                                      "or is empty")
    if step is None:
        return found[0]
    if step not in found:
        raise CheckpointNotFoundError(f"{path} has no step {step} (it has {found})")
    return step


def _check_header(where: Path, metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointCorruptError(f"{where} does not describe a jaxprune checkpoint")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {metadata['format_version']}; this jaxprune "
            f"({jaxprune.__version__}) reads up to {FORMAT_VERSION}")
    return metadata


def _read_step_metadata(path: Path, step: int | None) -> dict[str, Any]:
    file = (path / LEGACY_METADATA_FILE if step is None
            else path / str(step) / METADATA / METADATA)
    if not file.is_file():
        raise CheckpointCorruptError(f"{path} (step {step}) is not a complete checkpoint: "
                                     f"{file.name} is missing")
    try:
        metadata = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointCorruptError(f"{file} is truncated or not valid JSON: {err}") from err
    return _check_header(file, metadata)


def read_metadata(path: str | Path, step: int | None = None) -> dict[str, Any]:
    """The metadata dict of the checkpoint at ``path`` (its newest step, or ``step``); no
    arrays are read."""
    path = Path(path).absolute()
    return _read_step_metadata(path, _step_of(path, step))


def _rebuild(expected: PyTree, raw: PyTree) -> PyTree:
    """``raw``'s leaves arranged in ``expected``'s tree structure, matched by path name (a
    restore without a target gives named tuples back as dicts and tuples as lists)."""
    by_path = {_path_str(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(raw)[0]}
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    return jax.tree.unflatten(jax.tree.structure(expected), [by_path[p] for p in paths])


def _check_expected(where: str, saved: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
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
            f"checkpoint {where} does not match the expected arrays:\n  " + "\n  ".join(problems))


def _read_arrays(path: Path, step: int | None, saved, expected) -> PyTree:
    target = ({name: abstract_tree(expected[name]) for name in saved}
              if all(expected[name] is not None for name in saved) else None)
    ocp = _ocp()
    restore_args = ocp.args.StandardRestore(target)
    try:
        if step is None:  # format 1
            if not (path / "arrays").is_dir():
                raise FileNotFoundError("the folder arrays/ is missing")
            with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
                return ckptr.restore(path / "arrays", args=restore_args)
        with _manager(path) as manager:
            restored = manager.restore(step, args=ocp.args.Composite(**{ARRAYS: restore_args}))
            return restored[ARRAYS]
    except Exception as err:  # orbax/tensorstore report damage as several exception types
        raise CheckpointCorruptError(
            f"checkpoint {path} (step {step}) could not be read (truncated or damaged "
            f"files?): {err}") from err


def _restore_step(path: Path, step: int | None, expected: dict[str, PyTree | None]) -> Checkpoint:
    metadata = _read_step_metadata(path, step)
    saved = metadata["arrays"]
    where = f"{path}" + ("" if step is None else f" (step {step})")
    _check_expected(where, saved, expected)
    tree = _read_arrays(path, step, saved, expected)
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
            f"checkpoint {where}: arrays differ from its metadata:\n  " + "\n  ".join(problems))
    return Checkpoint(restored["params"], restored["masks"], restored["state"], metadata)


def restore(
    path: str | Path,
    abstract: PyTree | None = None,
    *,
    abstract_masks: PyTree | None = None,
    abstract_state: PyTree | None = None,
    step: int | None = None,
) -> Checkpoint:
    """Read the checkpoint at ``path``: ``step``, or the newest step that reads (an older
    one, with a warning, when the newest is damaged).

    ``abstract`` (a params-shaped tree of ``jax.ShapeDtypeStruct`` or arrays, see
    :func:`abstract_tree`), ``abstract_masks`` and ``abstract_state`` give the expected tree
    structure, shapes and dtypes; the restored arrays then have exactly that structure (named
    tuples of optimizer states included). Without them, params and masks come back as nested
    dicts. A missing folder raises :class:`CheckpointNotFoundError`, a damaged one
    :class:`CheckpointCorruptError`, a tree/shape/dtype difference from the abstract trees
    :class:`CheckpointMismatchError`, each naming the path and what differs.
    """
    path = Path(path).absolute()
    expected = {"params": abstract, "masks": abstract_masks, "state": abstract_state}
    first = _step_of(path, step)
    candidates = [first] if step is not None or first is None else steps(path)
    for i, s in enumerate(candidates):
        try:
            return _restore_step(path, s, expected)
        except CheckpointMismatchError:
            raise
        except CheckpointCorruptError as err:
            if i == len(candidates) - 1:
                raise
            warnings.warn(f"{err}; restoring the previous step {candidates[i + 1]}",
                          stacklevel=2)
    raise AssertionError("unreachable")


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
    "steps",
]
