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
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune import checkpoint
from jaxprune.data import load_dataset
from jaxprune.models import architecture
from jaxprune.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]

TRAIN_FULL = {"learning_rate": 1e-3, "batch_size": 64, "epochs": 12, "patience": 2,
              "val_fraction": 0.1}
FULL: dict[str, dict[str, Any]] = {
    "cifar10": {"model": "lenet5_cifar", "widths": None, "train_per_class": None,
                "seeds": (0, 1, 2), "train": TRAIN_FULL},
    "mnist": {"model": "lenet5_mnist", "widths": None, "train_per_class": 1200,
              "seeds": (0, 1, 2), "train": {**TRAIN_FULL, "epochs": 3}},
}
QUICK: dict[str, dict[str, Any]] = {
    "cifar10": {"model": "lenet5_cifar", "widths": (4, 8, 32, 16), "train_per_class": 100,
                "seeds": (0, 1), "train": {**TRAIN_FULL, "epochs": 2}},
    "mnist": {"model": "lenet5_mnist", "widths": (4, 8, 32, 16), "train_per_class": 100,
              "seeds": (0, 1), "train": {**TRAIN_FULL, "epochs": 2}},
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small version, under a minute")
    parser.add_argument("--datasets", nargs="*", default=["cifar10", "mnist"])
    parser.add_argument("--runs", default=None, help="folder of the trained networks")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    specs = QUICK if args.quick else FULL
    runs = Path(args.runs or ROOT / "runs" / ("circuits_quick" if args.quick else "circuits"))
    out: dict[str, Any] = {}
    for name in args.datasets:
        arch, params, meta = train_networks(name, specs[name], runs, args.data_dir,
                                            not args.no_progress)
        print(f"{name}: {arch.family}, seeds {meta['seeds']}, test accuracy "
              f"{np.round(meta['test_accuracy'], 4).tolist()}", flush=True)
        out[name] = meta
    return out


if __name__ == "__main__":
    main()
