"""Per-seed experiments over trained checkpoints: find and check the checkpoints, name every
seed, and keep one result per seed in a resumable, identity-checked JSON file.

A seed is identified by ``(checkpoint folder, index on the stacked seed axis)`` and its
parameter hash; it also gets a global running id (its position over all checkpoints, in the
order given). Every user error is an :class:`InputError` (a ``ValueError``) saying what is
wrong, with which value, and what to do — raised before any long work.
"""

from __future__ import annotations

import glob
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from jaxprune import checkpoint
from jaxprune.models import Architecture
from jaxprune.provenance import IdentityMismatch, check_identity, fingerprint


class InputError(ValueError):
    """A bad input to an experiment (its message is the whole ``error: ...`` line)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checked checkpoint folder: its architecture, metadata and number of stacked seeds."""

    path: str
    arch: Architecture
    metadata: dict[str, Any]
    seeds: int


@dataclass(frozen=True)
class SeedRef:
    """One trained network: ``checkpoint`` folder (absolute), ``index`` on its seed axis,
    ``train_seed`` (the seed it was trained with, if recorded), ``params_hash`` of its own
    parameters and the running ``global_id``."""

    checkpoint: str
    index: int
    train_seed: int | None
    params_hash: str
    global_id: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.checkpoint, self.index)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_checkpoints(given: Sequence[str] | None, defaults: Sequence[str],
                        root: Path) -> list[Path]:
    """The checkpoint folders: ``given`` (each must exist), else every match of the glob
    ``defaults`` (relative to ``root``), each pattern sorted; duplicates dropped."""
    if given:
        paths = [Path(p) for p in given]
        for p in paths:
            if not p.is_dir():
                raise InputError(f"--checkpoints {p}: no such folder; pass folders written by "
                                 "jaxprune.checkpoint.save (e.g. <train --out>/model)")
    else:
        paths = []
        for pattern in defaults:
            found = sorted(glob.glob(str(root / pattern)))
            if not found:
                raise InputError(f"no checkpoint folder matches the default {pattern} (under "
                                 f"{root}); train those networks first, or pass "
                                 "--checkpoints DIR [DIR ...]")
            paths += [Path(p) for p in found]
    unique = list(dict.fromkeys(p.absolute() for p in paths))
    return unique


def inspect_checkpoints(paths: Sequence[Path], *, layer: str | None = None,
                        data: Sequence[str] | None = None) -> list[CheckpointInfo]:
    """Read each checkpoint's metadata (no arrays) and check it: a committed checkpoint with an
    architecture, ``layer`` among its layers (None: its readout layer), trained on one of
    ``data`` (None: any data set)."""
    out = []
    for p in paths:
        if not checkpoint.is_checkpoint(p):
            raise InputError(f"--checkpoints {p}: holds no committed checkpoint; pass a folder "
                             "written by jaxprune.checkpoint.save (e.g. <train --out>/model)")
        meta = checkpoint.read_metadata(p)
        if meta.get("architecture") is None:
            raise InputError(f"--checkpoints {p}: the checkpoint has no architecture; save it "
                             "with checkpoint.save(..., arch=arch)")
        arch = checkpoint.arch_from_dict(meta["architecture"])
        name = arch.readout_layer if layer is None else layer
        if name not in arch.layer_names:
            raise InputError(f"--layer {name}: checkpoint {p} ({arch.family}) has no such "
                             f"layer; its layers are {', '.join(arch.layer_names)}")
        if data is not None and meta.get("data") not in data:
            raise InputError(f"--checkpoints {p}: trained on {meta.get('data')!r}, but this "
                             f"experiment takes networks of {', '.join(data)}; pass such "
                             "checkpoints (or --data to match)")
        shapes = meta.get("arrays", {})
        seeds = len(meta["seeds"]) if "seeds" in meta else _seed_axis(shapes)
        out.append(CheckpointInfo(str(p), arch, meta, seeds))
    return out


