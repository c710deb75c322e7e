"""Whole-network geometry-preserving PoZ pruning over many seeds (design method 1; the
whole-network paper's first aim), with the two searches beyond one greedy pass.

Per data set (``lenet5_cifar`` on CIFAR-10, ``lenet5_mnist`` 64-64-256-256 on MNIST), seeds are
trained in chunks of ``chunk`` seeds, each chunk one stacked program (Adam 1e-3, batch 64, a
10 % per-seed validation split, early stopping when the validation accuracy stops improving,
best-validation parameters). Target: the unpruned network's Pearson RSM of the readout
(penultimate layer, post-ReLU) on the first ``stimuli`` training images (class-interleaved
for the CIFAR-10 image tree; file order for MNIST); fit: R² of the upper triangles; threshold
R² ≥ 0.8. Searches: ``bottom-up`` and ``top-down`` (the paper's), ``alternate``, ``global``
and ``global-alternate`` (:mod:`jaxprune.search.poz`). The paper directions' pruned networks
are then fine-tuned with their masks fixed (same validation split and early stopping).

Everything is resumable at seed-chunk granularity under ``--runs/<data>/seeds_<a>-<b>``:
training from its epoch checkpoints, the searches per (direction, seed), fine-tuning from its
checkpoints; a finished chunk is never redone, and a chunk written under another protocol is
refused. ``--seeds N`` runs seeds 0..N-1 (a later call with a larger N adds chunks).

    python experiments/aim1.py --quick                      # tiny, under a minute (MNIST)
    python experiments/aim1.py --data cifar10 --seeds 20    # the full protocol, 20 seeds
    python experiments/aim1.py --data cifar10 --stage report
    python experiments/aim1.py --data mnist --seeds 10 --train-images 12000   # a CPU budget

A protocol changed by ``--train-images``/``--max-epochs`` works in its own folder
(``runs/aim1/mnist_train12000``) and is recorded in the results.

Writes ``<out>/aim1_<data>.{json,md,png}``: ``rows`` (one per seed and direction: seed,
direction, kept, compression_rate, fit, test_accuracy {unpruned, pruned, fine_tuned},
parameters and FLOPs kept, search wall time), per-seed Jaccard overlap of the paper
directions, the summary table and the wall time of every stage. The run adds jaxprune's CPU
training flag (:func:`jaxprune.add_cpu_conv_flag`, recorded as ``xla_flags``): training is
most of a chunk's time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune import add_cpu_conv_flag

ROOT = Path(__file__).resolve().parents[1]
PAPER = ("bottom-up", "top-down")


@dataclass(frozen=True)
class Protocol:
    """What one data set's run does. ``train_images``: the first N training images (None:
    all); ``seeds_full``: the full mode's seed count (50)."""

    data: str
    model: str
    widths: tuple[int, ...] | None = None
    train_images: int | None = None
    max_epochs: int = 40
    patience: int = 3
    finetune_epochs: int = 5
    finetune_patience: int = 2
    stimuli: int = 5000
    threshold: float = 0.8
    chunk: int = 5
    seeds_full: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3

    def train_config(self, seeds, fine_tune: bool = False):
        from jaxprune.train import TrainConfig

        return TrainConfig(
            learning_rate=self.learning_rate, batch_size=self.batch_size, seeds=tuple(seeds),
            epochs=self.finetune_epochs if fine_tune else self.max_epochs,
            patience=self.finetune_patience if fine_tune else self.patience,
            monitor="accuracy", val_fraction=0.1)


FULL = {"cifar10": Protocol("cifar10", "lenet5_cifar"),
        "mnist": Protocol("mnist", "lenet5_mnist", max_epochs=20, patience=2)}
QUICK = {name: dataclasses.replace(p, widths=w, train_images=600, max_epochs=1, patience=1,
                                   finetune_epochs=1, stimuli=100, chunk=1, seeds_full=2)
         for (name, p), w in zip(FULL.items(), [(6, 8, 24, 16), (8, 8, 32, 16)], strict=True)}


