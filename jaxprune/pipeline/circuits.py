"""Category circuits as a job: image sets per class, every seed of a checkpoint, the held-out
evaluation, per-(seed, category) rows, the summary, the overlap figure, the ``jaxprune
circuits`` command.

Image sets: the scoring images are the first ``scoring_per_class`` images of each class of the
training split (in data-set order), the extraction images the next ``extraction_per_class``
of each class, the evaluation images the first ``eval_per_class`` of each class of the test
split (or, for a single image folder, the block after the extraction images). Every class
present in the data contributes images, so "other images" in CSA are those of every other
class; ``categories`` chooses which output units get a circuit.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxprune.models import Architecture, Params, seed_slice
from jaxprune.search.circuits import (
    CircuitConfig,
    Circuits,
    check_categories,
    circuit_jaccard,
    evaluate_circuits,
    extract_circuits,
    sparsity,
)
from jaxprune.search.result import to_jsonable

Sets = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CircuitJob:
    """What a circuits run does: ``categories`` (None: every class with images), images per
    class in each set, and the extraction options."""

    categories: tuple[int, ...] | None = None
    scoring_per_class: int = 4
    extraction_per_class: int = 20
    eval_per_class: int = 30
    circuit: CircuitConfig = field(default_factory=CircuitConfig)

    def __post_init__(self) -> None:
        for name in ("scoring_per_class", "extraction_per_class", "eval_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["categories"] = None if self.categories is None else list(self.categories)
        out["circuit"]["levels"] = list(self.circuit.levels)
        return out


def per_class_blocks(labels: np.ndarray, counts: Sequence[int], where: str,
                     options: Sequence[str]) -> list[np.ndarray]:
    """Consecutive per-class blocks: block b holds images ``Σ counts[:b] .. Σ counts[:b+1]``
    of every class (in order). A class with too few images is a ``ValueError`` naming it."""
    labels = np.asarray(labels)
    need = int(sum(counts))
    blocks: list[list[np.ndarray]] = [[] for _ in counts]
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        if idx.size < need:
            asked = " + ".join(f"{k} ({o})" for k, o in zip(counts, options, strict=True))
            raise ValueError(f"class {int(c)} has {idx.size} images in {where}, fewer than "
                             f"asked: {asked}; lower {' or '.join(options)}")
        for b, start in enumerate(np.cumsum([0, *counts[:-1]])):
            blocks[b].append(idx[start:start + counts[b]])
    if not blocks[0]:
        raise ValueError(f"{where} has no labelled image")
    return [np.sort(np.concatenate(b)) for b in blocks]


def image_sets(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
               job: CircuitJob, where: tuple[str, str]) -> Sets:
    """``{"scoring", "extraction", "eval"}`` → ``(x, labels)`` picked as the module says;
    ``test=None``: the evaluation block comes after the extraction block of ``train``."""
    opts = ["--scoring-per-class", "--extraction-per-class", "--eval-per-class"]
    counts = [job.scoring_per_class, job.extraction_per_class, job.eval_per_class]
    if test is None:
        idx = per_class_blocks(train[1], counts, where[0], opts)
        picks = [(train, i) for i in idx]
    else:
        idx = per_class_blocks(train[1], counts[:2], where[0], opts[:2])
        (ev,) = per_class_blocks(test[1], counts[2:], where[1], opts[2:])
        picks = [(train, idx[0]), (train, idx[1]), (test, ev)]
    return {name: (np.asarray(d[0][i]), np.asarray(d[1][i]))
            for name, (d, i) in zip(("scoring", "extraction", "eval"), picks, strict=True)}


def resolve_categories(arch: Architecture, job: CircuitJob, labels: np.ndarray) -> np.ndarray:
    """The job's categories, or every class with images in ``labels``; checked in range."""
    if job.categories is None:
        present = np.unique(np.asarray(labels)[np.asarray(labels) >= 0])
        return check_categories(arch, present[present < arch.num_classes])
    return check_categories(arch, job.categories)