def _seed_axis(arrays: Mapping[str, Any]) -> int:
    """S from the saved shapes (``{"params/...": {"shape": [S, ...]}}``)."""
    shapes = [v["shape"] for k, v in arrays.items() if k.startswith("params")]
    if not shapes or not shapes[0]:
        raise InputError("a checkpoint records neither its seeds nor stacked params")
    return int(shapes[0][0])


def same_width(infos: Sequence[CheckpointInfo], layer: str | None = None) -> int:
    """The common width of ``layer`` (None: readout) over checkpoints; differing widths are an
    :class:`InputError` (a mean over seeds needs one set of levels)."""
    widths = {i.path: i.arch.widths[layer or i.arch.readout_layer] for i in infos}
    if len(set(widths.values())) > 1:
        raise InputError(f"the checkpoints' {layer or 'readout'} widths differ ({widths}); "
                         "pass checkpoints of one architecture per run")
    return next(iter(widths.values()))


def load_params(info: CheckpointInfo):
    """The stacked params of a checked checkpoint."""
    return checkpoint.restore(info.path).params


def seed_refs(infos: Sequence[CheckpointInfo],
              loader: Callable[[CheckpointInfo], Any] = load_params) -> list[SeedRef]:
    """Every seed of every checkpoint, in order, with its own parameter hash (each checkpoint
    is read once here, before the long work, so a resume file can be checked up front)."""
    from jaxprune.models import seed_slice

    refs: list[SeedRef] = []
    for info in infos:
        params = loader(info)
        train_seeds = info.metadata.get("seeds") or [None] * info.seeds
        for i in range(info.seeds):
            refs.append(SeedRef(info.path, i, train_seeds[i], fingerprint(seed_slice(params, i)),
                                len(refs)))
    return refs


def order_seed(ref: SeedRef) -> int:
    """A seed for a network's random draws that depends on the network only (its hash), not
    on its position among the inputs."""
    return int(ref.params_hash[:8], 16)


def git_commit(root: Path) -> str | None:
    """The commit of the repository at ``root`` (None outside one)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None
    except OSError:
        return None


def checkpoint_records(infos: Sequence[CheckpointInfo], refs: Sequence[SeedRef]) -> list[dict]:
    """Provenance of the inputs: per checkpoint its path, data, family, widths, seeds and the
    hashes of its seeds' parameters."""
    return [{"path": i.path, "data": i.metadata.get("data"), "model": i.arch.family,
             "widths": dict(i.arch.widths), "train_seeds": i.metadata.get("seeds"),
             "params_hashes": [r.params_hash for r in refs if r.checkpoint == i.path]}
            for i in infos]


