"""End-to-end jobs the command line runs: train seeds, load them back, run the searches and
curves, report. Each job checks its inputs before the long work and records what produced its
results (:mod:`jaxprune.provenance`). The flow is cli → pipeline → search → geometry for
every method; :mod:`jaxprune.pipeline.circuits` holds the category-circuits job."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune import checkpoint, models, report
from jaxprune.data import ImageDataset, load_dataset
from jaxprune.models import Architecture, Params, seed_slice
from jaxprune.outputs import remove_stale_temporaries
from jaxprune.provenance import file_hash, fingerprint
from jaxprune.search.poz import DIRECTIONS, PoZConfig, check_inputs, poz_search_directions
from jaxprune.search.result import write_json
from jaxprune.train import TrainConfig, fit

#: What :func:`run_main` and :func:`train_seeds` write into their output folder.
RUN_ARTEFACTS = ("train", "model", "search.json", "summary.json", "trace.png")


def network_for(model: str, data: ImageDataset, **config: Any) -> Architecture:
    """The registered network ``model`` sized for ``data``'s images and classes."""
    shape = data.image_shape
    if model == "mlp":
        config.setdefault("input_dim", int(np.prod(shape)))
    else:
        config.setdefault("input_shape", tuple(shape))
    config.setdefault("num_classes", data.num_classes)
    return models.architecture(model, **config)


def train_seeds(
    model: str,
    data_name: str,
    seeds: int | Sequence[int],
    out: str | Path,
    train_config: TrainConfig,
    *,
    data_dir: str | None = None,
    model_config: dict[str, Any] | None = None,
    train_images: int | None = None,
    progress: bool = True,
) -> tuple[Architecture, Params, dict[str, Any]]:
    """Train ``seeds`` networks (a count: seeds ``0..seeds-1``; or the seed ids) in one
    program on ``data_name`` (its first ``train_images`` training images when given) and save
    them (with their per-seed accuracies) to ``out/model``; an interrupted run resumes from
    ``out/train``."""
    train = load_dataset(data_name, "train", data_dir=data_dir)
    if train_images is not None:
        train = train.take(train_images)
    test = load_dataset(data_name, "test", data_dir=data_dir)
    arch = network_for(model, train, **(model_config or {}))
    ids = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    config = dataclasses.replace(train_config, seeds=ids)
    out = Path(out)
    result = fit(arch, train.float_images(), train.labels, config,
                 test=(test.float_images(), test.labels), checkpoint_dir=out / "train",
                 metadata={"data": data_name}, progress=progress)
    final = result.final()
    summary = {
        "model": model, "data": data_name, "seeds": list(config.seeds),
        "train_images": len(train.labels),
        "test_accuracy": final["test_accuracy"].tolist(),
        "val_accuracy": final["val_accuracy"].tolist(),
        "epochs_run": result.epochs_run, "train_config": config.to_dict(),
        "train_seconds": result.total_seconds,
        "best_epoch": (result.best_epoch + 1).tolist(),  # counted from 1
    }
    checkpoint.save(out / "model", result.params, metadata=summary, arch=arch)
    return arch, result.params, summary


def load_trained(path: str | Path) -> tuple[Architecture, Params, dict[str, Any]]:
    """Architecture, stacked params and metadata of a checkpoint written by :func:`train_seeds`."""
    ckpt = checkpoint.restore(path)
    arch = ckpt.architecture
    if arch is None:
        raise ValueError(f"checkpoint {path} has no architecture: save it with arch=...")
    return arch, ckpt.params, ckpt.metadata


STIMULI_SPLITS = ("train", "test")


