"""PoZ fraction curves: the fit after removing a share of one layer's units by PoZ rank, against
the same removals in many random orders — every level, order and seed in one batched call.

Levels are given either as fractions **removed** (``levels``: ``floor(f·width)`` units removed,
at most ``width − 1``) or, as the fraction-curve paper's code did, as fractions **kept**
(``keep``: ``int(p·width)`` units kept, at least one). Removed units are absent from the fit
(:mod:`jaxprune.search.fit`); ``class_means`` averages each class's readout features first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.masks import full_masks
from jaxprune.models import Architecture, Params, linear, transition
from jaxprune.models.network import channel_last, preactivations, readout_from
from jaxprune.search._common import layer_poz, poz_ranking
from jaxprune.search.fit import Fit, class_average, make_fit
from jaxprune.search.poz import PoZConfig, check_inputs
from jaxprune.sharding import shard_seeds

DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class FractionCurve:
    """One network's curve. ``fit[i]``: fit to the target with ``removed[i]`` units of
    ``layer`` removed in PoZ order; ``max_kept_poz[i]``: the largest PoZ among the units still
    kept; ``random_fits [K, levels]``: the same removals in K random orders;
    ``p_poz_beats_random[i]``: the fraction of random orders whose fit is below the PoZ
    order's by more than :data:`FIT_TIE` (:func:`share_below`; empty without random orders).
    ``levels`` are fractions removed, or kept when ``level_kind == "kept"``."""

    layer: str
    levels: list[float]
    removed: list[int]
    fit: list[float]
    max_kept_poz: list[float]
    random_fits: list[list[float]]
    p_poz_beats_random: list[float]
    baseline_fit: float
    level_kind: str = "removed"
    seed: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CurveSet:
    """Curves of S seeds of one layer with per-level mean and sample sd (ddof=1) over seeds."""

    curves: list[FractionCurve]
    summary: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"curves": [c.to_dict() for c in self.curves], "summary": self.summary}


def removed_counts(width: int, levels: Sequence[float] | None = None,
                   keep: Sequence[float] | None = None) -> tuple[list[float], list[int], str]:
    """``(levels, units removed per level, level kind)`` for a layer of ``width`` units."""
    if levels is not None and keep is not None:
        raise ValueError("give levels (fractions removed) or keep (fractions kept), not both")
    if keep is not None:
        bad = [p for p in keep if not 0.0 < p <= 1.0]
        if bad or not keep:
            raise ValueError(f"keep fractions must lie in (0, 1]; got {list(keep)}")
        return [float(p) for p in keep], [width - max(1, int(width * p)) for p in keep], "kept"
    levels = DEFAULT_LEVELS if levels is None else levels
    if not levels or any(not 0.0 <= f < 1.0 for f in levels):
        raise ValueError(f"levels (fractions removed) must lie in [0, 1); got {list(levels)}")
    removed = [min(int(np.floor(f * width + 1e-9)), width - 1) for f in levels]
    return [float(f) for f in levels], removed, "removed"


@partial(jax.jit, static_argnums=(0, 1, 5))
def _fits_of_masks(arch: Architecture, index: int, params, a, fit: Fit, batch: int, masks,
                   layer_masks):
    """Fit of the network with each row of ``layer_masks [M, width]`` applied to layer
    ``index`` (other layers unmasked), evaluated ``batch`` masks at a time. One seed."""
    readout = arch.index(arch.readout_layer)
    kept = masks[arch.readout_layer]

    def one(m):
        am = a * channel_last(m, a.ndim)
        if index == readout:
            return fit(am, m)
        z = linear(arch, params, index + 1, transition(arch, index + 1, am))
        return fit(readout_from(arch, params, masks, index + 1, z), kept)

    return jax.lax.map(one, layer_masks, batch_size=batch)


@partial(jax.jit, static_argnums=(0, 1, 5))
def _seed_fits(arch, index, params, a, fit, batch, masks, layer_masks):
    """:func:`_fits_of_masks` for stacked seeds (``params``, ``a``, ``fit``, ``layer_masks``
    have a leading seed axis)."""
    fn = lambda p, aa, f, lm: _fits_of_masks(arch, index, p, aa, f, batch, masks, lm)  # noqa: E731
    return jax.vmap(fn)(params, a, fit, layer_masks)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _setup(arch, params, x, target_rsm, metric, rsm_method, average):
    """Per seed: all pre-activations and the :class:`Fit` against the target."""
    masks = full_masks(arch)

    def one(p):
        pre = preactivations(arch, p, masks, x)
        feats = jax.nn.relu(pre[-1])
        options = dict(metric=metric, rsm_method=rsm_method, average=average)
        fit = make_fit(target_rsm=target_rsm, **options) if target_rsm is not None \
            else make_fit(feats, **options)
        return pre, fit, fit(feats, masks[arch.readout_layer])

    return jax.vmap(one)(params)


def _removal_masks(width: int, removed: list[int], order: np.ndarray, n_random: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``[(1 + K)·levels, width]``: the PoZ order's removals, then K random orders'."""
    perms = [order] + [rng.permutation(width) for _ in range(n_random)]
    m = np.ones((len(perms), len(removed), width), np.float32)
    for i, perm in enumerate(perms):
        for j, k in enumerate(removed):
            m[i, j, perm[:k]] = 0.0
    return m.reshape(-1, width)