class SeedResults:
    """The per-seed results file: ``{"identity", "per_seed": [{"seed": SeedRef, ...}], ...}``.

    Opening checks an existing file before any work: its identity must equal ``identity``
    (else :class:`InputError` naming the fields that differ), each stored seed must be one of
    ``refs`` with the same parameter hash and, with ``expect``, hold the fields
    ``expect(ref)`` gives with equal values (e.g. the hash of its stimuli). ``fresh`` ignores
    (and later overwrites) it."""

    def __init__(self, path: Path, identity: dict[str, Any], refs: Sequence[SeedRef],
                 fresh: bool = False,
                 expect: Callable[[SeedRef], Mapping[str, Any]] | None = None) -> None:
        self.path, self.identity, self.refs = Path(path), identity, list(refs)
        self.expect = expect
        self.entries: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists() and not fresh:
            self._read()

    def _read(self) -> None:
        import json

        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: cannot be read as a results file ({e}); delete it "
                             "or pass --fresh") from None
        try:
            check_identity(old.get("identity"), self.identity, self.path,
                           fresh="rerun with --fresh to start afresh (or another --out)")
        except IdentityMismatch as e:
            raise InputError(str(e)) from None
        by_key = {r.key: r for r in self.refs}
        for entry in old.get("per_seed", []):
            s = entry["seed"]
            key = (s["checkpoint"], s["index"])
            if key not in by_key:
                raise InputError(f"{self.path} holds seed {s['index']} of {s['checkpoint']}, "
                                 "which is not among the inputs now; pass that checkpoint too, "
                                 "or --fresh")
            if by_key[key].params_hash != s["params_hash"]:
                raise InputError(f"{self.path}: seed {s['index']} of {s['checkpoint']} has "
                                 "other parameters now (retrained?); rerun with --fresh")
            wanted = self.expect(by_key[key]) if self.expect else {}
            diff = sorted(k for k, v in wanted.items() if entry.get(k) != v)
            if diff:
                raise InputError(f"{self.path}: seed {s['index']} of {s['checkpoint']} was "
                                 f"computed from other inputs ({', '.join(diff)} differ); "
                                 "rerun with --fresh")
            self.entries[key] = entry

    def done(self, ref: SeedRef) -> dict[str, Any] | None:
        """The stored result of ``ref`` (its ``seed`` record updated), or None."""
        entry = self.entries.get(ref.key)
        return None if entry is None else {**entry, "seed": ref.to_dict()}

    def add(self, ref: SeedRef, result: dict[str, Any]) -> dict[str, Any]:
        entry = {"seed": ref.to_dict(), **result}
        self.entries[ref.key] = entry
        return entry

    def ordered(self) -> list[dict[str, Any]]:
        """Entries of the inputs' seeds that are done, in input order."""
        return [self.done(r) for r in self.refs if r.key in self.entries]

    def write(self, extra: Mapping[str, Any]) -> Path:
        """Write ``{identity, **extra, per_seed}`` atomically."""
        from jaxprune.search.result import write_json

        return write_json(self.path, {"identity": self.identity, **extra,
                                      "per_seed": self.ordered()})


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def train_quick(model: str, data: str, folder: Path, *, widths: Sequence[int],
                per_class: int, seeds: int = 3, epochs: int = 2,
                data_dir: str | None = None) -> list[Path]:
    """Train ``seeds`` tiny ``model`` networks together on the first ``per_class`` training
    images of each class of ``data``; save them as two checkpoints (the first seed alone, the
    rest stacked), ``folder/seeds_{0,1}/model``, the layout full runs use."""
    import jax

    from jaxprune.data import load_dataset
    from jaxprune.models import architecture
    from jaxprune.train import TrainConfig, fit

    train = load_dataset(data, "train", data_dir, download=False)
    pick = np.sort(np.concatenate([np.flatnonzero(train.labels == c)[:per_class]
                                   for c in range(train.num_classes)]))
    train = train.subset(pick)
    arch = architecture(model, widths=tuple(widths), input_shape=train.image_shape,
                        num_classes=train.num_classes)
    config = TrainConfig(seeds=tuple(range(seeds)), epochs=epochs, batch_size=32,
                         val_fraction=0.1)
    result = fit(arch, train.float_images(), train.labels, config, progress=False,
                 verbose=False)
    parts = [[0], list(range(1, seeds))]
    paths = []
    for j, idx in enumerate(parts):
        take = np.asarray(idx)
        params = jax.tree.map(lambda v, take=take: np.asarray(v)[take], result.params)
        meta = {"data": data, "model": model, "seeds": idx, "quick": True,
                "train_images": len(train), "train_config": config.to_dict()}
        paths.append(checkpoint.save(folder / f"seeds_{j}" / "model", params, metadata=meta,
                                     arch=arch))
    return paths


#: quick modes' tiny networks, per data set: (model, widths, training images per class)
QUICK_NETWORKS = {"cifar10": ("lenet5_cifar", (4, 8, 24, 16), 30),
                  "mnist": ("lenet5_mnist", (4, 8, 24, 16), 30),
                  "digits": ("lenet5_mnist", (4, 8, 24, 16), 30)}


def quick_checkpoints(data: str, folder: Path, data_dir: str | None = None) -> list[Path]:
    """The quick networks of ``data`` in ``folder/<data>/seeds_*/model``, trained there
    (:func:`train_quick`, 3 seeds, 2 epochs) when missing; the experiments' quick modes share
    them when given one ``--out``."""
    found = sorted((folder / data).glob("seeds_*/model"))
    if found and all(checkpoint.is_checkpoint(p) for p in found):
        return found
    model, widths, per_class = QUICK_NETWORKS[data]
    return train_quick(model, data, folder / data, widths=widths, per_class=per_class,
                       data_dir=data_dir)


