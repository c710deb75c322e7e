"""The ``jaxprune`` command: argument parsing only; the work is in library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxprune.search.result import write_json


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune import masks, models, report

    rows, out = [], {}
    for name in models.available():
        arch = models.architecture(name)
        layers = [{"name": la.name, "kind": la.kind, "width": la.width} for la in arch.layers]
        out[name] = {"parameters": masks.param_count(arch), "flops": masks.flops(arch),
                     "input_shape": list(arch.input_shape), "readout": arch.readout_layer,
                     "layers": layers}
        count = f"{masks.param_count(arch):,}"
        if models.is_residual(arch):  # --- backbones: batch norm folded into the convolutions
            unfolded = masks.param_count(arch) + models.residual.batch_norm_parameters(arch)
            out[name]["parameters_unfolded"] = unfolded
            count += f" ({unfolded:,} unfolded)"
        rows.append([name, count, "x".join(map(str, arch.input_shape)),
                     " ".join(f"{la.name}:{la.kind}[{la.width}]" for la in arch.layers)])
    print(report.table(["network", "parameters", "input", "prunable layers"], rows))
    return out


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import MainConfig, run_main

    overrides = {k: getattr(args, k) for k in ("model", "data", "data_dir", "seeds", "epochs",
                                                 "stimuli", "threshold", "out")
                 if getattr(args, k) is not None}
    overrides["progress"] = not args.no_progress
    if args.model is not None and args.model != "lenet5_mnist":
        overrides.setdefault("widths", None)  # the family's own widths
    config = MainConfig.quick(**overrides) if args.quick else MainConfig(**overrides)
    return run_main(config)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import train_seeds
    from jaxprune.train import TrainConfig

    config = TrainConfig(optimizer=args.optimizer, learning_rate=args.lr,
                         batch_size=args.batch_size, epochs=args.epochs, patience=args.patience,
                         val_fraction=args.val_fraction)
    _, _, summary = train_seeds(args.model, args.data, args.seeds, args.out, config,
                                data_dir=args.data_dir, progress=not args.no_progress)
    print(f"saved {args.seeds} seeds to {Path(args.out) / 'model'}")
    return summary


def _prune(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from jaxprune import report
    from jaxprune.pipeline import load_trained, stimuli
    from jaxprune.search.poz import DIRECTIONS, PoZConfig, poz_search_directions

    if args.model is not None or args.checkpoint is None:  # --- backbones: a registered network
        from jaxprune.pipeline import pretrained_stimuli

        arch, params, x = pretrained_stimuli(args.model, args.pretrained, args.weights,
                                             args.images, args.checkpoint, args.method,
                                             progress=not args.no_progress)
    else:
        arch, params, meta = load_trained(args.checkpoint)
        data_name = args.data or meta["data"]
        if args.method != "poz":
            return _prune_baseline(args, arch, params, meta, data_name)
        x = stimuli(data_name, args.stimuli, data_dir=args.data_dir)
    target = np.load(args.target_rsm) if args.target_rsm else None
    directions = DIRECTIONS if args.direction == "both" else (args.direction,)
    config = PoZConfig(threshold=args.threshold, metric=args.metric,
                       rsm_method=args.rsm_method, rank=args.rank,
                       layers=tuple(args.layers) if args.layers else None)
    search = poz_search_directions(arch, params, x, config, directions=directions,
                                   stacked=True, target_rsm=target, resume_path=args.resume,
                                   progress=not args.no_progress)
    print(report.search_table(search.results, search.jaccard))
    if args.figure:
        print(f"figure: {report.plot_traces(search.results, args.figure)}")
    return search.to_dict()


def _prune_baseline(args, arch, params, meta, data_name) -> dict[str, Any]:
    """``--method cka|l1|random``: remove ``--fraction`` of each layer's units, optionally
    ``--iterations`` times with ``--fine-tune-epochs`` of masked fine-tuning in between."""
    import dataclasses

    from jaxprune import report
    from jaxprune.search.iterative import prune_command
    from jaxprune.train import TrainConfig

    fine_tune = None
    if args.fine_tune_epochs > 0:
        trained_with = TrainConfig.from_dict(meta["train_config"])
        fine_tune = dataclasses.replace(trained_with, epochs=args.fine_tune_epochs,
                                        seeds=tuple(meta["seeds"]))
    out = prune_command(arch, params, data_name, args.method, args.fraction,
                        iterations=args.iterations, fine_tune_config=fine_tune,
                        layers=args.layers, stimuli=args.stimuli or 512, seeds=meta["seeds"],
                        data_dir=args.data_dir, progress=not args.no_progress)
    rows = [[r["iteration"], r["seed"], f"{r['kept_fraction']:.2f}",
             f"{r['test_accuracy_pruned']:.4f}", f"{r['test_accuracy']:.4f}",
             f"{r['agreement']:.4f}", f"{r['readout_cka']:.3f}"] for r in out["records"]]
    print(report.table(["iteration", "seed", "kept", "acc. pruned", "acc. fine-tuned",
                        "agreement", "readout CKA"], rows))
    return out


def _curve(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune import report
    from jaxprune.models import seed_slice
    from jaxprune.pipeline import load_trained, stimuli
    from jaxprune.search.curves import fraction_curve

    arch, params, meta = load_trained(args.checkpoint)
    x = stimuli(args.data or meta["data"], args.stimuli, data_dir=args.data_dir)
    one = seed_slice(params, args.seed)
    curve = fraction_curve(arch, one, x, args.layer, levels=args.levels, n_random=args.random)
    rows = [[f"{f:.1f}", k, f"{v:.3f}", f"{p:.2f}", f"{b:.2f}"] for f, k, v, p, b in zip(
        curve.levels, curve.removed, curve.fit, curve.max_kept_poz,
        curve.p_poz_beats_random or [float("nan")] * len(curve.levels), strict=True)]
    print(report.table(["fraction", "removed", "fit", "max kept PoZ", "P(PoZ > random)"], rows))
    if args.figure:
        print(f"figure: {report.plot_curve(curve, args.figure)}")
    return curve.to_dict()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxprune", description="Geometry-preserving pruning of neural networks in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", metavar="PATH", help="write machine-readable results here")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.set_defaults(func=func)
        return p

    add("models", _models, "list the registered networks, their layers and parameter counts")

    p = add("run", _run, "the main job: train seeds, PoZ-prune both directions, report")
    p.add_argument("--model")
    p.add_argument("--data", help="digits (embedded, default), mnist or cifar10")
    p.add_argument("--data-dir", help="folder with the raw data (default: $JAXPRUNE_DATA)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--stimuli", type=int, help="number of test images used as stimuli")
    p.add_argument("--threshold", type=float)
    p.add_argument("--out", help="output folder (default runs/main)")
    p.add_argument("--quick", action="store_true", help="a small, fast version")

    p = add("train", _train, "train many seeds of a network in one program")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--out", required=True, help="folder for checkpoints (resumes if present)")

    p = add("prune", _prune, "prune trained networks (PoZ search, or CKA/L1/random baselines)")
    p.add_argument("--checkpoint", help="OUT/model folder written by train")
    p.add_argument("--model", help="instead of --checkpoint: a registered network, with "
                   "--pretrained or --weights, searched on the images of --images")
    p.add_argument("--pretrained", action="store_true",
                   help="the weights its package ships (efficientnet_lite0: jaxprune[imagenet])")
    p.add_argument("--weights", help="a state dict (.pth/.npz) for --model")
    p.add_argument("--images", help="folder of stimulus images for --model, preprocessed as "
                   "the network expects")
    p.add_argument("--method", default="poz", choices=["poz", "cka", "l1", "random"])
    p.add_argument("--data", help="data set of the stimuli (default: the training data)")
    p.add_argument("--data-dir")
    p.add_argument("--stimuli", type=int, default=None)
    p.add_argument("--direction", default="both", choices=["both", "bottom-up", "top-down"])
    p.add_argument("--threshold", type=float, default=None, help="default 0.8")
    p.add_argument("--metric", default="r2", choices=["r2", "r", "spearman"])
    p.add_argument("--rsm-method", default="pearson")
    p.add_argument("--rank", default="once", choices=["once", "recompute"])
    p.add_argument("--layers", nargs="*", help="layers to prune (default: all)")
    p.add_argument("--target-rsm", help=".npy file with an external [n, n] target RSM")
    p.add_argument("--fraction", type=float, default=0.5,
                   help="cka/l1/random: share of each layer's remaining units removed")
    p.add_argument("--iterations", type=int, default=1, help="cka/l1/random: prune rounds")
    p.add_argument("--fine-tune-epochs", type=int, default=0,
                   help="cka/l1/random: masked fine-tuning epochs after each round (0: none)")
    p.add_argument("--resume", help="JSON file: finished seeds are kept and skipped on rerun")
    p.add_argument("--figure", help="PNG of the fit traces")

    p = add("curve", _curve, "PoZ fraction curve of one layer against random orders")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layer", required=True)
    p.add_argument("--data")
    p.add_argument("--data-dir")
    p.add_argument("--stimuli", type=int, default=None)
    p.add_argument("--levels", type=float, nargs="*",
                   default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    p.add_argument("--random", type=int, default=100, help="number of random orders")
    p.add_argument("--seed", type=int, default=0, help="which trained seed")
    p.add_argument("--figure", help="PNG of the curve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from jaxprune.checkpoint import CheckpointError

    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"jaxprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
