"""Category circuits of LeNet-5 on CIFAR-10 and MNIST (method 5; Hamblin et al., Andrade &
Konkle), several seeds, with :mod:`jaxprune.search.circuits`.

For each data set, S seeds of the network are trained together (Adam, early stopping on a
per-seed validation split) and saved under ``--runs``; then, for every seed and every one of
the 10 categories, the circuit of the category's output unit is extracted (activation ×
gradient scores on ``scoring`` training images per class, a sparsity sweep judged by circuit
substitution accuracy on ``extraction`` other training images per class, one fitted bias,
fully connected layers first, then conv kernels) and evaluated on ``eval`` test images per
class. Writes ``docs/results/circuits_<dataset>.{json,md,png}`` (``--out`` folder): one row
per (seed, category), mean ± sd over categories and seeds, the pairwise Jaccard overlap
histogram and the mean category × category overlap.

    python experiments/circuits.py --quick     # small networks and sets, under a minute
    python experiments/circuits.py             # the full protocol (resumes at seed level)
    python experiments/circuits.py --datasets cifar10

The CIFAR-10 copy in ../shared/data is JPEG q75 (lossy), see its README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import jaxprune
from jaxprune import checkpoint
from jaxprune.data import load_dataset
from jaxprune.models import architecture
from jaxprune.pipeline.circuits import (
    CircuitJob,
    image_sets,
    overlap_summary,
    plot_overlap,
    run_all,
    summarize,
)
from jaxprune.report import mean_sd
from jaxprune.search.circuits import CircuitConfig, default_levels
from jaxprune.search.result import to_jsonable, write_json
from jaxprune.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]

TRAIN_FULL = {"learning_rate": 1e-3, "batch_size": 64, "epochs": 12, "patience": 2,
              "val_fraction": 0.1}
FULL: dict[str, dict[str, Any]] = {
    "cifar10": {"model": "lenet5_cifar", "widths": None, "train_per_class": None,
                "seeds": (0, 1, 2), "train": TRAIN_FULL},
    "mnist": {"model": "lenet5_mnist", "widths": None, "train_per_class": 1200,
              "seeds": (0, 1, 2), "train": {**TRAIN_FULL, "epochs": 2}},
}
#: circuits: threshold 0.9, 4 scoring / 20 extraction / 30 evaluation images per class,
#: 20 sparsity levels 1 - 0.7^k, conv kernels as items
JOB_FULL = CircuitJob(None, 4, 20, 30, CircuitConfig(0.9, default_levels(20)))
JOB_QUICK = CircuitJob(None, 2, 5, 5, CircuitConfig(0.9, default_levels(5)))
QUICK: dict[str, dict[str, Any]] = {
    "cifar10": {"model": "lenet5_cifar", "widths": (4, 8, 32, 16), "train_per_class": 60,
                "seeds": (0, 1), "train": {**TRAIN_FULL, "epochs": 1}},
    "mnist": {"model": "lenet5_mnist", "widths": (4, 8, 32, 16), "train_per_class": 60,
              "seeds": (0, 1), "train": {**TRAIN_FULL, "epochs": 1}},
}


def first_per_class(labels: np.ndarray, k: int | None, skip: int = 0) -> np.ndarray:
    """Sorted indices of images ``skip .. skip + k`` of every class (in data-set order)."""
    if k is None:
        return np.arange(len(labels))
    picks = [np.flatnonzero(labels == c)[skip:skip + k] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def train_networks(name: str, spec: dict[str, Any], runs: Path, data_dir: str | None,
                   progress: bool) -> tuple[Any, Any, dict[str, Any]]:
    """The trained seeds of ``spec`` (stacked params), from ``runs/<name>/model`` when a
    finished training with the same spec is there; an interrupted one resumes."""
    folder = runs / name
    spec_id = {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items()}
    if checkpoint.is_checkpoint(folder / "model"):
        meta = checkpoint.read_metadata(folder / "model")
        if meta.get("spec") != spec_id:
            raise ValueError(f"{folder / 'model'} was trained with {meta.get('spec')}, not "
                             f"{spec_id}: use another --runs folder or delete it")
        ckpt = checkpoint.restore(folder / "model")
        return ckpt.architecture, ckpt.params, meta
    train = load_dataset(name, "train", data_dir)
    test = load_dataset(name, "test", data_dir)
    train = train.subset(first_per_class(train.labels, spec["train_per_class"]))
    overrides = {"input_shape": train.image_shape, "num_classes": train.num_classes}
    if spec["widths"] is not None:
        overrides["widths"] = tuple(spec["widths"])
    arch = architecture(spec["model"], **overrides)
    config = TrainConfig(seeds=tuple(spec["seeds"]), **spec["train"])
    t0 = time.perf_counter()
    result = fit(arch, train.float_images(), train.labels, config,
                 test=(test.float_images(), test.labels), checkpoint_dir=folder / "train",
                 metadata={"data": name}, progress=progress)
    final = result.final()
    meta = {"spec": spec_id, "data": name, "train_images": len(train),
            "train_source": train.source, "seeds": list(config.seeds),
            "epochs_run": result.epochs_run, "best_epoch": result.best_epoch.tolist(),
            "test_accuracy": final["test_accuracy"].tolist(),
            "val_accuracy": final["val_accuracy"].tolist(), "train_config": config.to_dict(),
            "train_seconds": time.perf_counter() - t0}
    checkpoint.save(folder / "model", result.params, metadata=meta, arch=arch)
    return arch, result.params, meta


def _rows_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: per category (mean ± sd over seeds) and over everything."""
    fields = [("sparsity", 4), ("sparsity_extracted", 4), ("heldout_csa", 3),
              ("heldout_baseline_csa", 3), ("heldout_null_csa", 3), ("relative_csa", 3)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['category']} {r['name']}", []).append(r)
    groups["all (categories x seeds)"] = rows
    def cell(values: list[float], digits: int) -> str:
        finite = [v for v in values if v is not None and np.isfinite(v)]  # JSON NaN: None
        return mean_sd(finite, digits) if finite else "n/a"

    body = [[key, *(cell([r[f] for r in rs], d) for f, d in fields)]
            for key, rs in groups.items()]
    headers = ["category", "sparsity (effective)", "sparsity (extracted)", "CSA circuit",
               "CSA unpruned", "CSA empty circuit", "relative CSA"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run_dataset(name: str, spec: dict[str, Any], job: CircuitJob, out: Path, runs: Path,
                data_dir: str | None, progress: bool) -> dict[str, Any]:
    """Train (or load) the seeds, then circuits for every seed not yet in the results file;
    writes ``circuits_<name>.json`` after each seed, then the table and the figure."""
    t0 = time.perf_counter()
    arch, params, trained = train_networks(name, spec, runs, data_dir, progress)
    train, test = (load_dataset(name, s, data_dir) for s in ("train", "test"))
    sets = image_sets((train.float_images(), train.labels), (test.float_images(), test.labels),
                      job, (train.name, test.name))
    options = to_jsonable({"network": spec, "job": job.to_dict(), "data": name})
    path = out / f"circuits_{name}.json"
    done: list[dict[str, Any]] = []
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("options") != options:
            raise SystemExit(f"error: {path} was written with other options "
                             f"({old.get('options')}); use another --out or delete it")
        done = old["per_seed"]
    base = {"experiment": "category circuits", "options": options,
            "jaxprune_version": jaxprune.__version__, "command": " ".join(sys.argv),
            "data": name, "data_source": train.source,
            "data_note": "CIFAR-10 copy in ../shared/data is JPEG q75 (lossy)"
            if name == "cifar10" else "",
            "splits": {"scoring": train.name, "extraction": train.name, "eval": test.name},
            "counts": {k: len(v[1]) for k, v in sets.items()},
            "training": trained, "checkpoint": str(runs / name / "model")}

    def save(results):
        rows = [r for res in results for r in res["rows"]]
        write_json(path, {**summarize(rows), **overlap_summary(results), **base, "rows": rows,
                          "per_seed": results})

    results = run_all(arch, params, sets, job, trained["seeds"], train.class_names, done=done,
                      on_seed=save, progress=progress)
    save(results)
    rows = [r for res in results for r in res["rows"]]
    text = _rows_table(rows)
    payload = json.loads(path.read_text())
    payload["circuit_seconds"] = sum(r["seconds"] for r in results)
    payload["wall_time_s_this_call"] = time.perf_counter() - t0
    write_json(path, payload)
    header = (f"{arch.family} on {name} ({train.source}), seeds {trained['seeds']}, "
              f"epochs run {trained['epochs_run']}, test accuracy "
              f"{mean_sd(trained['test_accuracy'], 4)}; threshold {job.circuit.threshold}, "
              f"{job.scoring_per_class}/{job.extraction_per_class}/{job.eval_per_class} "
              f"scoring/extraction/evaluation images per class; pairwise Jaccard overlap "
              f"{_num(payload['mean_jaccard'])} ± {_num(payload['sd_jaccard'])} "
              f"({payload['jaccard_pairs']} pairs, {payload['jaccard_pairs_undefined']} of two "
              f"empty circuits left out); {payload['empty_circuits']} of {payload['n_rows']} "
              f"circuits empty; circuits {payload['circuit_seconds']:.0f} s\n\n")
    tmp = out / f".circuits_{name}.md.tmp"
    tmp.write_text(header + text + "\n")
    tmp.replace(out / f"circuits_{name}.md")
    plot_overlap(results, out / f"circuits_{name}.png", train.class_names, f"{arch.family}:")
    print(header + text, flush=True)
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small version, under a minute")
    parser.add_argument("--datasets", nargs="*", default=["cifar10", "mnist"])
    parser.add_argument("--out", default=None, help="results folder (full: docs/results)")
    parser.add_argument("--runs", default=None, help="folder of the trained networks")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    specs, job = (QUICK, JOB_QUICK) if args.quick else (FULL, JOB_FULL)
    runs = Path(args.runs or ROOT / "runs" / ("circuits_quick" if args.quick else "circuits"))
    out = Path(args.out or (runs / "results" if args.quick else ROOT / "docs" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.datasets:
        if args.train_only:
            results[name] = train_networks(name, specs[name], runs, args.data_dir,
                                           not args.no_progress)[2]
        else:
            results[name] = run_dataset(name, specs[name], job, out, runs, args.data_dir,
                                        not args.no_progress)
    return results


if __name__ == "__main__":
    main()
