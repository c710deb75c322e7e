"""End-to-end jobs the command line runs: train seeds, load them back, run the PoZ search."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune import checkpoint, models, report
from jaxprune.data import ImageDataset, load_dataset
from jaxprune.models import Architecture, Params
from jaxprune.search.poz import PoZConfig, poz_search_directions
from jaxprune.search.result import write_json
from jaxprune.train import TrainConfig, fit


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
    seeds: int,
    out: str | Path,
    train_config: TrainConfig,
    *,
    data_dir: str | None = None,
    model_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Architecture, Params, dict[str, Any]]:
    """Train ``seeds`` networks in one program on ``data_name`` and save them (with their
    per-seed accuracies) to ``out/model``; an interrupted run resumes from ``out/train``."""
    train = load_dataset(data_name, "train", data_dir=data_dir)
    test = load_dataset(data_name, "test", data_dir=data_dir)
    arch = network_for(model, train, **(model_config or {}))
    config = dataclasses.replace(train_config, seeds=tuple(range(seeds)))
    out = Path(out)
    result = fit(arch, train.float_images(), train.labels, config,
                 test=(test.float_images(), test.labels), checkpoint_dir=out / "train",
                 metadata={"data": data_name}, progress=progress)
    final = result.final()
    summary = {
        "model": model, "data": data_name, "seeds": list(config.seeds),
        "test_accuracy": final["test_accuracy"].tolist(),
        "val_accuracy": final["val_accuracy"].tolist(),
        "epochs_run": result.epochs_run, "train_config": config.to_dict(),
        "train_seconds": float(sum(result.epoch_seconds)),
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


def stimuli(data_name: str, n: int | None, *, data_dir: str | None = None) -> np.ndarray:
    """The first ``n`` test images (all when None), normalised float32 ``[n, h, w, c]``."""
    test = load_dataset(data_name, "test", data_dir=data_dir)
    if n is not None:
        if n > len(test.labels):
            raise ValueError(f"{data_name} has {len(test.labels)} test images, asked for {n}")
        test = test.take(n)
    return test.float_images()


def pretrained_stimuli(
    model: str | None, pretrained: bool, weights: str | None, images: str | None,
    checkpoint_path: str | None = None, method: str = "poz", *, progress: bool = True,
) -> tuple[Architecture, Params, np.ndarray]:
    """``prune --model NAME (--pretrained | --weights PATH) --images DIR``: the network, its
    params stacked as one seed, and the images preprocessed for it ``[n, h, w, 3]``. Every
    user error is a ``ValueError`` raised before any long work."""
    from jaxprune import weights as weight_io
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
    try:
        path = weights or weight_io.pretrained_path(model)
    except ImportError as e:
        raise ValueError(str(e)) from None
    models.preprocessing(arch)  # fails early for a family without a stated preprocessing
    params = weight_io.load_torchvision(arch, path)
    x = load_image_folder(images, model=arch, progress=progress).float_images()
    return arch, {k: {n: v[None] for n, v in p.items()} for k, p in params.items()}, x


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
    threshold: float = 0.8
    out: str = "runs/main"
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> MainConfig:
        """A small version for tests: 2 seeds, 3 epochs, 100 stimuli, narrow layers."""
        return cls(**{"seeds": 2, "epochs": 3, "stimuli": 100, "widths": (8, 8, 32, 16),
                      **overrides})


def run_main(config: MainConfig) -> dict[str, Any]:
    """Train, search both directions, print the table; write ``search.json``,
    ``summary.json`` and ``trace.png`` into ``config.out``. Interrupted runs resume."""
    t0 = time.perf_counter()
    out = Path(config.out)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                               learning_rate=config.learning_rate, patience=5,
                               val_fraction=0.1)
    model_config = {"widths": tuple(config.widths)} if config.widths else {}
    arch, params, trained = train_seeds(config.model, config.data, config.seeds, out,
                                        train_config, data_dir=config.data_dir,
                                        model_config=model_config, progress=config.progress)
    x = stimuli(config.data, config.stimuli, data_dir=config.data_dir)
    search = poz_search_directions(
        arch, params, x, PoZConfig(threshold=config.threshold), stacked=True,
        resume_path=str(out / "search.json"), progress=config.progress)
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
          f"{report.mean_sd(acc, 3)}; PoZ search on {x.shape[0]} stimuli, "
          f"threshold R² ≥ {config.threshold}\n")
    print(text)
    print(f"\nwrote {out / 'summary.json'} and {figure} ({summary['wall_time_s']:.0f} s)")
    return summary
