"""CKA vs L1 vs random pruning of MLPs on MNIST, iterative with fine-tuning (method 4).

For every network configuration — the base MLP and one-factor variations of dropout, width and
depth — S seeds are trained together (Adam, early stopping on a per-seed validation split),
then each method prunes ``fraction`` of every hidden layer's kept units and fine-tunes with
the masks fixed, ``iterations`` times. Recorded per iteration and seed: test accuracy,
agreement with the unpruned network's predictions, CKA to it at every layer, kept units,
compression rate (:mod:`jaxprune.search.iterative`). Writes to ``--out``:

- ``records.json`` / ``records.csv``: one row per (configuration, method, iteration, seed);
- ``summary.csv`` / ``summary.json`` / ``summary.txt``: mean ± sd over seeds;
- ``training.json``: the unpruned networks (epochs, validation and test accuracy);
- ``curves.png``: accuracy, agreement and readout CKA vs units kept, base configuration;
- ``variations.png``: final-iteration accuracy and agreement vs dropout / width / depth.

    python experiments/cka_mlp_mnist.py --quick          # a minute or less on 2 CPU cores
    python experiments/cka_mlp_mnist.py                  # the full protocol (hours on CPU)
    python experiments/cka_mlp_mnist.py --seeds 2 --train-size 10000 --max-epochs 20
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.models import architecture
from jaxprune.pipeline import load_splits
from jaxprune.report import mean_sd, table
from jaxprune.search.iterative import IterativeConfig, Splits, iterative_prune, summarize
from jaxprune.search.result import write_json
from jaxprune.train import TrainConfig, fit

# ----------------------------------------------------------------------------- configuration

FULL: dict[str, Any] = {
    "data": "mnist",
    "train_size": None,  # all 60,000 (10 % of them held out per seed for validation)
    "test_size": None,  # all 10,000
    "seeds": (0, 1, 2),
    "train": {"learning_rate": 1e-3, "batch_size": 512, "epochs": 50, "patience": 3},
    "fine_tune": {"learning_rate": 1e-3, "batch_size": 512, "epochs": 50, "patience": 3},
    "base": {"widths": (512, 512), "dropout": 0.5},
    "variations": {"dropout": (0.0, 0.25, 0.5), "width": (128, 256, 512, 1024),
                   "depth": (1, 2, 3)},
    "methods": ("cka", "l1", "random"),
    "cka": {"compare": "layer", "kernel": "linear"},
    "fraction": 0.25,  # of each layer's kept units per iteration
    "iterations": 6,  # 0.75^6 = 18 % of the units kept at the end
    "stimuli": 1000,  # training images the CKA search sees
    "probe": 1000,  # test images of the per-layer CKA records
}

QUICK: dict[str, Any] = {
    **FULL,
    "train_size": 2000,
    "test_size": 500,
    "seeds": (0, 1),
    "train": {"learning_rate": 1e-3, "batch_size": 128, "epochs": 4, "patience": 3},
    "fine_tune": {"learning_rate": 1e-3, "batch_size": 128, "epochs": 2, "patience": 3},
    "base": {"widths": (64, 64), "dropout": 0.5},
    "variations": {"dropout": (0.0, 0.5)},
    "fraction": 0.4,
    "iterations": 2,
    "stimuli": 256,
    "probe": 256,
}

FIELDS = ("kept_fraction", "compression_rate", "test_accuracy", "agreement",
          "test_accuracy_pruned", "agreement_pruned", "readout_cka")


# ----------------------------------------------------------------------------- steps


def load(cfg: dict[str, Any], data_dir: str | None) -> Splits:
    """MNIST (or scikit-learn digits where MNIST is absent), first train/test images."""
    try:
        return load_splits(cfg["data"], data_dir, n_train=cfg["train_size"],
                           n_test=cfg["test_size"])
    except FileNotFoundError as e:
        print(f"{cfg['data']} unavailable ({str(e).splitlines()[0]}); using sklearn digits")
        return load_splits("digits", n_train=cfg["train_size"], n_test=cfg["test_size"])


def configurations(cfg: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    """Unique networks ``(widths, dropout) -> {labels}``: the base and each variation."""
    base = cfg["base"]
    out: dict[tuple, dict[str, Any]] = {}

    def add(widths, dropout, factor):
        key = (tuple(widths), float(dropout))
        out.setdefault(key, {"widths": tuple(widths), "dropout": float(dropout),
                             "factors": []})["factors"].append(factor)

    add(base["widths"], base["dropout"], "base")
    width, depth = base["widths"][0], len(base["widths"])
    for factor, values in cfg["variations"].items():
        for v in values:
            if factor == "dropout":
                add(base["widths"], v, factor)
            elif factor == "width":
                add((v,) * depth, base["dropout"], factor)
            elif factor == "depth":
                add((width,) * v, base["dropout"], factor)
            else:
                raise ValueError(f"unknown variation {factor!r}")
    return out


def run_network(net: dict[str, Any], data: Splits, cfg: dict[str, Any], progress: bool):
    """Train the seeds of one configuration, then prune it with every method."""
    arch = architecture("mlp", input_dim=int(np.prod(data.x_train.shape[1:])),
                        widths=net["widths"], dropout=net["dropout"],
                        num_classes=int(data.y_train.max()) + 1)
    train = TrainConfig(seeds=cfg["seeds"], **cfg["train"])
    t0 = time.perf_counter()
    trained = fit(arch, data.x_train, data.y_train, train, test=(data.x_test, data.y_test),
                  progress=progress, verbose=False)
    final = trained.final()
    info = {"widths": net["widths"], "dropout": net["dropout"], "epochs": trained.epochs_run,
            "best_epoch": trained.best_epoch.tolist(),
            "val_accuracy": final["val_accuracy"].tolist(),
            "test_accuracy": final["test_accuracy"].tolist(),
            "seconds": time.perf_counter() - t0}
    tune = replace(train, **cfg["fine_tune"])
    records = []
    for method in cfg["methods"]:
        options = cfg["cka"] if method == "cka" else {}
        run = IterativeConfig(method, cfg["fraction"], cfg["iterations"], stimuli=cfg["stimuli"],
                              probe=cfg["probe"], options=options)
        result = iterative_prune(arch, trained.params, data, run, tune, progress=progress)
        labels = {"widths": "-".join(map(str, net["widths"])), "width": net["widths"][0],
                  "depth": len(net["widths"]), "dropout": net["dropout"]}
        records += [{**labels, **r} for r in result.records]
    return info, records


# ----------------------------------------------------------------------------- outputs


def write_tables(records: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    write_json(out / "records.json", records)
    flat = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()}
            for r in records]
    with open(out / "records.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    summary = summarize(records, by=("widths", "dropout", "method", "iteration"), fields=FIELDS)
    write_json(out / "summary.json", summary)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["widths"], r["dropout"], r["method"], r["iteration"]), []).append(r)
    rows = [[*map(str, key), mean_sd([r["kept_fraction"] for r in rs]),
             mean_sd([r["test_accuracy"] for r in rs], 4), mean_sd([r["agreement"] for r in rs], 4),
             mean_sd([r["test_accuracy_pruned"] for r in rs], 4),
             mean_sd([r["readout_cka"] for r in rs], 3)] for key, rs in groups.items()]
    text = table(["widths", "dropout", "method", "iter", "kept", "accuracy", "agreement",
                  "acc. before FT", "readout CKA"], rows)
    (out / "summary.txt").write_text(text + "\n")
    return summary


def plot(summary: list[dict[str, Any]], cfg: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = "-".join(map(str, cfg["base"]["widths"]))
    panels = [("test_accuracy", "test accuracy"), ("agreement", "agreement with unpruned"),
              ("readout_cka", "readout CKA to unpruned")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (field, label) in zip(axes, panels, strict=True):
        for method in cfg["methods"]:
            rows = [r for r in summary if r["widths"] == base and r["method"] == method
                    and r["dropout"] == cfg["base"]["dropout"]]
            ax.errorbar([r["kept_fraction_mean"] for r in rows], [r[f"{field}_mean"] for r in rows],
                        yerr=[r[f"{field}_sd"] for r in rows], marker="o", capsize=3, label=method)
        ax.set(xlabel="fraction of hidden units kept", ylabel=label, title=f"MLP {base}")
        ax.invert_xaxis()
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)

    last = cfg["iterations"]
    factors = list(cfg["variations"])
    fig, axes = plt.subplots(2, len(factors), figsize=(5 * len(factors), 7), squeeze=False)
    base_w, base_d = cfg["base"]["widths"], cfg["base"]["dropout"]
    for j, factor in enumerate(factors):
        for i, field in enumerate(("test_accuracy", "agreement")):
            ax = axes[i][j]
            for method in cfg["methods"]:
                xs, ys, es = [], [], []
                for v in cfg["variations"][factor]:
                    widths, dropout = base_w, base_d
                    if factor == "dropout":
                        dropout = v
                    elif factor == "width":
                        widths = (v,) * len(base_w)
                    else:
                        widths = (base_w[0],) * v
                    row = next(r for r in summary if r["widths"] == "-".join(map(str, widths))
                               and r["dropout"] == dropout and r["method"] == method
                               and r["iteration"] == last)
                    xs.append(v)
                    ys.append(row[f"{field}_mean"])
                    es.append(row[f"{field}_sd"])
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
            ax.set(xlabel=factor, ylabel=field.replace("_", " "),
                   title=f"after {last} iterations")
            if factor == "width":
                ax.set_xscale("log", base=2)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "variations.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny subset, under a minute")
    parser.add_argument("--out", default="results/cka_mlp_mnist", help="output folder")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--train-size", type=int, default=None, help="training images")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap on training and fine-tuning epochs")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--fraction", type=float, default=None)
    parser.add_argument("--factors", nargs="*", default=None,
                        help="variations to run (dropout width depth); none: base only")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        cfg["seeds"] = tuple(range(args.seeds))
    if args.train_size is not None:
        cfg["train_size"] = args.train_size
    if args.max_epochs is not None:
        for k in ("train", "fine_tune"):
            cfg[k] = {**cfg[k], "epochs": min(cfg[k]["epochs"], args.max_epochs)}
    for k in ("iterations", "fraction"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.factors is not None:
        cfg["variations"] = {k: v for k, v in cfg["variations"].items() if k in args.factors}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load(cfg, args.data_dir)
    nets = configurations(cfg)
    training, records = [], []
    for i, net in enumerate(nets.values()):
        print(f"[{i + 1}/{len(nets)}] MLP {net['widths']} dropout {net['dropout']}", flush=True)
        info, recs = run_network(net, data, cfg, args.progress)
        training.append(info)
        records += recs
    write_json(out / "training.json", training)
    summary = write_tables(records, out)
    plot(summary, cfg, out)
    meta = {"config": cfg, "data": data.name, "train_images": len(data.x_train),
            "test_images": len(data.x_test), "seconds": time.perf_counter() - t0}
    write_json(out / "config.json", meta)
    print((out / "summary.txt").read_text())
    print(f"wrote {out} in {meta['seconds']:.0f} s")
    return {"summary": summary, "training": training, "meta": meta}


if __name__ == "__main__":
    main()
