"""Test accuracy of LeNet5 trained on real CIFAR-10 and MNIST (seed mean ± sd).

- ``lenet5_cifar`` on CIFAR-10 (the shared JPEG-q75 copy in ``cifar10/``; pixels differ
  slightly from the original CIFAR-10);
- ``lenet5_mnist`` (the wide 64-64-256-256 LeNet) on MNIST (the IDX files).

Data through :func:`jaxprune.data.load_dataset` (decoded once, cached), normalised by
``ImageDataset.float_images``. Adam lr 1e-3, batch 64, 10 % of the training images held out
(per seed) for validation, early stopping (``--patience``) and best-epoch selection,
evaluation on the official test sets. The seeds of a network are trained together in one
stacked ``fit``. ``--mnist-train`` / ``--cifar-train`` use the first N training images of a
fixed shuffle (MNIST's wide LeNet costs about 0.2 GFLOP per training image).

Usage::

    python benchmarks/accuracy.py --data ../shared/data
    python benchmarks/accuracy.py --quick   # a few hundred steps, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import finish, machine_info

from jaxprune.data import load_dataset
from jaxprune.models import architecture
from jaxprune.train import TrainConfig, fit

DEFAULT_DATA = Path(os.environ.get("JAXPRUNE_DATA",
                                   Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "accuracy.json"


def run(name: str, arch, train, test, seeds, epochs: int, n_train: int | None,
        patience: int | None = None) -> dict:
    """Train the seeds together (one stacked ``fit``) on the training images (shuffled once
    with a fixed permutation, then the first ``n_train``); per-seed and mean ± sd of the
    returned (best-validation) parameters' metrics."""
    x, y = train
    order = np.random.default_rng(0).permutation(x.shape[0])  # one fixed shuffle of the files
    x, y = x[order], y[order]
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    t0 = time.perf_counter()
    cfg = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=epochs,
                      patience=patience, val_fraction=0.1, seeds=tuple(seeds))
    result = fit(arch, x, y, cfg, test=test, progress=True, verbose=True)
    final = result.final()
    per_seed = [{
        "seed": seed,
        "best_epoch": int(result.best_epoch[s]),
        **{k: float(v[s]) for k, v in final.items()},
        "history": {k: v[:, s].tolist() for k, v in result.history.items()},
    } for s, seed in enumerate(seeds)]
    summary = {}
    for key in ("test_accuracy", "test_loss", "val_accuracy", "train_accuracy"):
        values = np.array([r[key] for r in per_seed])
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1))
                        if len(values) > 1 else 0.0}
    acc = summary["test_accuracy"]
    print(f"{name}: test accuracy {acc['mean']:.4f} ± {acc['sd']:.4f} over {len(seeds)} seeds "
          f"({epochs} epochs, {x.shape[0]} training images incl. 10 % validation)", flush=True)
    return {"network": arch.family, "architecture": arch.layer_names, "seeds": list(seeds),
            "epochs": epochs, "train_images": int(x.shape[0]),
            "test_images": int(test[0].shape[0]), "summary": summary, "per_seed": per_seed,
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cifar-epochs", type=int, default=15)
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--cifar-train", type=int, default=None, help="first N images")
    parser.add_argument("--mnist-train", type=int, default=12_000, help="first N images")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cifar_epochs, args.mnist_epochs = 2, 1, 1
        args.cifar_train, args.mnist_train = 5_000, 2_000
    seeds = tuple(range(args.seeds))
    out: dict[str, Any] = {
        "benchmark": "accuracy",
        "quick": args.quick,
        "protocol": "Adam lr 1e-3, batch 64, 10 % per-seed validation split, early stopping "
                    f"with patience {args.patience}, best-validation-loss parameters, official "
                    "test sets; seed sd with ddof=1",
        "machine": machine_info(),
    }
    t0 = time.perf_counter()
    for key, network, data, epochs, n_train in (
        ("cifar10", "lenet5_cifar", "cifar10", args.cifar_epochs, args.cifar_train),
        ("mnist", "lenet5_mnist", "mnist", args.mnist_epochs, args.mnist_train),
    ):
        train = load_dataset(data, "train", data_dir=str(args.data))
        test = load_dataset(data, "test", data_dir=str(args.data))
        out[key] = run(f"{network} / {data}", architecture(network),
                       (train.float_images(), train.labels), (test.float_images(), test.labels),
                       seeds, epochs, n_train, args.patience)
        out[key]["data"] = f"{data} from {args.data} via jaxprune.data.load_dataset"
    out["total_runtime_s"] = time.perf_counter() - t0
    finish(out["machine"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} ({out['total_runtime_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