def circuit_rows(arch: Architecture, circuits: Circuits, heldout: dict[str, np.ndarray],
                 seed: int, class_names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One JSON row per category: sparsities (extracted and effective, total and per layer),
    the kept level of each group, the fitted bias, CSA on the extraction and held-out images
    and the held-out CSA relative to the unpruned network's."""
    extracted, effective = sparsity(arch, circuits.items), sparsity(arch, circuits.effective)
    rows = []
    for i, c in enumerate(circuits.categories):
        row = {"seed": int(seed), "category": int(c),
               "name": class_names[c] if len(class_names) > c else str(int(c)),
               "sparsity": float(effective["total"][i]),
               "sparsity_extracted": float(extracted["total"][i]),
               "relative_csa": float(heldout["relative"][i]),
               "heldout_csa": float(heldout["csa"][i]),
               "heldout_baseline_csa": float(heldout["baseline"][i]),
               "heldout_null_csa": float(heldout["null"][i]),
               "extraction_csa": float(circuits.extraction_csa[i]),
               "extraction_baseline_csa": float(circuits.baseline_csa[i]),
               "bias": float(circuits.beta[i])}
        for g, sweep in circuits.groups.items():
            row[f"{g}_level_sparsity"] = float(sweep.sparsity[i])
            row[f"{g}_csa_curve"] = sweep.csa[i].tolist()
        row["layer_sparsity"] = {k: float(v[i]) for k, v in effective.items() if k != "total"}
        row["layer_sparsity_extracted"] = {k: float(v[i]) for k, v in extracted.items()
                                           if k != "total"}
        rows.append(row)
    return rows


def run_seed(arch: Architecture, params: Params, sets: Sets, categories: np.ndarray,
             job: CircuitJob, seed: int, class_names: Sequence[str] = (), *,
             sequential: bool = False) -> dict[str, Any]:
    """Circuits of one network: ``{"seed", "rows", "jaccard", "sweep_levels", "seconds"}``."""
    t0 = time.perf_counter()
    circuits = extract_circuits(arch, params, sets["scoring"], sets["extraction"], categories,
                                job.circuit, sequential=sequential)
    heldout = evaluate_circuits(arch, params, circuits, *sets["eval"])
    jac = circuit_jaccard(arch, circuits.effective)
    return {"seed": int(seed), "rows": circuit_rows(arch, circuits, heldout, seed, class_names),
            "jaccard": {k: v.tolist() for k, v in jac.items()},
            "sweep_counts": {g: s.counts.tolist() for g, s in circuits.groups.items()},
            "seconds": time.perf_counter() - t0}


def _sd(v: np.ndarray) -> float:
    """Sample standard deviation (ddof=1; 0 for one value), the project's convention."""
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sample sd (ddof=1) over every (seed, category) row of the sparsities and the
    relative held-out CSA (rows with a non-positive baseline, relative NaN, left out and
    counted), and the number of empty circuits (effective sparsity 1)."""
    sp = np.array([r["sparsity"] for r in rows])
    spx = np.array([r["sparsity_extracted"] for r in rows])
    rel = np.array([r["relative_csa"] for r in rows], np.float64)
    ok = np.isfinite(rel)
    return {"mean_sparsity": float(sp.mean()), "sd_sparsity": _sd(sp),
            "mean_sparsity_extracted": float(spx.mean()), "sd_sparsity_extracted": _sd(spx),
            "mean_relative_csa": float(rel[ok].mean()) if ok.any() else None,
            "sd_relative_csa": _sd(rel[ok]) if ok.any() else None,
            "rows_without_relative_csa": int((~ok).sum()), "n_rows": len(rows),
            "empty_circuits": int(np.sum(sp >= 1.0))}


def overlap_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sample sd (ddof=1) of the pairwise Jaccard overlap (all hidden layers) over every
    pair of categories and seed; pairs of two empty circuits (undefined) are counted apart."""
    mats = np.array([r["jaccard"]["total"] for r in results], dtype=np.float64)
    upper = np.triu_indices(mats.shape[1], 1)
    pairs = mats[:, upper[0], upper[1]].ravel()
    ok = pairs[np.isfinite(pairs)]
    return {"mean_jaccard": float(ok.mean()) if ok.size else None,
            "sd_jaccard": _sd(ok) if ok.size else None,
            "jaccard_pairs": int(ok.size), "jaccard_pairs_undefined": int(pairs.size - ok.size)}


def run_all(arch: Architecture, params: Params, sets: Sets, job: CircuitJob,
            seeds: Sequence[int], class_names: Sequence[str] = (), *, stacked: bool = True,
            done: Sequence[dict[str, Any]] = (), on_seed: Callable | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
    """:func:`run_seed` for each seed of stacked ``params`` (position i ↔ ``seeds[i]``);
    seeds already in ``done`` are kept, not redone; ``on_seed(results)`` after each seed."""
    categories = resolve_categories(arch, job, sets["scoring"][1])
    results = list(done)
    finished = {r["seed"] for r in results}
    todo = [(i, s) for i, s in enumerate(seeds) if int(s) not in finished]
    for i, s in tqdm(todo, disable=not progress, desc="circuits", unit="seed"):
        one = seed_slice(params, i) if stacked else params
        results.append(run_seed(arch, one, sets, categories, job, s, class_names))
        if on_seed is not None:
            on_seed(results)
    return sorted(results, key=lambda r: r["seed"])


def plot_overlap(results: list[dict[str, Any]], path: str | Path,
                 class_names: Sequence[str] = (), title: str = "") -> Path:
    """Two panels: the histogram of the Jaccard overlap of every pair of categories (all
    seeds; pairs of two empty circuits, overlap undefined, left out and counted), and the
    category × category overlap averaged over seeds. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxprune.report import _save

    mats = np.array([r["jaccard"]["total"] for r in results], dtype=np.float64)  # None: NaN
    cats = [row["category"] for row in results[0]["rows"]]
    upper = np.triu_indices(mats.shape[1], 1)
    pairs = mats[:, upper[0], upper[1]].ravel()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax0.hist(pairs[np.isfinite(pairs)], bins=20, range=(0, 1), color="C0")
    undefined = int((~np.isfinite(pairs)).sum())
    ax0.set(xlabel="Jaccard overlap of two categories' circuits (weights)"
            + (f"\n({undefined} pairs of two empty circuits left out)" if undefined else ""),
            ylabel="pairs", title=f"{title} {len(upper[0])} pairs x {len(mats)} seed(s)".strip())
    with warnings.catch_warnings():  # a pair undefined in every seed stays NaN (blank)
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(mats, axis=0)
    im = ax1.imshow(mean, vmin=0, vmax=1, cmap="viridis")
    labels = [class_names[c] if len(class_names) > c else str(c) for c in cats]
    ax1.set_xticks(range(len(cats)), labels, rotation=90, fontsize=7)
    ax1.set_yticks(range(len(cats)), labels, fontsize=7)
    ax1.set_title("mean overlap over seeds")
    fig.colorbar(im, ax=ax1)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    _save(fig, tmp)
    return tmp.replace(path)


def folder_labels(ds) -> np.ndarray:
    """Output-unit labels of an image folder: class folders named by integers are those unit
    indices (ImageNet-style ``0``..``999``); otherwise the position of the sorted name."""
    names = ds.class_names
    if names and all(n.isdigit() for n in names):
        return np.array([int(names[i]) for i in ds.labels], np.int32)
    return np.asarray(ds.labels, np.int32)


def _load_network(checkpoint: str | None, model: str | None, weights: str | None,
                  image_size: int, model_config: dict[str, Any] | None = None
                  ) -> tuple[Architecture, Params, list[int], dict[str, Any]]:
    """(arch, params, seeds, metadata): a checkpoint's stacked seeds, or one network of the
    family ``model`` with torchvision-layout ``weights`` (stacked as one seed)."""
    import jax

    if (checkpoint is None) == (weights is None):
        raise ValueError("give either --checkpoint or --weights (with --model)")
    if checkpoint is not None:
        from jaxprune.pipeline import load_trained

        arch, params, meta = load_trained(checkpoint)
        return arch, params, list(meta.get("seeds", range(len(params["head"]["bias"])))), meta
    from jaxprune.models import architecture
    from jaxprune.weights import load_torchvision

    if model is None:
        raise ValueError("--weights needs --model (e.g. alexnet or vgg16)")
    arch = architecture(model, **{"input_shape": (image_size, image_size, 3),
                                  **(model_config or {})})
    params = load_torchvision(arch, weights)
    return arch, jax.tree.map(lambda a: a[None], params), [0], {"weights": str(weights)}


def circuits_command(*, checkpoint: str | None = None, model: str | None = None,
                     weights: str | None = None, data: str | None = None,
                     data_dir: str | None = None, images: str | None = None,
                     eval_images: str | None = None, image_size: int = 224,
                     job: CircuitJob, seeds: Sequence[int] | None = None,
                     figure: str | None = None, progress: bool = True,
                     model_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``jaxprune circuits`` job: load the network(s) and images, check everything, run
    every seed, summarise, draw the overlap figure; returns the JSON payload.
    ``model_config``: overrides of the family with ``weights`` (e.g. narrower ``widths``)."""
    import jax

    import jaxprune
    from jaxprune.data import load_dataset, load_image_folder

    t0 = time.perf_counter()
    arch, params, all_seeds, meta = _load_network(checkpoint, model, weights, image_size,
                                                  model_config)
    if images is not None:
        train_ds = load_image_folder(images, image_size, progress=progress)
        test_ds = None if eval_images is None else load_image_folder(eval_images, image_size,
                                                                     progress=progress)
        where = (str(images), str(eval_images))
        train = (train_ds.float_images(), folder_labels(train_ds))
        test = None if test_ds is None else (test_ds.float_images(), folder_labels(test_ds))
        names: tuple[str, ...] = ()
    else:
        data = data or meta.get("data")
        if data is None:
            raise ValueError("give --data (the checkpoint does not name its data set) or "
                             "--images")
        train_ds, test_ds = (load_dataset(data, s, data_dir) for s in ("train", "test"))
        where = (train_ds.name, test_ds.name)
        train = (train_ds.float_images(), train_ds.labels)
        test = (test_ds.float_images(), test_ds.labels)
        names = train_ds.class_names
    sets = image_sets(train, test, job, where)
    categories = resolve_categories(arch, job, sets["scoring"][1])
    chosen = list(all_seeds) if seeds is None else [int(s) for s in seeds]
    unknown = [s for s in chosen if s not in all_seeds]
    if unknown:
        raise ValueError(f"seeds {unknown} are not in the checkpoint (it has {all_seeds})")
    positions = [all_seeds.index(s) for s in chosen]
    params = jax.tree.map(lambda a: a[np.asarray(positions)], params)
    results = run_all(arch, params, sets, job, chosen, names, progress=progress)
    rows = [r for res in results for r in res["rows"]]
    out = {"method": "category circuits (activation x gradient, CSA, fitted bias)",
           **summarize(rows), **overlap_summary(results),
           "jaxprune_version": jaxprune.__version__,
           "checkpoint": checkpoint, "weights": weights, "model": arch.family,
           "model_config": to_jsonable(model_config),
           "data": None if images else data, "images": images, "eval_images": eval_images,
           "splits": {"scoring": where[0], "extraction": where[0],
                      "eval": where[1] if test is not None else where[0]},
           "counts": {k: int(len(v[1])) for k, v in sets.items()},
           "categories": categories.tolist(), "seeds": chosen, "options": job.to_dict(),
           "rows": rows, "per_seed": results, "wall_time_s": time.perf_counter() - t0}
    if figure:
        out["figure"] = str(plot_overlap(results, figure, names, arch.family))
    return out