def stimulus_set(
    data_name: str, n: int | None, *, split: str = "test", data_dir: str | None = None
) -> ImageDataset:
    """The first ``n`` images (all when None) of ``split`` of ``data_name``, with labels.

    Class-folder copies (the CIFAR-10 image tree, any image folder) are in class-interleaved
    order (:func:`jaxprune.data.images.class_entries`), so every prefix is class-balanced.
    ``.float_images()`` gives the normalised float32 ``[n, h, w, c]`` stimuli."""
    if split not in STIMULI_SPLITS:
        raise ValueError(f"--stimuli-split must be one of {STIMULI_SPLITS}, got {split!r}")
    if n is not None and (isinstance(n, bool) or n < 3):
        raise ValueError(f"--stimuli must be at least 3 (an RSM needs 3 stimuli), got {n}")
    data = load_dataset(data_name, split, data_dir=data_dir)
    if n is not None:
        if n > len(data.labels):
            raise ValueError(f"{data_name} has {len(data.labels)} {split} images; --stimuli "
                             f"{n} asks for more (use at most {len(data.labels)})")
        data = data.take(n)
    return data


def pretrained_stimuli(
    model: str | None, pretrained: bool, weights: str | None, images: str | None,
    checkpoint_path: str | None = None, method: str = "poz", *, progress: bool = True,
) -> tuple[Architecture, Params, np.ndarray]:
    """``prune --model NAME (--pretrained | --weights PATH) --images DIR``: the network, its
    params stacked as one seed, and the images preprocessed for it ``[n, h, w, 3]``. Every
    user error is a ``ValueError`` raised before any long work."""
    from jaxprune.data import load_image_folder

    if model is None or checkpoint_path is not None:
        raise ValueError("give either --checkpoint or --model NAME (with --pretrained or "
                         "--weights PATH and --images DIR), not both/neither")
    arch = models.architecture(model)  # an unknown name lists the registered ones
    if method != "poz":
        raise ValueError(f"--model runs the PoZ search only, not --method {method}")
    if images is None:
        raise ValueError(f"--model {model} needs --images DIR (a folder of stimulus images)")
    if not Path(images).exists():
        raise ValueError(f"--images {images}: no such folder")
    if weights is None and not pretrained:
        raise ValueError(f"--model {model} needs --pretrained or --weights PATH")
    models.preprocessing(arch)  # fails early for a family without a stated preprocessing
    params = pretrained_params(arch, model, weights)
    x = load_image_folder(images, model=arch, progress=progress).float_images()
    return arch, params, x


def pretrained_params(arch: Architecture, model: str, weights: str | None) -> Params:
    """The parameters of ``weights`` (a state dict) or, None, of the package ``model``'s
    weights ship in, stacked as one seed."""
    from jaxprune import weights as weight_io

    try:
        path = weights or weight_io.pretrained_path(model)
    except ImportError as e:
        raise ValueError(str(e)) from None
    params = weight_io.load_torchvision(arch, path)
    return {k: {n: v[None] for n, v in p.items()} for k, p in params.items()}


@dataclass(frozen=True)
class MainConfig:
    """The main job: train a few seeds briefly, prune bottom-up and top-down, report.

    Defaults: the MNIST LeNet layout with narrower layers (conv 16, conv 16, fc 128, fc 64) on
    scikit-learn's 8×8 digits (embedded, no download), 3 seeds, PoZ search on the 359 test
    digits at R² ≥ 0.8 to the unpruned readout RSM."""

    model: str = "lenet5_mnist"
    widths: tuple[int, ...] | None = (16, 16, 128, 64)
    data: str = "digits"
    data_dir: str | None = None
    seeds: int = 3
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    stimuli: int | None = None
    stimuli_split: str = "test"
    class_means: bool = False
    threshold: float = 0.8
    out: str = "runs/main"
    progress: bool = True
    fresh: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> MainConfig:
        """A small version for tests: 2 seeds, 3 epochs, 100 stimuli, narrow layers."""
        return cls(**{"seeds": 2, "epochs": 3, "stimuli": 100, "widths": (8, 8, 32, 16),
                      **overrides})


