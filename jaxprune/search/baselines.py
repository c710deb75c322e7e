"""Baselines for CKA pruning, through the same interface and :class:`PruneResult`.

Each ranks the kept units of a layer and removes the first ``round(fraction · kept)`` of them
(at most ``kept − 1``), layer by layer (bottom-up by default, so a layer's ranking sees the
layers pruned before it):

- ``"l1"``: L1 norm of a unit's incoming weights ``Σ |W[..., i, u]|`` over the kept inputs
  (removed units of the layer below no longer connect), lowest first (Li et al. 2017);
- ``"random"``: a uniformly random order, from ``default_rng([seed, layer index])``;
- ``"poz"``: Percentage of Zeros on the stimuli ``x`` (:func:`jaxprune.geometry.poz`) of the
  network as pruned so far, highest first.

Ties go to the lowest index. A layer's trace lists its kept units in ranking order with the
criterion of each (none for random) and ``removed`` = how many of them went. With stimuli,
``final_score`` is the linear CKA of the readout, original vs pruned, as for CKA pruning.
:func:`prune_units` dispatches to these and to :func:`jaxprune.search.cka.cka_prune`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxprune import geometry
from jaxprune.masks import compression_rate
from jaxprune.models import Architecture, Params
from jaxprune.models.network import activations
from jaxprune.search._common import device_masks, layers_in_order, stackable, start_masks
from jaxprune.search.cka import check_fraction, cka_prune, n_to_remove, stimuli
from jaxprune.search.result import LayerTrace, PruneResult

METHODS = ("cka", "l1", "random", "poz")

#: ``rank(layer, masks) -> (order of the kept units, criterion per unit [width] or None)``
Ranking = Callable[[str, dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]]


def incoming_l1(
    arch: Architecture, params: Params, layer: str, masks: Mapping[str, Any] | None = None
) -> np.ndarray:
    """``[width]``: the L1 norm of each unit's incoming weights from the kept units of the
    layer below (all inputs for the first layer); the bias is not counted."""
    index = arch.index(layer)
    w = np.abs(np.asarray(params[layer]["kernel"], np.float64))  # [in, out] or HWIO
    width = w.shape[-1]
    if index > 0 and masks is not None and arch.layers[index - 1].name in masks:
        keep = np.asarray(masks[arch.layers[index - 1].name], np.float64)
        if w.ndim == 4:
            w = w * keep.reshape(1, 1, -1, 1)
        else:  # a dense layer after a flattened HWC map: inputs are (position, channel)
            w = (w.reshape(-1, keep.size, width) * keep.reshape(1, -1, 1)).reshape(-1, width)
    return w.reshape(-1, width).sum(axis=0)


def _kept(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask > 0)


def _ascending(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    kept = _kept(mask)
    return kept[np.argsort(values[kept], kind="stable")]


def _ranked_prune(
    method: str,
    rank: Ranking,
    arch: Architecture,
    params: Params | None,
    x: Any,
    *,
    layers: str | Sequence[str] | None,
    fraction: float,
    masks: Mapping[str, Any] | None,
    direction: str,
    seed: int | None,
    progress: bool,
    note: str,
    config: dict[str, Any],
) -> PruneResult:
    t0 = time.perf_counter()
    check_fraction(fraction)
    names = layers_in_order(arch, layers, direction)
    current = start_masks(arch, masks)
    start = {k: v.copy() for k, v in current.items()}
    trace = []
    for name in tqdm(names, desc=f"{method} layers", disable=not progress, leave=False):
        order, values = rank(name, current)
        k = n_to_remove(int(current[name].sum()), fraction)
        current[name][order[:k]] = 0.0
        scores = [] if values is None else [float(v) for v in values[order]]
        trace.append(LayerTrace(name, [int(u) for u in order], scores, k, note))
    final = None
    if x is not None and params is not None:
        x = stimuli(arch, x)
        readout = arch.readout_layer
        before = activations(arch, params, device_masks(start, x.dtype), x)[readout]
        after = activations(arch, params, device_masks(current, x.dtype), x)[readout]
        final = float(geometry.cka(before, after))
    return PruneResult(
        method=method, masks=current, widths=arch.widths,
        compression_rate=compression_rate(arch, current), trace=trace, direction=direction,
        baseline_score=None if final is None else 1.0, final_score=final, seed=seed,
        wall_time_s=time.perf_counter() - t0,
        config={"fraction": fraction, "layers": names, **config},
    )


@stackable
def l1_prune(
    arch: Architecture,
    params: Params,
    x: Any = None,
    *,
    layers: str | Sequence[str] | None = None,
    fraction: float = 0.5,
    masks: Mapping[str, Any] | None = None,
    direction: str = "bottom-up",
    seed: int | None = None,
    progress: bool = False,
) -> PruneResult:
    """Remove the units with the smallest L1 norm of incoming weights (:func:`incoming_l1`);
    ``x`` (optional) only serves the readout CKA reported as ``final_score``."""

    def rank(name, current):
        values = incoming_l1(arch, params, name, current)
        return _ascending(values, current[name]), values

    return _ranked_prune("l1", rank, arch, params, x, layers=layers, fraction=fraction,
                         masks=masks, direction=direction, seed=seed, progress=progress,
                         note="scores: L1 norm of the incoming weights (lowest removed first)",
                         config={})


@stackable
def random_prune(
    arch: Architecture,
    params: Params | None = None,
    x: Any = None,
    *,
    layers: str | Sequence[str] | None = None,
    fraction: float = 0.5,
    masks: Mapping[str, Any] | None = None,
    direction: str = "bottom-up",
    seed: int | None = 0,
    progress: bool = False,
) -> PruneResult:
    """Remove uniformly random units (``default_rng([seed, layer index])`` per layer)."""
    seed = 0 if seed is None else int(seed)

    def rank(name, current):
        rng = np.random.default_rng([seed, arch.index(name)])
        return rng.permutation(_kept(current[name])), None

    return _ranked_prune("random", rank, arch, params, x, layers=layers, fraction=fraction,
                         masks=masks, direction=direction, seed=seed, progress=progress,
                         note="random order", config={})


@stackable
def poz_prune(
    arch: Architecture,
    params: Params,
    x: Any,
    *,
    layers: str | Sequence[str] | None = None,
    fraction: float = 0.5,
    masks: Mapping[str, Any] | None = None,
    direction: str = "bottom-up",
    seed: int | None = None,
    eps: float = 0.0,
    progress: bool = False,
) -> PruneResult:
    """Remove the units with the highest Percentage of Zeros (``acts <= eps``) on ``x``."""
    if x is None:
        raise ValueError("PoZ pruning needs stimuli x")
    xs = stimuli(arch, x, 1)

    def rank(name, current):
        acts = activations(arch, params, device_masks(current, xs.dtype), xs, flat=False)[name]
        values = np.asarray(geometry.poz(acts, eps=eps, conv=acts.ndim == 4), np.float64)
        return _ascending(-values, current[name]), values

    return _ranked_prune("poz", rank, arch, params, xs, layers=layers, fraction=fraction,
                         masks=masks, direction=direction, seed=seed, progress=progress,
                         note="scores: PoZ (highest removed first)",
                         config={"eps": eps, "stimuli": int(xs.shape[0])})


def prune_units(
    method: str, arch: Architecture, params: Params, x: Any = None, **kwargs
) -> PruneResult:
    """Prune with ``method`` in :data:`METHODS`: :func:`~jaxprune.search.cka.cka_prune`,
    :func:`l1_prune`, :func:`random_prune` or :func:`poz_prune`; ``kwargs`` are that
    function's (``layers``, ``fraction``, ``masks``, ``seed``, ``stacked``, ``progress``...)."""
    functions = {"cka": cka_prune, "l1": l1_prune, "random": random_prune, "poz": poz_prune}
    if method not in functions:
        raise ValueError(f"unknown pruning method {method!r}; expected one of {METHODS}")
    return functions[method](arch, params, x, **kwargs)


__all__ = [
    "METHODS",
    "incoming_l1",
    "l1_prune",
    "poz_prune",
    "prune_units",
    "random_prune",
]