def experiment_provenance(name: str, root: Path, job: Any) -> dict[str, Any]:
    """What produced a per-seed experiment's results: the script and command, the
    checkpoints (paths, per-seed parameter hashes), ``job.data``, ``job.options``, versions
    and the commit of ``root``."""
    import jax

    import jaxprune

    return {"experiment": f"experiments/{name}.py", "command": " ".join(sys.argv),
            "checkpoints": checkpoint_records(job.infos, job.refs), "data": job.data,
            "options": asdict(job.options), "jaxprune_version": jaxprune.__version__,
            "jax_version": jax.__version__, "git_commit": git_commit(root)}


def run_seeds(job: Any, run_seed: Callable, save: Callable[[], Any], *, desc: str,
              progress: bool = True) -> None:
    """Run ``run_seed(job, info, ref, params)`` for every seed of ``job.refs`` not yet in
    ``job.store``, checkpoint by checkpoint (its parameters loaded once), adding each result
    to the store and calling ``save()`` after each."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(job.refs), disable=not progress, desc=desc, unit="seed")
    for info in job.infos:
        todo = [r for r in job.refs if r.checkpoint == info.path and not job.store.done(r)]
        bar.update(sum(r.checkpoint == info.path for r in job.refs) - len(todo))
        params = load_params(info) if todo else None
        for ref in todo:
            job.store.add(ref, run_seed(job, info, ref, params))
            save()
            bar.update(1)
    bar.close()


def run_experiment(name: str, argv: Sequence[str] | None, parse: Callable, prepare: Callable,
                   run_seed: Callable, save: Callable, write_report: Callable) -> dict:
    """The ``main`` of a per-seed experiment: parse ``argv``, ``prepare`` the job (a bad input
    ends in :func:`fail` before any work), run the unfinished seeds with ``save(job, started)``
    after each, then write the report of the saved result; returns the result."""
    import time

    started = time.perf_counter()
    args = parse(argv)
    try:
        job = prepare(args)
    except (ValueError, OSError) as e:
        fail(str(e))
    run_seeds(job, run_seed, lambda: save(job, started), desc=name,
              progress=not args.no_progress)
    result = save(job, started)
    write_report(result, job.out)
    print(f"wrote {job.out / (name + '.json')}, .md, .png")
    return result


def experiment_parser(description: str, checkpoints_help: str):
    """The options every per-seed experiment takes: ``--quick``, ``--checkpoints``, ``--out``,
    ``--data-dir``, ``--fresh``, ``--no-progress``; add the experiment's own to it."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="train tiny networks; under a minute")
    p.add_argument("--checkpoints", nargs="+", metavar="DIR", help=checkpoints_help)
    p.add_argument("--out", type=Path, help="results folder (full: docs/results; quick: temp)")
    p.add_argument("--data-dir", help="folder of the data sets (default: ../shared/data)")
    p.add_argument("--fresh", action="store_true", help="ignore an earlier results file")
    p.add_argument("--no-progress", action="store_true")
    return p


def options_from(args: Any, quick: Any, full: Any, keys: Sequence[str]) -> Any:
    """The ``quick`` or ``full`` options dataclass with the fields ``keys`` that ``args``
    gives (not None) replaced."""
    import dataclasses

    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    return dataclasses.replace(quick if args.quick else full, **given)


def save_results(job: Any, started: float, name: str, root: Path, summary: Callable,
                 **extra: Any) -> dict[str, Any]:
    """Write a per-seed experiment's results file (after every seed): ``extra`` fields, the
    per-seed entries, ``summary(entries)``, the provenance and this call's wall time; returns
    the whole result."""
    import time

    entries = job.store.ordered()
    payload = {"experiment": name, **extra, "complete": len(entries) == len(job.refs),
               "summary": summary(entries) if entries else None,
               "provenance": experiment_provenance(name, root, job),
               "wall_time_s_this_call": time.perf_counter() - started}
    job.store.write(payload)
    return {"identity": job.store.identity, **payload, "per_seed": entries}
