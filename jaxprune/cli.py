"""The ``jaxprune`` command: argument parsing only; the work is in library functions.

Every argument is checked when it is parsed (ranges, finiteness, choices) and every output
path before any work starts; a failure a user can cause ends with ``error: ...`` on stderr and
exit code 2, an interrupt with exit code 130, and neither leaves a partial output file.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxprune import __version__

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


# ----------------------------------------------------------------------------- argument types


def _number(kind: type, lo: float | None = None, hi: float | None = None, *,
            lo_open: bool = False, hi_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` in the interval ``lo..hi`` (open ends as given)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    where = f"in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        below = lo is not None and (value < lo or (lo_open and value == lo))
        above = hi is not None and (value > hi or (hi_open and value == hi))
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"{text} is not {where}")
        return value

    return parse


def _share(text: str) -> tuple[int, int]:
    """``"i/n"`` (share i of n, 0-based) for ``--seeds-slice``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not i/n (e.g. 0/4)") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= i < n")
    return i, n


_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


def _bytes(text: str) -> float:
    """A positive byte count: ``2e9``, ``512MiB``, ``4GB`` ..."""
    number = text.rstrip("kKmMgGiIbB")
    unit = text[len(number):].lower()
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count (e.g. 2e9, 512MiB, "
                                         "4GB)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: need a positive byte count")
    return value


def _fractions(text: str) -> list[float]:
    """``"0.9,0.8"`` (or ``"0.9 0.8"``) → ``[0.9, 0.8]`` for ``--levels``/``--keep``."""
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


#: The registered networks and data sets (tests check them against the registries; listed here
#: so that argument checks need not import JAX).
MODELS = ("alexnet", "efficientnet_lite0", "lenet5_cifar", "lenet5_mnist", "mlp", "resnet18",
          "resnet50", "vgg16")
DATASETS = ("cifar10", "digits", "mnist")
POZ_DIRECTIONS = ("bottom-up", "top-down", "alternate", "global", "global-alternate")
SHARDINGS = ("seeds", "candidates")

COUNT = _number(int, 1)
STIMULI = _number(int, 3)
THRESHOLD = _number(float, 0.0, 1.0, lo_open=True)
FRACTION = _number(float, 0.0, 1.0, hi_open=True)
RATE = _number(float, 0.0, None, lo_open=True)


# ----------------------------------------------------------------------------- subcommands


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune import masks, models, report

    rows, out = [], {}
    for name in models.available():
        arch = models.architecture(name)
        layers = [{"name": la.name, "kind": la.kind, "width": la.width} for la in arch.layers]
        out[name] = {"parameters": masks.param_count(arch), "flops": masks.flops(arch),
                     "input_shape": list(arch.input_shape), "readout": arch.readout_layer,
                     "layers": layers}
        widths = ",".join(str(la.width) for la in arch.layers)
        count = f"{masks.param_count(arch):,}"
        if models.is_residual(arch):  # batch norm folded into the convolutions
            unfolded = masks.param_count(arch) + models.residual.batch_norm_parameters(arch)
            out[name]["parameters_unfolded"] = unfolded
            count += f" / {unfolded:,}"
        rows.append([name, count, "x".join(map(str, arch.input_shape)),
                     f"{len(arch.layers)} ({arch.layers[0].name}..{arch.readout_layer})",
                     widths if len(widths) <= 24 else widths[:21] + "..."])
    print(report.table(["network", "parameters", "input", "prunable layers", "widths"], rows))
    print("residual families: parameters with batch norm folded / as in the state dict")
    return out


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import MainConfig, run_main

    fields = ("model", "data", "data_dir", "seeds", "epochs", "stimuli", "stimuli_split",
              "threshold", "out")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    overrides.update(class_means=args.class_means, progress=not args.no_progress,
                     fresh=args.fresh)
    if args.model is not None and args.model != "lenet5_mnist":
        overrides.setdefault("widths", None)  # the family's own widths
    config = MainConfig.quick(**overrides) if args.quick else MainConfig(**overrides)
    return run_main(config)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import fresh_start, train_seeds
    from jaxprune.train import TrainConfig

    config = TrainConfig(optimizer=args.optimizer, learning_rate=args.lr,
                         batch_size=args.batch_size, epochs=args.epochs, patience=args.patience,
                         val_fraction=args.val_fraction, sharding=args.shard)
    if args.fresh:
        fresh_start(Path(args.out))
    seeds = args.seeds
    if args.seeds_slice is not None:
        from jaxprune.sharding import seed_share

        seeds = [int(s) for s in seed_share(args.seeds, args.seeds_slice)]
    _, _, summary = train_seeds(args.model, args.data, seeds, args.out, config,
                                data_dir=args.data_dir, progress=not args.no_progress)
    print(f"saved {len(summary['seeds'])} seeds to {Path(args.out) / 'model'}")
    return summary


