"""Iterative pruning with fine-tuning (the job behind ``jaxprune prune --method ...`` is
:func:`jaxprune.pipeline.iterative_job`).

Iteration ``t = 1 … J``: every network (one per seed) loses ``round(fraction · kept)`` of the
kept units of each pruned layer (CKA, L1, random or PoZ, :func:`prune_units`; a search
compares with the network as it enters the iteration), then all seeds are fine-tuned together
with their masks fixed (:func:`jaxprune.train.fine_tune`, early stopping on validation). After
J iterations a layer keeps about ``(1 − fraction)^J`` of its units.

One record per (iteration, seed); iteration 0 is the unpruned network. Fields:

- ``method``, ``iteration``, ``seed``; ``kept`` ``{layer: units}``, ``kept_fraction`` (kept
  units / all units of the pruned layers), ``compression_rate`` (parameters, unpruned / pruned);
- ``test_accuracy`` and ``agreement`` — the fraction of test images whose predicted class is
  the unpruned network's — after fine-tuning, and ``*_pruned`` before it;
- ``layer_cka`` ``{layer: linear CKA}`` to the unpruned network on the probe images (the first
  ``probe`` test images) after fine-tuning, and ``readout_cka``;
- ``search_s``, ``fine_tune_s`` (wall time) and ``fine_tune_epochs``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune.masks import compression_rate, full_masks
from jaxprune.models import Architecture, Params, apply, seed_slice
from jaxprune.search._common import layers_in_order
from jaxprune.search.baselines import METHODS, prune_units
from jaxprune.search.cka import check_fraction, layerwise_cka
from jaxprune.search.result import PruneResult, to_jsonable
from jaxprune.train import TrainConfig, fine_tune, is_stacked

RECORD_FIELDS = (
    "method", "iteration", "seed", "kept", "kept_fraction", "compression_rate",
    "test_accuracy", "agreement", "test_accuracy_pruned", "agreement_pruned", "layer_cka",
    "readout_cka", "search_s", "fine_tune_s", "fine_tune_epochs",
)


@dataclass(frozen=True)
class Splits:
    """A classification data set as arrays: float32 inputs ``[n, ...]``, int32 labels ``[n]``.
    Without a validation set, fine-tuning holds out ``TrainConfig.val_fraction`` per seed."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    name: str = ""