def chunk_identity(protocol: Protocol, seeds: tuple[int, ...]) -> dict[str, Any]:
    from jaxprune.provenance import identity
    from jaxprune.search.poz import POZ_DIRECTIONS

    return identity(experiment="experiments/aim1.py", protocol=asdict(protocol),
                    seeds=list(seeds), directions=list(POZ_DIRECTIONS))


def run_chunk(protocol: Protocol, seeds: tuple[int, ...], folder: Path, data_dir,
              progress: bool) -> list[dict[str, Any]]:
    """Train, search, fine-tune and evaluate one chunk of seeds; returns its rows (read back
    when the chunk finished earlier)."""
    from jaxprune.provenance import check_identity

    expected = chunk_identity(protocol, seeds)
    done = folder / "rows.json"
    if done.exists():
        saved = json.loads(done.read_text())
        check_identity(saved["identity"], expected, done, fresh="remove that folder")
        return saved["rows"]
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "identity.json"
    if marker.exists():
        check_identity(json.loads(marker.read_text()), expected, marker,
                       fresh="remove that folder")
    else:
        marker.write_text(json.dumps(expected, indent=1))
    rows, walls = chunk_rows(protocol, seeds, folder, data_dir, progress)
    from jaxprune.search.result import write_json

    write_json(done, {"identity": expected, "rows": rows, "wall_time_s": walls})
    return rows