def _prune(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import prune_pretrained, prune_search

    if args.model is not None or args.checkpoint is None:  # a registered pretrained network
        if args.seeds_slice is not None:
            raise ValueError("--seeds-slice shares the seeds of a --checkpoint; a registered "
                             "--model is one network")
        return prune_pretrained(
            args.model, args.pretrained, args.weights, args.images, args.checkpoint,
            args.method, direction=args.direction, target_rsm=args.target_rsm,
            figure=args.figure, progress=not args.no_progress, threshold=args.threshold,
            metric=args.metric, rsm_method=args.rsm_method, rank=args.rank,
            layers=tuple(args.layers) if args.layers else None, sharding=args.shard,
            memory_budget=args.memory_budget, precision=args.precision)
    if args.method != "poz":
        return _prune_baseline(args)
    return prune_search(
        args.checkpoint, data=args.data, data_dir=args.data_dir, stimuli=args.stimuli,
        split=args.stimuli_split or "test", direction=args.direction,
        target_rsm=args.target_rsm, resume=args.resume, fresh=args.fresh, figure=args.figure,
        seed_batch=args.seed_batch, progress=not args.no_progress,
        threshold=args.threshold, metric=args.metric, rsm_method=args.rsm_method,
        rank=args.rank, class_means=args.class_means, sharding=args.shard,
        seeds_slice=args.seeds_slice, memory_budget=args.memory_budget,
        precision=args.precision,
        layers=tuple(args.layers) if args.layers else None)


def _prune_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """``--method cka|l1|random``: remove ``--fraction`` of each layer's units, optionally
    ``--iterations`` times with ``--fine-tune-epochs`` of masked fine-tuning in between."""
    from jaxprune.pipeline import prune_baseline

    if args.precision != "float32":
        raise ValueError("--precision applies to the PoZ search (--method poz) only")
    for flag in ("target_rsm", "resume", "figure", "seeds_slice", "memory_budget"):
        if getattr(args, flag):
            raise ValueError(f"--{flag.replace('_', '-')} applies to the PoZ search "
                             "(--method poz) only")
    if args.class_means:
        raise ValueError("--class-means applies to the PoZ search (--method poz); CKA, L1 and "
                         "random pruning compare per-stimulus representations")
    if args.shard == "seeds" or (args.shard and args.method != "cka"):
        raise ValueError(f"--shard {args.shard} does not apply to --method {args.method}: the "
                         "PoZ search takes seeds or candidates, CKA pruning candidates, L1 and "
                         "random pruning neither")
    options = {"compare": args.compare, "greedy": args.greedy} if args.method == "cka" else {}
    if args.shard:
        options["sharding"] = args.shard
    return prune_baseline(args.checkpoint, args.method, args.fraction, data=args.data,
                          data_dir=args.data_dir, iterations=args.iterations,
                          fine_tune_epochs=args.fine_tune_epochs, layers=args.layers,
                          stimuli=args.stimuli or 512, split=args.stimuli_split or "train",
                          progress=not args.no_progress, **options)


def _curve(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.pipeline import curve_command

    return curve_command(args.checkpoint, args.layer, data=args.data, data_dir=args.data_dir,
                         stimuli=args.stimuli, split=args.stimuli_split or "test",
                         levels=args.levels, keep=args.keep, n_random=args.random,
                         seed=args.seed, class_means=args.class_means, figure=args.figure,
                         sharding=args.shard)


def _circuits(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune import report
    from jaxprune.pipeline.circuits import CircuitJob, circuits_command
    from jaxprune.search.circuits import CircuitConfig, default_levels

    categories = None
    if args.categories != "all":
        try:
            categories = tuple(int(c) for c in args.categories.split(","))
        except ValueError:
            raise ValueError(f"--categories must be 'all' or integers like 0,3,7, got "
                             f"{args.categories!r}") from None
    circuit = CircuitConfig(threshold=args.threshold, levels=default_levels(args.levels),
                            conv_granularity=args.granularity)
    job = CircuitJob(categories, args.scoring_per_class, args.extraction_per_class,
                     args.eval_per_class, circuit)
    out = circuits_command(checkpoint=args.checkpoint, model=args.model, weights=args.weights,
                           data=args.data, data_dir=args.data_dir, images=args.images,
                           eval_images=args.eval_images, image_size=args.image_size, job=job,
                           seeds=args.seeds, figure=args.figure,
                           progress=not args.no_progress)
    rows = [[r["seed"], r["name"], f"{r['sparsity']:.4f}", f"{r['sparsity_extracted']:.4f}",
             f"{r['heldout_csa']:.3f}", f"{r['heldout_baseline_csa']:.3f}",
             f"{r['relative_csa']:.3f}"] for r in out["rows"]]
    print(report.table(["seed", "category", "sparsity", "sparsity (extracted)", "CSA held-out",
                        "CSA unpruned", "relative"], rows))
    print(f"mean sparsity {out['mean_sparsity']:.4f} ± {out['sd_sparsity']:.4f}, relative "
          f"CSA {out['mean_relative_csa']} ± {out['sd_relative_csa']}")
    return out


def _align(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.align import AlignConfig, AlignInputs, CVConfig, align_command

    inputs = AlignInputs(args.human, args.features, args.labels, args.model, args.pretrained,
                         args.weights, args.images, args.image_size, args.data_dir)
    config = AlignConfig(n_random=args.random, seed=args.seed,
                         cv=CVConfig(folds=args.folds, repeats=args.repeats, seed=args.seed))
    search = () if args.search == "none" else \
        (("bottom-up", "top-down") if args.search == "both" else (args.search,))
    return align_command(inputs, config, search=search, search_layers=args.search_layers,
                         figure=args.figure, progress=not args.no_progress)


def _visualize(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.featurevis.engine import RenderConfig
    from jaxprune.featurevis.job import VisualizeJob, visualize

    render = RenderConfig(steps=args.steps, learning_rate=args.lr, size=args.size,
                          images_per_unit=args.images_per_unit, batch=args.batch,
                          seed=args.seed, diversity=args.diversity)
    job = VisualizeJob(args.model, args.layer, args.units, args.figure, args.pretrained,
                       args.weights, args.images, args.search, args.search_direction,
                       args.top_k, render)
    out = visualize(job, progress=not args.no_progress)
    for row in out["units"]:
        ratio = row.get("activation_ratio")
        print(f"{out['layer']} {row['unit']:>5}  PoZ {row.get('poz', float('nan')):.3f}  "
              f"{row.get('status', '-'):>6}  activation {row['final_activation']:.3f}  "
              f"ratio {'-' if ratio is None else f'{ratio:.1f}'}")
    print(f"wrote {out['figure']} and {out['images_npy']} ({out['wall_time_s']:.0f} s)")
    return out


# ----------------------------------------------------------------------------- the parser

EXAMPLES = {
    "bench": "examples:\n  jaxprune bench --checkpoint runs/c10/model --stimuli 5000 "
             "--stimuli-split train --json bench.json\n"
             "  jaxprune bench --model vgg16 --stimuli 120 --direction top-down "
             "--no-sequential --json vgg16.json",
    "align": "examples:\n  jaxprune align --features emb.npy --human human.npy --labels names.txt\n"
             "  jaxprune align --model efficientnet_lite0 --pretrained --images "
             "../shared/data/peterson/images/animals --human animals --figure animals.png\n"
             "  jaxprune align --model vgg16 --weights vgg16.pth --images DIR "
             "--human peterson_similarity.npz:animals",
    "models": "example:\n  jaxprune models --json models.json",
    "report": "examples:\n  jaxprune report docs/results/aim1_cifar10.json --out report/\n"
              "  jaxprune report share0.json share1.json --out merged/ --name sweep\n"
              "  jaxprune report runs/c10/search.json --out report/",
    "run": "examples:\n  jaxprune run\n  jaxprune run --quick --out runs/quick\n"
           "  jaxprune run --threshold 0.9 --fresh",
    "train": "example:\n  jaxprune train --model lenet5_cifar --data cifar10 --seeds 20 "
             "--epochs 30 --patience 3 --out runs/c10",
    "prune": "examples:\n  jaxprune prune --model efficientnet_lite0 --pretrained --images "
             "../shared/data/peterson/images/animals --direction both\n"
             "  jaxprune prune --checkpoint runs/c10/model --stimuli 5000 "
             "--stimuli-split train --resume runs/c10/poz.json --json poz.json\n"
             "  jaxprune prune --checkpoint runs/c10/model --target-rsm human.npy\n"
             "  jaxprune prune --checkpoint runs/c10/model --method cka --fraction 0.4 "
             "--iterations 3 --fine-tune-epochs 10",
    "circuits": "example:\n  jaxprune circuits --checkpoint runs/c10/model --categories all "
                "--threshold 0.9 --scoring-per-class 4 --extraction-per-class 20 "
                "--eval-per-class 30 --json circuits.json --figure overlap.png",
    "visualize": "examples:\n  jaxprune visualize --model efficientnet_lite0 --pretrained "
                 "--layer head --units lowest-poz:8,highest-poz:8 --images "
                 "../shared/data/peterson/images/animals --search animals.json --out grid.png\n"
                 "  jaxprune visualize --model efficientnet_lite0 --pretrained --layer block15 "
                 "--units 3,17,42 --steps 128 --size 128 --out b15.png",
    "curve": "example:\n  jaxprune curve --checkpoint runs/c10/model --layer fc2 --stimuli 10000 "
             "--class-means --keep 0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1 --figure curve.png",
}


def _stimuli_options(p: argparse.ArgumentParser, split_default: str) -> None:
    p.add_argument("--stimuli", type=STIMULI, metavar="N",
                   help="the first N images of --stimuli-split (class-interleaved order; "
                        "default: all of them)")
    p.add_argument("--stimuli-split", choices=["train", "test"],
                   help=f"the split the stimuli come from (default: {split_default})")
    p.add_argument("--class-means", action="store_true",
                   help="average each class's readout features before the RSM (C×C RSMs, as "
                        "the reference code and the fraction-curve paper)")


def _data_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", required=required, choices=DATASETS,
                   help="data set" + ("" if required else " (default: the checkpoint's training "
                                      "data)"))
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding <data>/ raw files (default: $JAXPRUNE_DATA, then "
                        "../shared/data)")
    p.add_argument("--data-source", choices=["auto", "local", "tfds"],
                   help="auto: local files, else tensorflow-datasets; local: files only; "
                        "tfds: tensorflow-datasets only (downloading needs jaxprune[tfds]); "
                        "unset: $JAXPRUNE_DATA_SOURCE, else auto")


def _shard_option(p: argparse.ArgumentParser, choices: list[str], which: str = "") -> None:
    p.add_argument("--shard", choices=choices, default=None,
                   help="lay the seed axis, or each chunk's candidate removals, over all local "
                        "devices (jax.sharding; the same results as on one device)"
                        + (f"; {which}" if which else ""))


def _precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="float32", choices=["float32", "tf32", "bfloat16"],
                   help="poz: the network's matmuls and convolutions (tf32/bfloat16: faster on "
                        "accelerators that have them, decisions may differ; the CPU computes "
                        "all in float32)")


def _budget_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-budget", type=_bytes, metavar="BYTES", default=None,
                   help="poz: bytes a chunk of candidates may hold (e.g. 8GiB); sets each "
                        "layer's chunk instead of the default operation count (never changes "
                        "the result)")


def _slice_option(p: argparse.ArgumentParser, which: str) -> None:
    p.add_argument("--seeds-slice", type=_share, metavar="I/N", default=None,
                   help=f"only share I of N ({which}; 0-based, contiguous): one task of a job "
                        "array; `jaxprune report` merges the shares' results")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="jax.distributed: the coordinator; each of --num-processes processes "
                        "runs its share of the seeds (train: into OUT/processI-of-N; --json: "
                        "NAME.processI-of-N.json)")
    p.add_argument("--num-processes", type=COUNT, help="jax.distributed: processes in all")
    p.add_argument("--process-id", type=_number(int, 0), help="jax.distributed: this one, 0..N-1")
    p.add_argument("--distributed", action="store_true",
                   help="jax.distributed from the cluster's environment (SLURM, Open MPI ...)")


def _add_run(sub) -> None:
    p = sub("run", _run, "the main job: train seeds, PoZ-prune both directions, report")
    p.add_argument("--model", choices=MODELS,
                   help="network (default: lenet5_mnist narrowed to 16-16-128-64)")
    p.add_argument("--data", choices=DATASETS,
                   help="data set (default: digits, embedded in scikit-learn)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the raw data")
    p.add_argument("--seeds", type=COUNT, help="networks trained and searched (default 3)")
    p.add_argument("--epochs", type=COUNT, help="most training epochs (default 20)")
    _stimuli_options(p, "test")
    p.add_argument("--threshold", type=THRESHOLD, help="R² to keep, in (0, 1] (default 0.8)")
    p.add_argument("--out", help="output folder (default runs/main); rerunning resumes")
    p.add_argument("--quick", action="store_true", help="a small, fast version")
    p.add_argument("--fresh", action="store_true",
                   help="discard what an earlier run left in --out and start afresh")


def _add_train(sub) -> None:
    p = sub("train", _train, "train many seeds of a network in one program")
    p.add_argument("--model", required=True, choices=MODELS, help="network")
    _data_options(p, required=True)
    p.add_argument("--seeds", type=COUNT, default=1, help="networks trained in one program")
    p.add_argument("--epochs", type=COUNT, default=10, help="most epochs")
    p.add_argument("--batch-size", type=COUNT, default=64, help="minibatch size")
    p.add_argument("--lr", type=RATE, default=1e-3, help="learning rate (finite, > 0)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="optimizer")
    p.add_argument("--patience", type=COUNT, default=None,
                   help="early stopping after this many epochs without improvement (none)")
    p.add_argument("--val-fraction", type=FRACTION, default=0.1,
                   help="share of each class held out per seed for validation, in [0, 1)")
    p.add_argument("--out", required=True, help="folder for checkpoints (a rerun resumes)")
    p.add_argument("--fresh", action="store_true",
                   help="discard the checkpoints in --out and start afresh")
    _shard_option(p, ["seeds"])
    _slice_option(p, "of --seeds")


def _network_options(p: argparse.ArgumentParser, checkpoint: str, model: str,
                     images: str) -> None:
    """``--checkpoint``, or ``--model`` with ``--pretrained``/``--weights`` and ``--images``."""
    p.add_argument("--checkpoint", help=checkpoint)
    p.add_argument("--model", choices=MODELS, help=f"instead of --checkpoint: {model}")
    p.add_argument("--pretrained", action="store_true",
                   help="the weights its package ships (efficientnet_lite0: jaxprune[imagenet])")
    p.add_argument("--weights", metavar="FILE", help="a state dict (.pth/.npz) for --model")
    p.add_argument("--images", metavar="DIR", help=images)


def _add_prune(sub) -> None:
    p = sub("prune", _prune, "prune trained networks (PoZ search, or CKA/L1/random baselines)")
    _network_options(p, "the OUT/model folder written by train",
                     "a registered network, with --pretrained or --weights, searched on the "
                     "images of --images",
                     "folder of stimulus images for --model, preprocessed as the network expects")
    p.add_argument("--method", default="poz", choices=["poz", "cka", "l1", "random"],
                   help="pruning method")
    _data_options(p)
    _stimuli_options(p, "test for poz, train for cka/l1/random (their records use test images)")
    p.add_argument("--direction", default="both", choices=["both", *POZ_DIRECTIONS],
                   help="poz: layer order (both: bottom-up and top-down, the papers'; "
                        "alternate: top-down and bottom-up passes until one removes nothing; "
                        "global: one PoZ ranking over all layers' units; global-alternate: "
                        "global, then alternate passes)")
    p.add_argument("--threshold", type=THRESHOLD, default=None,
                   help="poz: fit to keep, in (0, 1] (default: 0.8 against the unpruned "
                        "readout; with --target-rsm the unpruned network's own fit)")
    p.add_argument("--metric", default="r2", choices=["r2", "r", "spearman"],
                   help="poz: fit between the upper triangles of the RSMs")
    p.add_argument("--rsm-method", default="pearson",
                   choices=["pearson", "pearson_sq", "spearman", "cosine", "euclidean"],
                   help="poz: RSM entries")
    p.add_argument("--rank", default="once", choices=["once", "recompute"],
                   help="poz: PoZ ranking on the unpruned network, or re-ranked per layer")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layers to prune (default: all)")
    p.add_argument("--target-rsm", metavar="FILE",
                   help="poz: external [n, n] target (.npy, .npz or PATH.npz:KEY, .csv/.txt)")
    p.add_argument("--resume", metavar="FILE",
                   help="poz: JSON of finished seeds, written as they finish; a rerun skips "
                        "them (refused if written by another run)")
    p.add_argument("--fresh", action="store_true", help="poz: discard --resume and start afresh")
    p.add_argument("--seed-batch", type=COUNT, default=1,
                   help="poz: seeds searched in one program (more pays on accelerators; the "
                        "resume file is written after each batch)")
    p.add_argument("--figure", metavar="PNG", help="poz: figure of the fit traces")
    p.add_argument("--fraction", type=FRACTION, default=0.5,
                   help="cka/l1/random: share of each layer's remaining units removed, in [0, 1)")
    p.add_argument("--iterations", type=COUNT, default=1, help="cka/l1/random: prune rounds")
    p.add_argument("--fine-tune-epochs", type=_number(int, 0), default=0,
                   help="cka/l1/random: masked fine-tuning epochs after each round (0: none)")
    p.add_argument("--compare", default="layer", choices=["layer", "readout", "later", "preact"],
                   help="cka: what a removal is judged on (preact: the layer's pre-activation, "
                        "the reference code's choice)")
    p.add_argument("--greedy", default="recompute", choices=["recompute", "once"],
                   help="cka: re-score after every removal, or rank once per layer (the "
                        "reference code's loop)")
    _shard_option(p, list(SHARDINGS), "poz: seeds or candidates; cka: candidates")
    _budget_option(p)
    _precision_option(p)
    _slice_option(p, "poz: of the checkpoint's seeds")


def _add_curve(sub) -> None:
    p = sub("curve", _curve, "PoZ fraction curves of one layer against random orders")
    p.add_argument("--checkpoint", required=True, help="the OUT/model folder written by train")
    p.add_argument("--layer", required=True, help="the layer whose units are removed")
    _data_options(p)
    _stimuli_options(p, "test")
    levels = p.add_mutually_exclusive_group()
    levels.add_argument("--levels", type=_fractions, metavar="F,F,...",
                        help="fractions of the layer's units REMOVED (floor(f·width)), in "
                             "[0, 1) (default 0.1,0.2,...,0.9)")
    levels.add_argument("--keep", type=_fractions, metavar="P,P,...",
                        help="fractions KEPT instead, in (0, 1] (int(p·width) units kept, as "
                             "the reference code), e.g. 0.9,0.8,...,0.1")
    p.add_argument("--random", type=_number(int, 0), default=100,
                   help="random orders per seed for the control (0: none)")
    p.add_argument("--seed", type=_number(int, 0), default=None,
                   help="one trained seed (default: every seed in one call, mean ± sd)")
    p.add_argument("--figure", metavar="PNG", help="figure of the curves")
    _shard_option(p, ["seeds"])


def _add_circuits(sub) -> None:
    p = sub("circuits", _circuits,
            "category circuits: sparse sub-networks that still compute each output unit")
    p.add_argument("--checkpoint", help="the OUT/model folder written by train (all its seeds)")
    p.add_argument("--weights", metavar="FILE",
                   help="torchvision-layout .pth/.npz instead of a checkpoint")
    p.add_argument("--model", choices=MODELS, help="with --weights: the family")
    p.add_argument("--images", metavar="DIR",
                   help="class-subfolder image folder for scoring and extraction (folders "
                        "named 0..999 are those output units)")
    p.add_argument("--eval-images", metavar="DIR", help="image folder for the held-out "
                   "evaluation")
    p.add_argument("--image-size", type=COUNT, default=224, help="with --images: input size")
    _data_options(p)
    p.add_argument("--categories", default="all", help="'all' or a list like 0,3,7")
    p.add_argument("--threshold", type=THRESHOLD, default=0.9,
                   help="keep CSA >= threshold x the unpruned network's, in (0, 1]")
    p.add_argument("--scoring-per-class", type=COUNT, default=4,
                   help="images per category for the scores")
    p.add_argument("--extraction-per-class", type=COUNT, default=20,
                   help="images per category for choosing the sparsity")
    p.add_argument("--eval-per-class", type=COUNT, default=30,
                   help="held-out images per category for the evaluation")
    p.add_argument("--levels", type=COUNT, default=20,
                   help="sparsity levels 1 - 0.7^k, k = 1..LEVELS")
    p.add_argument("--granularity", default="kernel", choices=["kernel", "weight"],
                   help="conv items: kernels (input x output channel) or weights")
    p.add_argument("--seeds", type=_number(int, 0), nargs="+", metavar="SEED",
                   help="seeds of the checkpoint (default: all)")
    p.add_argument("--figure", metavar="PNG",
                   help="overlap histogram and category x category map")


def _add_align(sub) -> None:
    p = sub("align", _align, "align a readout to human similarity judgments: PoZ curve, "
            "cross-validated PoZ and supervised selection")
    p.add_argument("--human", required=True, metavar="RSM",
                   help="human similarity [n, n]: a shared set name (animals, fruits, ...), "
                        ".npy, .npz or PATH.npz:KEY (names from KEY_fnames), .csv/.txt")
    p.add_argument("--features", metavar="F", help="a feature matrix [n, d] (.npy/.npz/.csv)")
    p.add_argument("--labels", metavar="FILE",
                   help="with --features: the rows' names (one per line, or .npy), matched "
                        "to the matrix's names")
    p.add_argument("--model", choices=MODELS, help="instead of --features: a network whose "
                   "readout features of --images are aligned")
    p.add_argument("--pretrained", action="store_true", help="the weights its package ships")
    p.add_argument("--weights", metavar="FILE",
                   help="a torchvision-layout state dict (.pth/.npz); widths read from it")
    p.add_argument("--images", metavar="DIR", help="the stimulus images, named as the matrix")
    p.add_argument("--image-size", type=_number(int, 16), metavar="PX",
                   help="input size (default: the network's, 224)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding peterson/ (set names)")
    p.add_argument("--folds", type=_number(int, 2), default=5, help="cross-validation folds")
    p.add_argument("--repeats", type=COUNT, default=8, help="random fold assignments")
    p.add_argument("--random", type=_number(int, 0), default=1000,
                   help="random removal orders for the control (0: none)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seed of folds and orders")
    p.add_argument("--search", default="none", choices=["none", "both", "bottom-up", "top-down"],
                   help="with --model: also the whole-network PoZ search against the human RSM")
    p.add_argument("--search-layers", nargs="+", metavar="LAYER",
                   help="unit groups the search prunes (default: all)")
    p.add_argument("--figure", metavar="PNG", help="figure of the curve and the CV fits")


def _add_visualize(sub) -> None:
    p = sub("visualize", _visualize,
            "feature visualisation: images that maximise units, beside the images that do most")
    p.add_argument("--model", required=True, choices=MODELS, help="a registered network")
    p.add_argument("--pretrained", action="store_true", help="the weights its package ships")
    p.add_argument("--weights", metavar="FILE", help="a state dict (.pth/.npz) instead")
    p.add_argument("--layer", required=True,
                   help="a prunable layer / unit group, or 'logits' (a block name such as "
                        "'head' stands for its one group)")
    p.add_argument("--units", required=True,
                   help="indices (3,17,42), a range (0-9), 'all', or lowest-poz:K, "
                        "highest-poz:K, never-fire:K (need --images), kept:K, pruned:K (need "
                        "--search), comma-separated")
    p.add_argument("--images", metavar="DIR",
                   help="image folder: PoZ, mean activations and the top-k images per unit")
    p.add_argument("--search", metavar="FILE",
                   help="a search result JSON (jaxprune prune --json): kept/pruned status")
    p.add_argument("--search-direction", choices=["bottom-up", "top-down"],
                   help="which direction of --search (needed when it holds both)")
    p.add_argument("--out", dest="figure", required=True, metavar="PNG",
                   help="the grid figure; the raw images go to the same name with .npy")
    p.add_argument("--steps", type=COUNT, default=256, help="optimisation steps")
    p.add_argument("--lr", type=RATE, default=0.05, help="Adam learning rate")
    p.add_argument("--size", type=_number(int, 4), default=None,
                   help="side of the images (even; default: the network's input side)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="random seed")
    p.add_argument("--batch", type=COUNT, default=8,
                   help="units optimised together per chunk (memory grows with it)")
    p.add_argument("--images-per-unit", type=COUNT, default=1, help="images per unit")
    p.add_argument("--diversity", type=_number(float, 0.0), default=0.0,
                   help="weight of the diversity term (with --images-per-unit > 1)")
    p.add_argument("--top-k", type=COUNT, default=4, help="dataset images shown per unit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxprune", description="Geometry-preserving pruning of neural networks in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxprune {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def sub(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help_text, description=help_text,
                                  epilog=EXAMPLES[name],
                                  formatter_class=_HelpFormatter)
        p.add_argument("--json", metavar="PATH", help="write machine-readable results here")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.add_argument("--no-compile-cache", action="store_true",
                       help="do not keep compiled programs in $JAXPRUNE_CACHE/xla (also: "
                            "JAXPRUNE_NO_COMPILE_CACHE=1)")
        p.set_defaults(func=func)
        return p

    sub("models", _models, "list the registered networks, their layers and parameter counts")
    for add in (_add_run, _add_train, _add_prune, _add_curve, _add_circuits, _add_align,
                _add_visualize, _add_report, _add_bench):
        add(sub)
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each help text; the epilog's examples keep their lines."""


# ----------------------------------------------------------------------------- entry point


def check_outputs(args: argparse.Namespace) -> None:
    """Every file the command will write can be written: checked before any work."""
    from jaxprune.outputs import check_folder_writable, check_writable

    for flag in ("json", "figure", "resume"):
        check_writable(getattr(args, flag, None), f"--{flag}")
    if getattr(args, "out", None):
        if Path(args.out).is_file():
            raise NotADirectoryError(f"--out {args.out} is a file; give a folder")
        check_folder_writable(args.out, "--out")


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from jaxprune.bench import bench_search, bench_table, network_and_stimuli
    from jaxprune.search.poz import PoZConfig, check_inputs

    if args.direction == "both":
        directions = ("bottom-up", "top-down")
    else:
        directions = (args.direction,)
    config = PoZConfig(threshold=args.threshold, sharding=args.shard,
                       memory_budget=args.memory_budget, precision=args.precision)
    arch, params, x, inputs = network_and_stimuli(
        checkpoint=args.checkpoint, model=args.model, pretrained=args.pretrained,
        weights=args.weights, images=args.images, data=args.data, data_dir=args.data_dir,
        stimuli=args.stimuli, split=args.stimuli_split or "test",
        progress=not args.no_progress)
    for d in directions:
        check_inputs(arch, x, dataclasses.replace(config, direction=d))
    out = bench_search(arch, params, x, directions, config, sequential=not args.no_sequential,
                       inputs=inputs, progress=not args.no_progress, stacked=True,
                       seed_batch=args.seed_batch)
    print(bench_table(out))
    print(f"{arch.family}, {x.shape[0]} stimuli, devices: {', '.join(out['devices'])}")
    return out


def _add_bench(sub) -> None:
    p = sub("bench", _bench, "time the vectorised PoZ search against its sequential twin on "
                             "your own network and machine")
    _network_options(p, "the OUT/model folder written by train (every seed)",
                     "a registered network (randomly initialised unless --pretrained or "
                     "--weights)",
                     "--model with weights: stimulus images (default: standard-normal stimuli, "
                     "which the cost does not depend on)")
    _data_options(p)
    p.add_argument("--stimuli", type=STIMULI, default=120, help="stimuli searched on")
    p.add_argument("--stimuli-split", choices=["train", "test"], default=None,
                   help="--checkpoint: the split the stimuli come from (default test)")
    p.add_argument("--direction", default="both", choices=["both", *POZ_DIRECTIONS],
                   help="search direction(s) timed (both: bottom-up and top-down)")
    p.add_argument("--threshold", type=THRESHOLD, default=None,
                   help="fit to keep, in (0, 1] (default 0.8 against the unpruned readout)")
    p.add_argument("--seed-batch", type=COUNT, default=8,
                   help="seeds of a checkpoint searched in one program")
    p.add_argument("--no-sequential", action="store_true",
                   help="skip the sequential twin (hours on large networks)")
    _shard_option(p, list(SHARDINGS))
    _budget_option(p)
    _precision_option(p)


def _report(args: argparse.Namespace) -> dict[str, Any]:
    from jaxprune.experiment_reports import write_report

    payload = write_report(args.results, args.out, args.name)
    print(f"wrote {Path(args.out) / args.name}.md and .png (sweeps: and .json)")
    return {"summary": payload["summary"]}


def _add_report(sub) -> None:
    p = sub("report", _report, "tables and figures (mean ± sd over seeds) of sweep results")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="JSON files of one sweep (experiments/aim1.py results, jaxprune "
                        "prune --json or its --resume file; several shares are merged), or "
                        "one result of experiments/curves_cifar10.py or redundant.py")
    p.add_argument("--out", required=True, help="folder for NAME.md, NAME.png, NAME.json")
    p.add_argument("--name", default="report", help="base name of the files written")


def _setup(args: argparse.Namespace) -> None:
    """Before any JAX work: the CPU training flag (``train`` only), ``jax.distributed`` (each
    process then owns a share of the seeds and writes its own files), the compilation cache
    and the data source the command uses."""
    from jaxprune.data.datasets import set_default_source

    if args.command == "train":  # training only: it slows searches (jaxprune.CPU_CONV_FLAG)
        from jaxprune import add_cpu_conv_flag

        add_cpu_conv_flag()
    if hasattr(args, "coordinator"):
        _join_processes(args)
    set_default_source(getattr(args, "data_source", None))
    if not args.no_compile_cache:
        from jaxprune.compilation import enable_compile_cache

        enable_compile_cache()


def _join_processes(args: argparse.Namespace) -> None:
    """``--coordinator``/``--distributed``: initialise ``jax.distributed``; with several
    processes, this one's share of the seeds becomes ``--seeds-slice`` and its outputs get
    per-process names (:func:`jaxprune.distributed.process_path`)."""
    from jaxprune import distributed

    if not distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                  args.distributed):
        return
    share = distributed.process_share()
    if share is None:
        return
    if args.seeds_slice is not None:
        raise ValueError("--seeds-slice with several processes: each process's share comes "
                         "from its process id; give one or the other")
    args.seeds_slice = share
    if args.json:
        args.json = str(distributed.process_path(args.json, share))
    if args.command == "train":
        args.out = str(Path(args.out) / f"process{share[0]}-of-{share[1]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (argparse's own errors: 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a bad argument (already printed)
        return int(exit_.code or 0)
    try:
        check_outputs(args)
        _setup(args)
        result = args.func(args)
        if args.json:
            from jaxprune.search.result import write_json

            write_json(args.json, {"command": _invocation(args), **result})
            print(f"wrote {args.json}")
    except (ValueError, OSError) as e:  # bad input, files (CheckpointError is a ValueError)
        print(f"jaxprune {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"jaxprune {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _invocation(args: argparse.Namespace) -> dict[str, Any]:
    """What the JSON was produced by: the subcommand, every option and the version."""
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    return {"subcommand": args.command, "options": options, "jaxprune": __version__}


def entry() -> None:
    """The ``jaxprune`` console script: :func:`main` in a process whose large buffers sit on
    transparent huge pages (:func:`jaxprune.malloc.relaunch_with_huge_pages`)."""
    from jaxprune.malloc import relaunch_with_huge_pages

    relaunch_with_huge_pages()
    sys.exit(main())


if __name__ == "__main__":
    entry()
