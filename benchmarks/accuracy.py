"""Test accuracy of short training runs of LeNet5 on real CIFAR-10 and MNIST (seed mean ± sd).

- ``lenet5_cifar`` on CIFAR-10 (the shared JPEG-q75 copy, ``cifar10/cifar10_jpeg_q75.tar.gz``,
  decoded here with PIL; pixels differ slightly from the original CIFAR-10), inputs scaled to
  [0, 1] and standardised per channel with the training mean/sd;
- ``lenet5_mnist`` (the wide 64-64-256-256 LeNet) on MNIST (the IDX files), standardised with
  0.1307 / 0.3081.

Adam lr 1e-3, batch 64, 10 % of the training images held out (per seed) for validation and
best-epoch selection, evaluation on the official test sets. Each seed is trained by its own
``fit`` call (``fit`` gives a seed the same parameters alone or in a stack; one seed at a time
is the faster path on CPU). ``--mnist-train`` / ``--cifar-train`` use the first N training
images (MNIST's wide LeNet costs about 0.2 GFLOP per training image).

Usage::

    python benchmarks/accuracy.py --data ../shared/data
    python benchmarks/accuracy.py --quick   # a few hundred steps, a smoke test
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import tarfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image

import jaxprune
from jaxprune.models import architecture
from jaxprune.train import TrainConfig, fit

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
DEFAULT_DATA = Path(os.environ.get("JAXPRUNE_DATA",
                                   Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "accuracy.json"


def load_cifar10(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "test"}: (uint8 [n, 32, 32, 3], int32 [n])`` from the JPEG tar, in member
    order sorted by (class, file name)."""
    found: dict[str, list[tuple[str, int, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in found:
                continue
            split, cls, name = parts
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
            found[split].append((f"{cls}/{name}", CIFAR_CLASSES.index(cls), pixels))
    out = {}
    for split, items in found.items():
        items.sort(key=lambda t: t[0])
        out[split] = (np.stack([t[2] for t in items]), np.array([t[1] for t in items], np.int32))
    return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (big-endian, gzip) as NumPy."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "test"}: (uint8 [n, 28, 28, 1], int32 [n])``."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")[..., None]
        y = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int32)
        out[split] = (x, y)
    return out


def standardise(x: np.ndarray, mean, sd) -> np.ndarray:
    return ((x.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(sd)).astype(
        np.float32)


def run(name: str, arch, train, test, seeds, epochs: int, n_train: int | None) -> dict:
    """Train each seed alone on the training images (shuffled once with a fixed permutation,
    then the first ``n_train``); per-seed and mean ± sd of the returned parameters' metrics."""
    x, y = train
    order = np.random.default_rng(0).permutation(x.shape[0])  # one fixed shuffle of the files
    x, y = x[order], y[order]
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    per_seed = []
    t0 = time.perf_counter()
    for seed in seeds:
        cfg = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=epochs,
                          val_fraction=0.1, seeds=(seed,))
        result = fit(arch, x, y, cfg, test=test, progress=True, verbose=True)
        final = result.final()
        per_seed.append({
            "seed": seed,
            "best_epoch": int(result.best_epoch[0]),
            **{k: float(v[0]) for k, v in final.items()},
            "history": {k: v[:, 0].tolist() for k, v in result.history.items()},
            "seconds": float(sum(result.epoch_seconds)),
        })
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
    parser.add_argument("--cifar-epochs", type=int, default=4)
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--cifar-train", type=int, default=None, help="first N images")
    parser.add_argument("--mnist-train", type=int, default=12_000, help="first N images")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cifar_epochs, args.mnist_epochs = 2, 1, 1
        args.cifar_train, args.mnist_train = 5_000, 2_000
    seeds = tuple(range(args.seeds))
    out: dict[str, Any] = {
        "benchmark": "accuracy",
        "quick": args.quick,
        "protocol": "Adam lr 1e-3, batch 64, 10 % per-seed validation split, best-validation-"
                    "loss parameters, official test sets; seed sd with ddof=1",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "jaxprune": jaxprune.__version__},
    }
    t0 = time.perf_counter()
    cifar = load_cifar10(args.data / "cifar10" / "cifar10_jpeg_q75.tar.gz")
    mean = cifar["train"][0].reshape(-1, 3).mean(0) / 255.0
    sd = (cifar["train"][0].reshape(-1, 3) / 255.0).std(0)
    print(f"CIFAR-10 decoded in {time.perf_counter() - t0:.0f} s: "
          f"{cifar['train'][0].shape[0]} train, {cifar['test'][0].shape[0]} test", flush=True)
    out["cifar10"] = run(
        "lenet5_cifar / CIFAR-10", architecture("lenet5_cifar"),
        (standardise(cifar["train"][0], mean, sd), cifar["train"][1]),
        (standardise(cifar["test"][0], mean, sd), cifar["test"][1]),
        seeds, args.cifar_epochs, args.cifar_train)
    out["cifar10"]["data"] = "CIFAR-10 JPEG q75 copy (shared/data/cifar10), decoded with PIL"
    del cifar
    mnist = load_mnist(args.data / "mnist")
    out["mnist"] = run(
        "lenet5_mnist / MNIST", architecture("lenet5_mnist"),
        (standardise(mnist["train"][0], 0.1307, 0.3081), mnist["train"][1]),
        (standardise(mnist["test"][0], 0.1307, 0.3081), mnist["test"][1]),
        seeds, args.mnist_epochs, args.mnist_train)
    out["mnist"]["data"] = "MNIST IDX (shared/data/mnist)"
    out["total_runtime_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} ({out['total_runtime_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