def fresh_start(out: Path) -> None:
    """Remove what an earlier run wrote into ``out`` (:data:`RUN_ARTEFACTS` only)."""
    import shutil

    for name in RUN_ARTEFACTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_main(config: MainConfig) -> dict[str, Any]:
    """Train, search both directions, print the table; write ``search.json``,
    ``summary.json`` and ``trace.png`` into ``config.out``. Interrupted runs resume; a run
    with other options is refused unless ``config.fresh`` (then the folder starts afresh)."""
    t0 = time.perf_counter()
    out = Path(config.out)
    data = stimulus_set(config.data, config.stimuli, split=config.stimuli_split,
                        data_dir=config.data_dir)  # checked before any training
    search_config = PoZConfig(threshold=config.threshold, class_means=config.class_means)
    if config.fresh:
        fresh_start(out)
    remove_stale_temporaries(out)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                               learning_rate=config.learning_rate, patience=5,
                               val_fraction=0.1)
    model_config = {"widths": tuple(config.widths)} if config.widths else {}
    arch, params, trained = train_seeds(config.model, config.data, config.seeds, out,
                                        train_config, data_dir=config.data_dir,
                                        model_config=model_config, progress=config.progress)
    x = data.float_images()
    search = poz_search_directions(
        arch, params, x, search_config, stacked=True, labels=data.labels, seed_batch=1,
        resume_path=str(out / "search.json"), progress=config.progress,
        provenance={"data": config.data, "split": config.stimuli_split})
    text = report.search_table(search.results, search.jaccard)
    figure = report.plot_traces(search.results, out / "trace.png")
    summary = {
        "config": dataclasses.asdict(config),
        "training": trained,
        "stimuli": int(x.shape[0]),
        "table": text,
        "search": search.to_dict(),
        "figure": str(figure),
        "wall_time_s": time.perf_counter() - t0,
    }
    write_json(out / "summary.json", summary)
    acc = np.asarray(trained["test_accuracy"])
    print(f"\n{config.model} on {config.data}: {len(acc)} seeds, test accuracy "
          f"{report.mean_sd(acc, 3)} (mean ± sd, ddof=1); PoZ search on {x.shape[0]} "
          f"{config.stimuli_split} stimuli{' (class means)' if config.class_means else ''}, "
          f"threshold R² ≥ {config.threshold}\n")
    print(text)
    print(f"\nwrote {out / 'summary.json'} and {figure} ({summary['wall_time_s']:.0f} s)")
    return summary


def _inputs(checkpoint_path, params, data_name: str, split: str, n: int, **extra) -> dict:
    """What a search or curve result was computed from, for its JSON."""
    return {"checkpoint": str(Path(checkpoint_path).absolute()),
            "params_hash": fingerprint(params), "data": data_name, "split": split,
            "stimuli": int(n), **extra}


def prune_search(
    checkpoint_path: str | Path, *, data: str | None = None, data_dir: str | None = None,
    stimuli: int | None = None, split: str = "test", direction: str = "both",
    target_rsm: str | None = None, resume: str | None = None, fresh: bool = False,
    figure: str | None = None, seed_batch: int = 1, progress: bool = True,
    seeds_slice: tuple[int, int] | None = None, **options: Any,
) -> dict[str, Any]:
    """``jaxprune prune``: the PoZ search of every seed of a checkpoint (``seeds_slice =
    (i, n)``: of share i of n, :func:`~jaxprune.sharding.seed_share`) in ``direction``
    (``"both"`` or one), ``options`` the :class:`PoZConfig` fields. Results carry the
    checkpoint's seed ids. Every input is checked before the search; ``resume`` is refused
    when another search wrote it (``fresh``: discarded instead)."""
    import jax

    from jaxprune.data import load_target_rsm
    from jaxprune.sharding import seed_share

    arch, params, meta = load_trained(checkpoint_path)
    ids = list(meta["seeds"])
    if seeds_slice is not None:
        chosen = seed_share(len(ids), seeds_slice)
        params, ids = jax.tree.map(lambda p: p[chosen], params), [ids[k] for k in chosen]
    data_name = data or meta["data"]
    ds = stimulus_set(data_name, stimuli, split=split, data_dir=data_dir)
    target = load_target_rsm(target_rsm) if target_rsm else None
    config = PoZConfig(**options)
    x = ds.float_images()
    check_inputs(arch, x, config, target, ds.labels)
    if fresh and resume:
        Path(resume).unlink(missing_ok=True)
    directions = DIRECTIONS if direction == "both" else (direction,)
    search = poz_search_directions(
        arch, params, x, config, directions=directions, stacked=True, target_rsm=target,
        labels=ds.labels, resume_path=resume, seed_batch=seed_batch, progress=progress,
        provenance={"data": data_name, "split": split})
    for results in search.results.values():
        for r in results:
            r.seed = int(ids[r.seed])
    _print_search(search, figure)
    inputs = _inputs(checkpoint_path, params, data_name, split, x.shape[0],
                     target_rsm=target_rsm, target_rsm_hash=_target_hash(target_rsm),
                     seeds=ids, seeds_slice=None if seeds_slice is None
                     else f"{seeds_slice[0]}/{seeds_slice[1]}")
    return {"inputs": inputs, **search.to_dict()}


