"""PoZ fraction curves of LeNet-5 on CIFAR-10 (design method 2; issue 13, experiment 2).

For every trained seed: the penultimate layer ``fc2`` (84 post-ReLU units) on the 10,000
CIFAR-10 test images, class-averaged (10×10) Pearson RSMs; keep 90 %, 80 %, … 10 % of the
units (``int(p·84)``, the reference code's levels) in PoZ order (highest PoZ removed first);
at each level the fit (R² of the upper triangles) to the unpruned network's RSM and the
largest PoZ among the kept units; the same removals in 100 random orders per seed. Mean ± sd
(ddof=1) over seeds. **PoZ beats random** at a level for a seed when the PoZ order's fit is
above the median of that seed's 100 random-order fits; the table gives the fraction of seeds
where it does (and, per seed, the share of random orders whose fit is below the PoZ order's).

    python experiments/curves_cifar10.py --quick          # tiny networks, under a minute
    python experiments/curves_cifar10.py                  # runs/aim1/cifar10/seeds_*/model
    python experiments/curves_cifar10.py --checkpoints runs/a/model runs/b/model

Full mode resumes per seed from ``<out>/curves_cifar10.json`` (refused when written with other
options or data; ``--fresh`` starts afresh). Writes ``curves_cifar10.{json,md,png}`` into
``--out`` (full: ``docs/results``; quick: a new temporary folder). The CIFAR-10 copy in
../shared/data is JPEG q75 (lossy), see its README.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.experiment_reports import curves_summary, write_curves_report

ROOT = Path(__file__).resolve().parents[1]
NAME = "curves_cifar10"
DEFAULT_CHECKPOINTS = ("runs/aim1/cifar10/seeds_*/model",)
DATA_NOTE = "CIFAR-10: the JPEG q75 (lossy) copy in ../shared/data"


@dataclass(frozen=True)
class Options:
    """What a run computes (every field enters the results file's identity)."""

    data: str = "cifar10"
    layer: str = "fc2"
    keep: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
    n_random: int = 100
    stimuli: int | None = None  # None: the whole split (10,000 test images)
    split: str = "test"
    class_means: bool = True
    metric: str = "r2"
    rsm_method: str = "pearson"
    quick: bool = False


#: quick mode: the tiny networks of ``jaxprune.pipeline.seeds.QUICK_NETWORKS`` (3 seeds in two
#: checkpoints, 30 training images per class, 2 epochs), 200 test images, 20 random orders
QUICK = Options(n_random=20, stimuli=200, quick=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    from jaxprune.pipeline.seeds import experiment_parser

    p = experiment_parser(__doc__.split("\n\n")[0],
                          f"checkpoint folders (default: {' '.join(DEFAULT_CHECKPOINTS)})")
    p.add_argument("--layer", help="layer to prune (default fc2)")
    p.add_argument("--random", type=int, dest="n_random", help="random orders per seed")
    p.add_argument("--stimuli", type=int, help="first N test images (default: all)")
    return p.parse_args(argv)


def options_of(args: argparse.Namespace) -> Options:
    from jaxprune.pipeline.seeds import options_from

    return options_from(args, QUICK, Options(), ("layer", "n_random", "stimuli"))


def checkpoints_of(args, out: Path) -> list[Path]:
    """Quick: the tiny networks in ``out/checkpoints/cifar10`` (trained there if missing)."""
    from jaxprune.pipeline.seeds import quick_checkpoints, resolve_checkpoints

    if not args.quick:
        return resolve_checkpoints(args.checkpoints, DEFAULT_CHECKPOINTS, ROOT)
    return quick_checkpoints("cifar10", out / "checkpoints", args.data_dir)


@dataclass
class Job:
    """Everything checked and loaded before the long work."""

    options: Options
    out: Path
    infos: list
    refs: list
    x: np.ndarray
    labels: np.ndarray
    data: dict[str, Any]
    store: Any


def prepare(args: argparse.Namespace) -> Job:
    """Check every input (``InputError``/``OSError``/``ValueError`` on bad ones), load the
    stimuli, hash every seed and open the resume file."""
    from jaxprune.data import load_dataset
    from jaxprune.outputs import check_folder_writable, remove_stale_temporaries
    from jaxprune.pipeline.seeds import (
        InputError,
        SeedResults,
        inspect_checkpoints,
        same_width,
        seed_refs,
    )
    from jaxprune.provenance import fingerprint, identity
    from jaxprune.search.curves import removed_counts
    from jaxprune.search.fit import class_average

    options = options_of(args)
    if options.n_random < 0:
        raise InputError(f"--random {options.n_random}: must be 0 or more random orders")
    out = args.out or (Path(tempfile.mkdtemp(prefix=f"{NAME}_quick-")) if args.quick
                       else ROOT / "docs" / "results")
    check_folder_writable(out, "--out")
    infos = inspect_checkpoints(checkpoints_of(args, out), layer=options.layer,
                                data=(options.data,))
    removed_counts(same_width(infos, options.layer), keep=options.keep)
    ds = load_dataset(options.data, options.split, args.data_dir, download=False)
    if options.stimuli is not None:
        if not 3 <= options.stimuli <= len(ds):
            raise InputError(f"--stimuli {options.stimuli}: use 3 .. {len(ds)} images")
        ds = ds.take(options.stimuli)
    if ds.image_shape != tuple(infos[0].arch.input_shape):
        raise InputError(f"{options.data} images are {ds.image_shape}, the networks take "
                         f"{infos[0].arch.input_shape}; pass networks trained on them")
    class_average(ds.labels)  # every class among the stimuli
    x = ds.float_images()
    data = {"name": options.data, "split": options.split, "stimuli": len(ds),
            "source": ds.source, "stimuli_hash": fingerprint(x, ds.labels), "note": DATA_NOTE}
    ident = identity(experiment=NAME, **asdict(options),  # flat: a refusal names the field
                     data_stimuli=len(ds), data_stimuli_hash=data["stimuli_hash"])
    refs = seed_refs(infos)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    store = SeedResults(out / f"{NAME}.json", ident, refs, fresh=args.fresh)
    return Job(options, out, infos, refs, x, ds.labels, data, store)


def run_seed(job: Job, info, ref, params) -> dict[str, Any]:
    """One seed's curve (:func:`jaxprune.search.curves.fraction_curve`); random orders from
    ``default_rng([order_seed, 0])``, ``order_seed`` from the seed's parameter hash."""
    from jaxprune.models import seed_slice
    from jaxprune.pipeline.seeds import order_seed
    from jaxprune.search.curves import fraction_curve

    o = job.options
    t0 = time.perf_counter()
    curve = fraction_curve(info.arch, seed_slice(params, ref.index), job.x, o.layer,
                           keep=o.keep, n_random=o.n_random, seed=order_seed(ref),
                           metric=o.metric, rsm_method=o.rsm_method,
                           class_means=o.class_means, labels=job.labels)
    curve.seed = ref.global_id
    curve.random_fits = np.round(np.asarray(curve.random_fits), 6).tolist()
    acc = info.metadata.get("test_accuracy")
    return {"order_seed": order_seed(ref), "test_accuracy": acc[ref.index] if acc else None,
            "curve": curve.to_dict(), "seconds": time.perf_counter() - t0}


def save(job: Job, started: float) -> dict[str, Any]:
    """Write the results file (after every seed): per-seed entries, summary, provenance."""
    from jaxprune.pipeline.seeds import save_results

    width = job.infos[0].arch.widths[job.options.layer]
    return save_results(job, started, NAME, ROOT, lambda e: curves_summary(e, width))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment; exits with status 2 and one ``error: ...`` line on a bad input."""
    from jaxprune.pipeline.seeds import run_experiment

    return run_experiment(NAME, argv, parse, prepare, run_seed, save, write_curves_report)


if __name__ == "__main__":
    main()