@dataclass(frozen=True)
class IterativeConfig:
    """An iterative pruning run as plain data. ``options`` go to the pruning method (e.g.
    ``compare``, ``kernel``, ``debiased`` for CKA); ``stimuli``: the first images of
    ``stimuli_split`` (default the training images) the searches see; ``probe``: the first
    test images of the CKA records."""

    method: str = "cka"
    fraction: float = 0.2
    iterations: int = 5
    layers: tuple[str, ...] | None = None
    stimuli: int = 512
    probe: int = 1000
    options: Mapping[str, Any] = field(default_factory=dict)
    stimuli_split: str = "train"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown pruning method {self.method!r}; expected one of {METHODS}")
        check_fraction(self.fraction)
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")
        if self.stimuli < 4 or self.probe < 4:
            raise ValueError("stimuli and probe need at least 4 images each")
        if self.stimuli_split not in ("train", "test"):
            raise ValueError(f"stimuli_split must be 'train' or 'test', got "
                             f"{self.stimuli_split!r}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))


@dataclass
class IterativeResult:
    """Records (module docstring), the final stacked params and per-seed masks
    ``{layer: [S, width]}``, and the pruning results of every iteration (``[iteration][seed]``)."""

    records: list[dict[str, Any]]
    params: Params
    masks: dict[str, np.ndarray]
    prunes: list[list[PruneResult]]
    config: IterativeConfig
    seeds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: config, seeds, records, the final masks and every pruning result."""
        return to_jsonable({
            "config": asdict(self.config), "seeds": list(self.seeds), "records": self.records,
            "masks": {k: v.astype(int) for k, v in self.masks.items()},
            "prunes": [[r.to_dict() for r in rs] for rs in self.prunes],
        })


@partial(jax.jit, static_argnums=0)
def _predict(arch: Architecture, params: Params, masks, x: jax.Array) -> jax.Array:
    return jax.vmap(lambda p, m: jnp.argmax(apply(arch, p, m, x)[0], -1))(params, masks)


def predictions(
    arch: Architecture, params: Params, masks: Mapping[str, Any], x: Any, batch: int = 2048
) -> np.ndarray:
    """Predicted classes ``[S, n]`` of stacked ``params`` under per-seed ``masks [S, width]``."""
    return np.concatenate([
        np.asarray(_predict(arch, params, dict(masks), jnp.asarray(x[i:i + batch], jnp.float32)))
        for i in range(0, len(x), batch)
    ], axis=1)


def _masks_of(results: Sequence[PruneResult]) -> dict[str, np.ndarray]:
    return {k: np.stack([r.masks[k] for r in results]) for k in results[0].masks}


def _records(arch, data, x_probe, seeds, names, method, t, params, original, current,
             reference, before, times) -> list[dict[str, Any]]:
    """The records (module docstring) of iteration ``t``, one per seed; ``times`` is
    ``(search_s per seed, fine_tune_s, fine_tune_epochs)``."""
    after = predictions(arch, params, current, data.x_test)
    total = sum(arch.widths[k] for k in names)
    rows = []
    for s, seed in enumerate(seeds):
        m = {k: v[s] for k, v in current.items()}
        lc = layerwise_cka(arch, x_probe, seed_slice(params, s), m, seed_slice(original, s))
        kept = {k: int(v.sum()) for k, v in m.items()}
        rows.append({
            "method": method, "iteration": t, "seed": seed, "kept": kept,
            "kept_fraction": sum(kept[k] for k in names) / total,
            "compression_rate": compression_rate(arch, m),
            "test_accuracy": float(np.mean(after[s] == data.y_test)),
            "agreement": float(np.mean(after[s] == reference[s])),
            "test_accuracy_pruned": float(np.mean(before[s] == data.y_test)),
            "agreement_pruned": float(np.mean(before[s] == reference[s])),
            "layer_cka": lc, "readout_cka": lc[arch.readout_layer],
            "search_s": times[0], "fine_tune_s": times[1], "fine_tune_epochs": times[2],
        })
    return rows


def iterative_prune(
    arch: Architecture,
    params: Params,
    data: Splits,
    config: IterativeConfig,
    train: TrainConfig | None = None,
    *,
    seeds: Sequence[int] | None = None,
    masks: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> IterativeResult:
    """Prune, fine-tune, repeat ``config.iterations`` times (module docstring).

    ``params``: one network or ``S`` stacked on a leading axis (e.g. ``TrainResult.params``);
    ``train``: the fine-tuning configuration — its seeds must be the networks' (so each keeps
    its validation split); ``None`` skips fine-tuning. ``seeds`` name the networks in the
    records (default ``train.seeds``, else ``0 … S−1``). ``masks``: starting masks (shared).
    """
    if not is_stacked(arch, params):
        params = jax.tree.map(lambda a: a[None], params)
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    seeds = tuple(int(s) for s in (seeds if seeds is not None else
                                   train.seeds if train is not None else range(n_seeds)))
    if len(seeds) != n_seeds or (train is not None and len(train.seeds) != n_seeds):
        raise ValueError(f"{n_seeds} networks but seeds {seeds}"
                         + ("" if train is None else f" and train.seeds {train.seeds}"))
    names = layers_in_order(arch, config.layers)
    x_search = (data.x_train if config.stimuli_split == "train" else data.x_test)[
        : config.stimuli]
    x_probe = data.x_test[: config.probe]
    val = None if data.x_val is None else (data.x_val, data.y_val)
    current = {k: np.array(v) for k, v in full_masks(arch, n_seeds).items()}
    for k, v in (masks or {}).items():
        current[k] = np.broadcast_to(np.asarray(v, np.float32), current[k].shape).copy()
    original = params
    reference = predictions(arch, params, current, data.x_test)

    def record(t, params, before, search_s, ft_s, epochs):
        return _records(arch, data, x_probe, seeds, names, config.method, t, params, original,
                        current, reference, before, (search_s / n_seeds, ft_s, epochs))

    records = record(0, params, reference, 0.0, 0.0, 0)
    prunes: list[list[PruneResult]] = []
    for t in tqdm(range(1, config.iterations + 1), desc=f"iterative {config.method}",
                  disable=not progress, leave=False):
        t0 = time.perf_counter()
        results = [
            prune_units(config.method, arch, seed_slice(params, s), x_search, layers=names,
                        fraction=config.fraction, masks={k: v[s] for k, v in current.items()},
                        seed=seed * 1000 + t, **dict(config.options))
            for s, seed in enumerate(seeds)
        ]
        search_s = time.perf_counter() - t0
        current = _masks_of(results)
        before = predictions(arch, params, current, data.x_test)
        t0, epochs = time.perf_counter(), 0
        if train is not None:
            tuned = fine_tune(arch, params, current, data.x_train, data.y_train, train, val=val,
                              progress=progress, verbose=False)
            params, epochs = tuned.params, tuned.epochs_run
        records += record(t, params, before, search_s, time.perf_counter() - t0, epochs)
        prunes.append(results)
    return IterativeResult(records, params, current, prunes, config, seeds)


def summarize(
    records: Sequence[Mapping[str, Any]],
    by: Sequence[str] = ("method", "iteration"),
    fields: Sequence[str] = ("kept_fraction", "compression_rate", "test_accuracy", "agreement",
                             "test_accuracy_pruned", "agreement_pruned", "readout_cka"),
) -> list[dict[str, Any]]:
    """Mean and sample sd (over seeds, ``ddof=1``; 0 for one seed) of numeric ``fields`` per
    group of ``by`` keys:
    rows ``{**group, "n": count, "<field>_mean": ..., "<field>_sd": ...}`` in first-seen order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    rows = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["n"] = len(rs)
        for f in fields:
            values = np.asarray([r[f] for r in rs], np.float64)
            sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row[f"{f}_mean"], row[f"{f}_sd"] = float(values.mean()), sd
        rows.append(row)
    return rows


__all__ = [
    "RECORD_FIELDS",
    "IterativeConfig",
    "IterativeResult",
    "Splits",
    "iterative_prune",
    "predictions",
    "summarize",
]