def _target_hash(target_rsm: str | None) -> str | None:
    """The content hash of a ``--target-rsm`` file (None without one)."""
    from jaxprune.data.similarity import matrix_file

    return None if not target_rsm else file_hash(matrix_file(target_rsm)[0])


def _print_search(search, figure: str | None) -> None:
    """The search's table, and its trace figure when asked for."""
    print(report.search_table(search.results, search.jaccard))
    if figure:
        print(f"figure: {report.plot_traces(search.results, figure)}")


def load_splits(name: str = "mnist", data_dir: str | None = None, *, n_train: int | None = None,
                n_test: int | None = None, flatten: bool = True):
    """:class:`~jaxprune.search.Splits` of the first ``n_train``/``n_test`` images of a data
    set of :mod:`jaxprune.data`, normalised (``ImageDataset.float_images``) and, with
    ``flatten``, as ``[n, h·w·c]``."""
    from jaxprune.search.iterative import Splits

    def arrays(split, n):
        ds = load_dataset(name, split, data_dir)
        ds = ds if n is None else ds.take(n)
        x = ds.float_images()
        return (x.reshape(len(x), -1) if flatten else x), ds.labels

    x_train, y_train = arrays("train", n_train)
    x_test, y_test = arrays("test", n_test)
    return Splits(x_train, y_train, x_test, y_test, name=name)