def fraction_curve(
    arch: Architecture,
    params: Params,
    x: jax.Array,
    layer: str,
    *,
    levels: Sequence[float] | None = None,
    keep: Sequence[float] | None = None,
    n_random: int = 100,
    seed: int = 0,
    target_rsm: np.ndarray | None = None,
    metric: str = "r2",
    rsm_method: str = "pearson",
    class_means: bool = False,
    labels: np.ndarray | None = None,
    batch: int = 64,
    stacked: bool = False,
    sharding: str | None = None,
) -> FractionCurve | CurveSet:
    """PoZ-order and random-order fraction curves of one layer.

    ``params`` of one network, or (``stacked=True``) of S networks on a leading seed axis:
    then every seed's curve comes from the same call and a :class:`CurveSet` with per-level
    mean ± sd is returned. Random orders come from ``default_rng([seed, s])`` for seed s.
    ``labels [n]`` with ``class_means``: the classes whose mean features make the RSM.
    ``sharding="seeds"``: the seed axis laid over the local devices (:mod:`jaxprune.sharding`),
    with the same curves.
    """
    config = PoZConfig(layers=(layer,), metric=metric, rsm_method=rsm_method,
                       class_means=class_means)
    check_inputs(arch, x, config, target_rsm, labels)
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be a non-negative integer, got {n_random!r}")
    index, width = arch.index(layer), arch.layers[arch.index(layer)].width
    level_values, removed, kind = removed_counts(width, levels, keep)
    average = jnp.asarray(class_average(labels)) if class_means else None
    x = jnp.asarray(x, jnp.float32)
    if sharding not in (None, "seeds"):
        raise ValueError(f"fraction curves shard their seeds only: sharding must be 'seeds' or "
                         f"None, got {sharding!r}")
    if not stacked:
        params = jax.tree.map(lambda p: p[None], params)
    seeds = jax.tree.leaves(params)[0].shape[0]
    if sharding == "seeds":  # padded copies of the last seed, dropped below
        params, seeds = shard_seeds(params)
    target = None if target_rsm is None else jnp.asarray(target_rsm, jnp.float32)
    pre, fit, baseline = _setup(arch, params, x, target, metric, rsm_method, average)
    a = jax.nn.relu(pre[index])
    orders = poz_ranking(layer_poz((pre[index],), 0.0)[0])
    layer_masks = np.stack([
        _removal_masks(width, removed, orders[min(s, seeds - 1)][0], n_random,
                       np.random.default_rng([seed, min(s, seeds - 1)]))
        for s in range(len(orders))])
    fits = np.asarray(_seed_fits(arch, index, params, a, fit, batch, full_masks(arch),
                                 jnp.asarray(layer_masks)))
    curves = [_curve(layer, level_values, removed, kind, fits[s], orders[s], float(baseline[s]),
                     n_random, s) for s in range(seeds)]
    return CurveSet(curves, summarize(curves)) if stacked else curves[0]


#: Fits closer than this are ties, not wins: removing units the stimuli cannot tell apart (dead
#: units) gives the same fit in any order, up to float32 rounding (~1e-7) that depends on the
#: reduction order the compiler picked.
FIT_TIE = 1e-6


def share_below(random_fits: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """Per level, the fraction of random orders ``random_fits [K, L]`` whose fit is below
    ``fits [L]`` by more than :data:`FIT_TIE`: P(the PoZ order beats a random one)."""
    return np.mean(np.asarray(random_fits) < np.asarray(fits)[None] - FIT_TIE, axis=0)


def _curve(layer, levels, removed, kind, fits, order_poz, baseline, n_random, s):
    order, poz = order_poz
    poz_fits, random_fits = fits[: len(removed)], fits[len(removed):].reshape(n_random,
                                                                              len(removed))
    return FractionCurve(
        layer=layer, levels=levels, removed=removed, fit=poz_fits.tolist(),
        max_kept_poz=[float(np.max(poz[order[k:]])) for k in removed],
        random_fits=random_fits.tolist(),
        p_poz_beats_random=share_below(random_fits, poz_fits).tolist() if n_random else [],
        baseline_fit=baseline, level_kind=kind, seed=s,
    )


def summarize(curves: Sequence[FractionCurve]) -> dict[str, list[float]]:
    """Per level: mean and sample sd (ddof=1; 0 for one seed) over seeds of the PoZ-order fit
    and the largest kept PoZ, and (with random orders) the fraction of seeds whose PoZ order
    beats the median random order (by more than :data:`FIT_TIE`)."""
    def mean_sd(key):
        v = np.asarray([getattr(c, key) for c in curves], np.float64)
        sd = v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros(v.shape[1])
        return v.mean(axis=0).tolist(), sd.tolist()

    out = {"levels": list(curves[0].levels), "removed": list(curves[0].removed)}
    out["fit_mean"], out["fit_sd"] = mean_sd("fit")
    out["max_kept_poz_mean"], out["max_kept_poz_sd"] = mean_sd("max_kept_poz")
    if curves[0].random_fits:
        beats = [np.asarray(c.fit) > np.median(np.asarray(c.random_fits), axis=0) + FIT_TIE
                 for c in curves]
        out["fraction_of_seeds_poz_beats_median_random"] = np.mean(beats, axis=0).tolist()
    return out