def chunk_rows(protocol: Protocol, seeds, folder: Path, data_dir, progress: bool):
    from jaxprune import masks as mask_ops
    from jaxprune.pipeline import load_trained, stimulus_set, train_seeds
    from jaxprune.search.poz import POZ_DIRECTIONS, PoZConfig, poz_search_directions

    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    model_config = {"widths": protocol.widths} if protocol.widths else {}
    if (folder / "model").exists():
        arch, params, trained = load_trained(folder / "model")
    else:
        arch, params, trained = train_seeds(
            protocol.model, protocol.data, seeds, folder, protocol.train_config(seeds),
            data_dir=data_dir, model_config=model_config,
            train_images=protocol.train_images, progress=progress)
    walls["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stim = stimulus_set(protocol.data, protocol.stimuli, split="train", data_dir=data_dir)
    search = poz_search_directions(
        arch, params, stim.float_images(), PoZConfig(threshold=protocol.threshold),
        directions=POZ_DIRECTIONS, stacked=True, seed_batch=len(seeds),
        resume_path=str(folder / "search.json"), progress=progress,
        provenance={"data": protocol.data, "split": "train"})
    walls["search_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    accuracy = test_accuracies(protocol, arch, params, search, seeds, folder, data_dir,
                               progress)
    walls["finetune_s"] = time.perf_counter() - t0
    rows = []
    for i, seed in enumerate(seeds):
        for d in POZ_DIRECTIONS:
            r = search.results[d][i]
            rows.append({
                "seed": int(seed), "direction": d, "widths": arch.widths, "kept": r.kept,
                "compression_rate": r.compression_rate, "fit": r.final_score,
                "threshold": r.threshold, "passes": r.config.get("passes"),
                "parameters_kept": mask_ops.param_count(arch, r.masks),
                "flops_kept": mask_ops.flops(arch, r.masks),
                "search_wall_time_s": r.wall_time_s,
                "test_accuracy": {k: v[d][i] if d in v else None for k, v in accuracy.items()},
                "training": {"epochs_run": int(trained["epochs_run"]),
                             "best_epoch": int(trained["best_epoch"][i]),
                             "val_accuracy": float(trained["val_accuracy"][i])},
                "jaccard": search.jaccard[i] if d in PAPER else None,
            })
    return rows, walls


def test_accuracies(protocol: Protocol, arch, params, search, seeds, folder: Path, data_dir,
                    progress: bool) -> dict[str, dict[str, list[float]]]:
    """Test accuracy per direction and seed: ``unpruned``, ``pruned`` (masks applied, no
    training) and ``fine_tuned`` (the paper directions: masked training from the trained
    parameters, resumable from ``folder/finetune_<direction>``)."""
    from jaxprune.data import load_dataset
    from jaxprune.train import evaluate, fine_tune

    train = load_dataset(protocol.data, "train", data_dir=data_dir)
    if protocol.train_images is not None:
        train = train.take(protocol.train_images)
    test = load_dataset(protocol.data, "test", data_dir=data_dir)
    xt, yt = test.float_images(), test.labels
    unpruned = np.asarray(evaluate(arch, params, xt, yt).accuracy).tolist()
    out: dict[str, dict[str, list[float]]] = {"unpruned": {}, "pruned": {}, "fine_tuned": {}}
    for d, results in search.results.items():
        masks = {k: np.stack([r.masks[k] for r in results]) for k in results[0].masks}
        out["unpruned"][d] = unpruned
        out["pruned"][d] = np.asarray(evaluate(arch, params, xt, yt, masks).accuracy).tolist()
        if d in PAPER:
            tuned = fine_tune(arch, params, masks, train.float_images(), train.labels,
                              protocol.train_config(seeds, fine_tune=True), test=(xt, yt),
                              checkpoint_dir=folder / f"finetune_{d}", progress=progress)
            out["fine_tuned"][d] = np.asarray(tuned.final()["test_accuracy"]).tolist()
    return out


def chunk_name(seeds: tuple[int, ...]) -> str:
    return f"seeds_{seeds[0]:03d}-{seeds[-1]:03d}"


def chunks(protocol: Protocol, n_seeds: int) -> list[tuple[int, ...]]:
    """Seeds 0..n_seeds-1 in chunks of ``protocol.chunk``."""
    return [tuple(range(a, min(n_seeds, a + protocol.chunk)))
            for a in range(0, n_seeds, protocol.chunk)]


def finished_rows(protocol: Protocol, folder: Path) -> tuple[list[dict], dict[str, float]]:
    """Rows and summed stage wall times of every finished chunk under ``folder`` (identity
    checked), in seed order."""
    from jaxprune.provenance import check_identity

    rows, walls = [], {}
    for done in sorted(folder.glob("seeds_*/rows.json")):
        saved = json.loads(done.read_text())
        seeds = tuple(sorted({r["seed"] for r in saved["rows"]}))
        check_identity(saved["identity"], chunk_identity(protocol, seeds), done,
                       fresh="remove that folder")
        rows += saved["rows"]
        for k, v in saved["wall_time_s"].items():
            walls[k] = walls.get(k, 0.0) + v
    return sorted(rows, key=lambda r: r["seed"]), walls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["cifar10", "mnist"], choices=sorted(FULL))
    p.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: the mode's count)")
    p.add_argument("--quick", action="store_true", help="the small, fast version")
    p.add_argument("--stage", default="all", choices=["all", "report"],
                   help="report: only collect the finished chunks into the results")
    p.add_argument("--out", type=Path, help="results folder (default docs/results; quick: "
                   "RUNS/results)")
    p.add_argument("--runs", type=Path, help="working folder (default runs/aim1[_quick])")
    p.add_argument("--train-images", type=int, metavar="N",
                   help="train on the first N training images only (a CPU budget; recorded in "
                        "the protocol, so its chunks are apart from the full protocol's)")
    p.add_argument("--max-epochs", type=int, metavar="E", help="most training epochs")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    add_cpu_conv_flag()  # training dominates a chunk's time (6x faster; searches ~1.5x slower)
    runs = args.runs or ROOT / "runs" / ("aim1_quick" if args.quick else "aim1")
    out = args.out or (runs / "results" if args.quick else ROOT / "docs" / "results")
    protocols = QUICK if args.quick else FULL
    try:
        jobs = [(with_overrides(protocols[name], args), name) for name in args.data]
        for protocol, _ in jobs:  # every option checked before any work
            if not 1 <= (args.seeds or 1) <= protocol.seeds_full:
                raise ValueError(f"--seeds {args.seeds} is outside 1..{protocol.seeds_full}")
        for protocol, name in jobs:
            folder = runs / (name + tag(protocol, protocols[name]))
            earlier = earlier_results(protocol, out / f"aim1_{name}.json", args.quick)
            done = {r["seed"] for r in earlier.get("rows", [])}
            if args.stage == "all":
                for seeds in chunks(protocol, args.seeds or protocol.seeds_full):
                    if set(seeds) <= done and not (folder / chunk_name(seeds)).exists():
                        print(f"{name}: seeds {seeds[0]}-{seeds[-1]} kept from {out}")
                        continue
                    print(f"{name}: seeds {seeds[0]}-{seeds[-1]}", flush=True)
                    run_chunk(protocol, seeds, folder / chunk_name(seeds), args.data_dir,
                              not args.no_progress)
            write_results(protocol, folder, out, quick=args.quick, earlier=earlier)
    except ValueError as e:  # identity mismatches and bad options
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the epoch and search checkpoints so far are kept
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def with_overrides(protocol: Protocol, args) -> Protocol:
    """``protocol`` with ``--train-images`` / ``--max-epochs`` applied (checked)."""
    changes = {}
    if args.train_images is not None:
        if args.train_images < 100:
            raise ValueError(f"--train-images {args.train_images}: give at least 100")
        changes["train_images"] = args.train_images
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise ValueError(f"--max-epochs {args.max_epochs}: give at least 1")
        changes["max_epochs"] = args.max_epochs
    return dataclasses.replace(protocol, **changes)