def iterative_job(
    arch: Architecture,
    params: Params,
    data: Any,
    method: str,
    fraction: float,
    *,
    iterations: int = 1,
    fine_tune_config: TrainConfig | None = None,
    layers: Sequence[str] | None = None,
    stimuli: int = 512,
    stimuli_split: str = "train",
    probe: int = 1000,
    seeds: Sequence[int] | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """What ``jaxprune prune --method cka|l1|random|poz`` runs; returns JSON-able data.

    ``params``: one network or stacked seeds; ``data``: :class:`~jaxprune.search.Splits` or a
    data set name for :func:`load_splits` (with ``data_dir``). One-shot pruning by default;
    ``iterations > 1`` and/or ``fine_tune_config`` give the iterative loop. ``options`` go to
    the method (CKA: ``compare``, ``kernel``, ``debiased``, ``sigma``, ``floor``,
    ``chunk_size``). Returns
    ``{"config", "seeds", "records", "summary", "masks", "prunes"}``: the records of every
    iteration, their mean ± sd over seeds, the final masks ``{layer: [S][width]}`` and every
    :class:`PruneResult`.
    """
    if isinstance(data, str):
        data = load_splits(data, data_dir, flatten=len(arch.input_shape) == 1)
    from jaxprune.search.iterative import IterativeConfig, iterative_prune, summarize

    config = IterativeConfig(method, fraction, iterations, None if layers is None
                             else tuple(layers), stimuli, probe, dict(options),
                             stimuli_split=stimuli_split)
    result = iterative_prune(arch, params, data, config, fine_tune_config, seeds=seeds,
                             progress=progress)
    out = result.to_dict()
    out["summary"] = summarize(result.records)
    return out


def prune_baseline(
    checkpoint_path: str | Path, method: str, fraction: float, *, data: str | None = None,
    data_dir: str | None = None, iterations: int = 1, fine_tune_epochs: int = 0,
    layers=None, stimuli: int = 512, split: str = "train", progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """``jaxprune prune --method cka|l1|random``: remove ``fraction`` of each layer's units,
    ``iterations`` times with ``fine_tune_epochs`` of masked fine-tuning in between."""
    arch, params, meta = load_trained(checkpoint_path)
    fine_tune = None
    if fine_tune_epochs > 0:
        trained_with = TrainConfig.from_dict(meta["train_config"])
        fine_tune = dataclasses.replace(trained_with, epochs=fine_tune_epochs,
                                        seeds=tuple(meta["seeds"]))
    out = iterative_job(arch, params, data or meta["data"], method, fraction,
                        iterations=iterations, fine_tune_config=fine_tune, layers=layers,
                        stimuli=stimuli, stimuli_split=split, seeds=meta["seeds"],
                        data_dir=data_dir, progress=progress, **options)
    rows = [[r["iteration"], r["seed"], f"{r['kept_fraction']:.2f}",
             f"{r['test_accuracy_pruned']:.4f}", f"{r['test_accuracy']:.4f}",
             f"{r['agreement']:.4f}", f"{r['readout_cka']:.3f}"] for r in out["records"]]
    print(report.table(["iteration", "seed", "kept", "acc. pruned", "acc. fine-tuned",
                        "agreement", "readout CKA"], rows))
    inputs = _inputs(checkpoint_path, params, data or meta["data"], split, stimuli)
    return {"inputs": inputs, **out}


def curve_command(
    checkpoint_path: str | Path, layer: str, *, data: str | None = None,
    data_dir: str | None = None, stimuli: int | None = None, split: str = "test",
    seed: int | None = None, figure: str | None = None, **options: Any,
) -> dict[str, Any]:
    """``jaxprune curve``: fraction curves of ``layer`` for one seed or (``seed`` None) every
    seed of a checkpoint in one call; ``options`` go to :func:`fraction_curve`."""
    from jaxprune.search.curves import fraction_curve

    arch, params, meta = load_trained(checkpoint_path)
    arch.index(layer)
    seeds = len(meta["seeds"])
    if seed is not None and not 0 <= seed < seeds:
        raise ValueError(f"--seed {seed} is not a seed of this checkpoint (it has {seeds}: "
                         f"use 0..{seeds - 1}, or leave --seed out for all)")
    data_name = data or meta["data"]
    ds = stimulus_set(data_name, stimuli, split=split, data_dir=data_dir)
    one = seed is not None
    curves = fraction_curve(arch, seed_slice(params, seed) if one else params,
                            ds.float_images(), layer, labels=ds.labels, stacked=not one,
                            **options)
    print(report.curve_table(curves))
    if figure:
        print(f"figure: {report.plot_curve(curves, figure)}")
    inputs = _inputs(checkpoint_path, params, data_name, split, len(ds.labels), seed=seed)
    return {"inputs": inputs, **curves.to_dict()}


def prune_pretrained(model, pretrained, weights, images, checkpoint_path=None, method="poz",
                     *, direction: str = "both", target_rsm: str | None = None,
                     figure: str | None = None, progress: bool = True,
                     **options: Any) -> dict[str, Any]:
    """``jaxprune prune --model NAME (--pretrained | --weights PATH) --images DIR``: the PoZ
    search of a registered pretrained network on a folder of images."""
    from jaxprune.data import load_target_rsm

    arch, params, x = pretrained_stimuli(model, pretrained, weights, images, checkpoint_path,
                                         method, progress=progress)
    target = load_target_rsm(target_rsm) if target_rsm else None
    config = PoZConfig(**options)
    check_inputs(arch, x, config, target, None)
    directions = DIRECTIONS if direction == "both" else (direction,)
    search = poz_search_directions(arch, params, x, config, directions=directions,
                                   stacked=True, target_rsm=target, progress=progress,
                                   provenance={"model": model, "images": str(images)})
    _print_search(search, figure)
    inputs = {"model": model, "weights": weights or "packaged", "images": str(images),
              "params_hash": fingerprint(params), "stimuli": int(x.shape[0]),
              "target_rsm": target_rsm, "target_rsm_hash": _target_hash(target_rsm)}
    return {"inputs": inputs, **search.to_dict()}
