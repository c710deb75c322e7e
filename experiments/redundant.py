"""What the removed features still carry (issue 13, experiment 3), with
:mod:`jaxprune.search.redundant`, for LeNet-5 networks on CIFAR-10 and MNIST.

For every trained seed, on the penultimate layer (the readout, post-ReLU) over the 10,000 test
images of its data set, with class-averaged (10×10) Pearson RSMs and R² of the upper triangles:

(a) **Removable with no measurable change.** Units removed cumulatively in PoZ order (highest
    first); k* = the largest k such that every step up to k keeps the fit to the unpruned RSM
    ≥ 1 − ε. **ε** is the RSM's own stimulus-resampling noise, per seed: 1 − the mean fit
    between the class-mean RSMs of the unpruned network on two independent class-stratified
    bootstrap resamples of the stimuli (100 pairs). A pruned RSM closer to the unpruned one
    than two equally large stimulus samples are to each other is no measurable change.
    ``--epsilon E`` fixes ε instead.
(b) **What the removed units explain on their own.** Ridge regression (closed form, penalty
    λ = α·tr(XᵀX)/k, α in 10⁻⁴ … 10² chosen by leave-one-out on each training part) from the
    k* removed units' activations to the whole unpruned embedding, R² on held-out images
    (5 folds; variance-weighted: the share of the held-out total variance explained), and to
    the kept units alone; also at each PoZ level 10 … 90 % removed. Mean ± sd (ddof=1) over
    seeds.

    python experiments/redundant.py --quick          # tiny networks, under a minute
    python experiments/redundant.py                  # runs/aim1/{cifar10,mnist}/seeds_*/model
    python experiments/redundant.py --checkpoints runs/a/model --datasets cifar10

Full mode resumes per seed from ``<out>/redundant.json`` (refused when written with other
options or stimuli; ``--fresh`` starts afresh). Writes ``redundant.{json,md,png}`` into
``--out`` (full: ``docs/results``; quick: a new temporary folder; quick networks are trained
into ``<out>/checkpoints`` and reused from there). The CIFAR-10 copy in ../shared/data is JPEG
q75 (lossy), see its README.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.experiment_reports import redundant_summary, write_redundant_report

ROOT = Path(__file__).resolve().parents[1]
NAME = "redundant"
DEFAULT_CHECKPOINTS = {"cifar10": "runs/aim1/cifar10/seeds_*/model",
                       "mnist": "runs/aim1/mnist/seeds_*/model"}
DATA_NOTES = {"cifar10": "CIFAR-10: the JPEG q75 (lossy) copy in ../shared/data",
              "mnist": "MNIST (original IDX files)",
              "digits": "scikit-learn's 8×8 digits (embedded)"}
CRITERION = ("k* = the largest k such that removing the first 1..k units in PoZ order keeps the "
             "fit to the unpruned RSM >= 1 - eps at every step; eps = 1 - mean fit between the "
             "unpruned class-mean RSMs of two independent class-stratified bootstrap resamples "
             "of the stimuli (n_boot pairs), per seed, unless fixed_epsilon is set")


@dataclass(frozen=True)
class Options:
    """What a run computes (every field enters the results file's identity)."""

    stimuli: int | None = None  # None: the whole test split
    split: str = "test"
    class_means: bool = True
    epsilon: float | None = None  # None: resampled per seed
    n_boot: int = 100
    folds: int = 5
    alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    levels: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    seed: int = 0
    metric: str = "r2"
    rsm_method: str = "pearson"
    quick: bool = False
    criterion: str = field(default=CRITERION)


#: quick mode: the tiny networks of ``jaxprune.pipeline.seeds.QUICK_NETWORKS``, 200 test images
QUICK = Options(stimuli=200, n_boot=30, quick=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    from jaxprune.pipeline.seeds import experiment_parser

    p = experiment_parser(__doc__.split("\n\n")[0], "checkpoint folders (default: "
                          + " ".join(DEFAULT_CHECKPOINTS.values()) + ", for --datasets)")
    p.add_argument("--datasets", nargs="+", default=["cifar10", "mnist"],
                   choices=sorted(DATA_NOTES), help="data sets to run (default cifar10 mnist)")
    p.add_argument("--stimuli", type=int, help="first N test images (default: all)")
    p.add_argument("--epsilon", type=float, help="fixed tolerance (default: resampled)")
    p.add_argument("--folds", type=int, help="cross-validation folds (default 5)")
    return p.parse_args(argv)


def options_of(args: argparse.Namespace) -> Options:
    from jaxprune.pipeline.seeds import options_from

    return options_from(args, QUICK, Options(), ("stimuli", "epsilon", "folds"))


def checkpoints_of(args, out: Path) -> list[Path]:
    """Full: ``--checkpoints`` or the default globs of ``--datasets``; quick: the tiny
    networks in ``out/checkpoints/<data>`` (trained there when missing)."""
    from jaxprune.pipeline.seeds import quick_checkpoints, resolve_checkpoints

    if args.quick:
        return [p for d in args.datasets
                for p in quick_checkpoints(d, out / "checkpoints", args.data_dir)]
    patterns = [DEFAULT_CHECKPOINTS[d] for d in args.datasets if d in DEFAULT_CHECKPOINTS]
    return resolve_checkpoints(args.checkpoints, patterns, ROOT)


@dataclass
class Job:
    """Everything checked and loaded before the long work."""

    options: Options
    out: Path
    infos: list
    refs: list
    stimuli: dict[str, tuple[np.ndarray, np.ndarray]]
    data: dict[str, dict[str, Any]]
    store: Any

    def data_of(self, ref) -> str:
        return next(i.metadata["data"] for i in self.infos if i.path == ref.checkpoint)


def check_options(o: Options) -> None:
    """Refuse option values the computation cannot take (``InputError``)."""
    from jaxprune.pipeline.seeds import InputError

    if o.epsilon is not None and not 0.0 <= o.epsilon < 1.0:
        raise InputError(f"--epsilon {o.epsilon}: must lie in [0, 1) (a tolerance on R²)")
    if o.folds < 2:
        raise InputError(f"--folds {o.folds}: need at least 2 folds")
    if o.stimuli is not None and o.stimuli < 2 * o.folds:
        raise InputError(f"--stimuli {o.stimuli}: need at least 2 per fold ({2 * o.folds})")


def load_stimuli(name: str, o: Options, data_dir: str | None, arch) -> tuple:
    """``(x, labels, record)``: the first ``o.stimuli`` test images of ``name``, checked."""
    from jaxprune.data import load_dataset
    from jaxprune.pipeline.seeds import InputError
    from jaxprune.provenance import fingerprint
    from jaxprune.search.fit import class_average

    ds = load_dataset(name, o.split, data_dir, download=False)
    if o.stimuli is not None:
        if o.stimuli > len(ds):
            raise InputError(f"--stimuli {o.stimuli}: {name} has {len(ds)} {o.split} images")
        ds = ds.take(o.stimuli)
    if ds.image_shape != tuple(arch.input_shape):
        raise InputError(f"{name} images are {ds.image_shape}, but its networks take "
                         f"{arch.input_shape}; pass networks trained on {name}")
    class_average(ds.labels)  # every class among the stimuli
    x = ds.float_images()
    record = {"name": name, "split": o.split, "stimuli": len(ds), "source": ds.source,
              "stimuli_hash": fingerprint(x, ds.labels), "note": DATA_NOTES.get(name, name)}
    return x, ds.labels, record


def prepare(args: argparse.Namespace) -> Job:
    """Check every input (``InputError``/``OSError``/``ValueError``), load the stimuli, hash
    every seed and open the resume file."""
    from jaxprune.outputs import check_folder_writable, remove_stale_temporaries
    from jaxprune.pipeline.seeds import SeedResults, inspect_checkpoints, seed_refs
    from jaxprune.provenance import identity

    options = options_of(args)
    check_options(options)
    out = args.out or (Path(tempfile.mkdtemp(prefix=f"{NAME}_quick-")) if args.quick
                       else ROOT / "docs" / "results")
    check_folder_writable(out, "--out")
    infos = inspect_checkpoints(checkpoints_of(args, out), data=tuple(args.datasets))
    names = list(dict.fromkeys(i.metadata["data"] for i in infos))
    stimuli, data = {}, {}
    for name in names:
        arch = next(i.arch for i in infos if i.metadata["data"] == name)
        x, labels, data[name] = load_stimuli(name, options, args.data_dir, arch)
        stimuli[name] = (x, labels)
    refs = seed_refs(infos)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    job = Job(options, out, infos, refs, stimuli, data, None)
    ident = identity(experiment=NAME, **asdict(options))  # flat: a refusal names the field
    job.store = SeedResults(out / f"{NAME}.json", ident, refs, fresh=args.fresh,
                            expect=lambda r: {"stimuli_hash": data[job.data_of(r)]["stimuli_hash"]})
    return job


def run_seed(job: Job, info, ref, params) -> dict[str, Any]:
    """One seed: readout features, then :func:`jaxprune.search.redundant.redundancy`."""
    from jaxprune.models import seed_slice
    from jaxprune.search.redundant import layer_features, redundancy

    o, name = job.options, info.metadata["data"]
    x, labels = job.stimuli[name]
    t0 = time.perf_counter()
    features = layer_features(info.arch, seed_slice(params, ref.index), x)
    result = redundancy(features, labels, class_means=o.class_means, epsilon=o.epsilon,
                        n_boot=o.n_boot, folds=o.folds, alphas=o.alphas, levels=o.levels,
                        seed=o.seed, metric=o.metric, rsm_method=o.rsm_method)
    acc = info.metadata.get("test_accuracy")
    return {"data": job.data[name], "stimuli_hash": job.data[name]["stimuli_hash"],
            "layer": info.arch.readout_layer,
            "model": info.arch.family, "test_accuracy": acc[ref.index] if acc else None,
            "result": result.to_dict(), "seconds": time.perf_counter() - t0}


def save(job: Job, started: float) -> dict[str, Any]:
    """Write the results file (after every seed): per-seed entries, summary, provenance."""
    from jaxprune.pipeline.seeds import save_results

    return save_results(job, started, NAME, ROOT, redundant_summary, criterion=CRITERION)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment; exits with status 2 and one ``error: ...`` line on a bad input."""
    from jaxprune.pipeline.seeds import run_experiment

    return run_experiment(NAME, argv, parse, prepare, run_seed, save, write_redundant_report)


if __name__ == "__main__":
    from jaxprune.malloc import relaunch_with_huge_pages

    relaunch_with_huge_pages()  # GiB-sized search buffers: jaxprune.malloc
    main()