def tag(protocol: Protocol, base: Protocol) -> str:
    """The working-folder suffix of a protocol changed by ``--train-images``/``--max-epochs``
    ("" for the mode's own protocol)."""
    parts = [f"_train{protocol.train_images}" if protocol.train_images != base.train_images
             else "", f"_epochs{protocol.max_epochs}" if protocol.max_epochs != base.max_epochs
             else ""]
    return "".join(parts)


def earlier_results(protocol: Protocol, path: Path, quick: bool) -> dict[str, Any]:
    """The results file an earlier run wrote at ``path`` ({} when absent): its rows stand
    for seeds whose working folders are gone (``runs/`` is not kept). One written under
    another protocol is refused."""
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if saved.get("protocol") != json.loads(json.dumps(asdict(protocol))) or \
            saved.get("quick") != quick:
        raise ValueError(f"{path} holds results of another protocol: give another --out, or "
                         "remove it to start the results afresh")
    return saved


def write_results(protocol: Protocol, folder: Path, out: Path, *, quick: bool,
                  earlier: dict[str, Any]) -> None:
    """``aim1_<data>.{json,md,png}`` from the finished chunks and, for seeds without one, the
    ``earlier`` results (:func:`earlier_results`)."""
    from jaxprune import sweep_report as report
    from jaxprune.provenance import identity
    from jaxprune.search.result import write_json

    rows, walls = finished_rows(protocol, folder)
    base = out / f"aim1_{protocol.data}"
    ran = {r["seed"] for r in rows}
    kept = [r for r in earlier.get("rows", []) if r["seed"] not in ran]
    rows = sorted(rows + kept, key=lambda r: r["seed"])  # stable: directions stay in order
    if not rows:
        raise ValueError(f"no finished seeds under {folder}: run without --stage report")
    out.mkdir(parents=True, exist_ok=True)
    summary = report.sweep_summary(rows)
    write_json(base.with_suffix(".json"), {
        "experiment": "aim1", "network": protocol.model, "data": protocol.data,
        "quick": quick, "protocol": asdict(protocol), "seeds": sorted({r["seed"] for r in rows}),
        "summary": summary, "wall_time_s": walls, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": rows,
        "kept_from_earlier_results": {"seeds": sorted({r["seed"] for r in kept}),
                                      "wall_time_s": earlier.get("wall_time_s")} if kept
        else None,
        "provenance": identity(experiment="experiments/aim1.py", protocol=asdict(protocol))})
    text = report.sweep_markdown(rows, title=f"{protocol.model} on {protocol.data}")
    base.with_suffix(".md").write_text(text + "\n")
    report.plot_sweep(rows, base.with_suffix(".png"), title=f"{protocol.model} on "
                     f"{protocol.data}: PoZ pruning, R² ≥ {protocol.threshold}")
    print(text)
    print(f"wrote {base}.json/.md/.png ({len(summary['seeds'])} seeds)")


if __name__ == "__main__":
    from jaxprune.malloc import relaunch_with_huge_pages

    relaunch_with_huge_pages()  # GiB-sized search buffers: jaxprune.malloc
    sys.exit(main())
