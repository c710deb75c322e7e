"""PoZ fraction curves: the fit after removing 10 %, 20 %, … of one layer by PoZ rank, against
the same removals in many random orders (one batched call)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.masks import full_masks
from jaxprune.models import Architecture, Params, linear, transition
from jaxprune.models.network import channel_last
from jaxprune.search.fit import Fit, make_fit
from jaxprune.search.poz import (
    PoZConfig,
    check_inputs,
    poz_order,
    preactivations,
    readout_from,
)

DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class FractionCurve:
    """``fit[i]``: fit to the target with ``removed[i]`` units of ``layer`` removed in PoZ
    order; ``max_kept_poz[i]``: the largest PoZ among the units still kept; ``random_fits``
    ``[K, levels]``: the same removals in K random orders; ``p_poz_beats_random[i]``: the
    fraction of random orders whose fit is below the PoZ order's."""

    layer: str
    levels: list[float]
    removed: list[int]
    fit: list[float]
    max_kept_poz: list[float]
    random_fits: list[list[float]]
    p_poz_beats_random: list[float]
    baseline_fit: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@partial(jax.jit, static_argnums=(0, 1, 5))
def _fits_of_masks(arch: Architecture, index: int, params, a, fit: Fit, batch: int, masks,
                   layer_masks):
    """Fit of the network with each row of ``layer_masks [M, width]`` applied to layer
    ``index`` (other layers unmasked), evaluated ``batch`` masks at a time."""
    readout = arch.index(arch.readout_layer)

    def one(m):
        am = a * channel_last(m, a.ndim)
        if index == readout:
            return fit(am.reshape(am.shape[0], -1))
        z = linear(arch, params, index + 1, transition(arch, index + 1, am))
        return fit(readout_from(arch, params, masks, index + 1, z))

    return jax.lax.map(one, layer_masks, batch_size=batch)


def fraction_curve(
    arch: Architecture,
    params: Params,
    x: jax.Array,
    layer: str,
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    n_random: int = 100,
    seed: int = 0,
    target_rsm: np.ndarray | None = None,
    metric: str = "r2",
    rsm_method: str = "pearson",
    batch: int = 64,
) -> FractionCurve:
    """PoZ-order and random-order fraction curves of one layer of one network.

    At level ``f`` the first ``floor(f · width)`` units (at most ``width − 1``) are removed.
    """
    check_inputs(arch, x, PoZConfig(layers=(layer,)), target_rsm)
    if any(not 0.0 <= f < 1.0 for f in levels):
        raise ValueError(f"levels must lie in [0, 1), got {list(levels)}")
    x = jnp.asarray(x, jnp.float32)
    index, width = arch.index(layer), arch.layers[arch.index(layer)].width
    masks = full_masks(arch)
    pre = jax.jit(preactivations, static_argnums=0)(arch, params, masks, x)
    a = jax.nn.relu(pre[index])
    readout_feats = jax.nn.relu(pre[-1]).reshape(x.shape[0], -1)
    if target_rsm is None:
        fit = make_fit(readout_feats, metric=metric, rsm_method=rsm_method)
    else:
        fit = make_fit(target_rsm=target_rsm, metric=metric, rsm_method=rsm_method)
    order, poz = poz_order(a)
    removed = [min(int(np.floor(f * width + 1e-9)), width - 1) for f in levels]

    def masks_for(perm):
        m = np.ones((len(removed), width), np.float32)
        for i, k in enumerate(removed):
            m[i, perm[:k]] = 0.0
        return m

    rng = np.random.default_rng(seed)
    all_masks = np.concatenate(
        [masks_for(order)] + [masks_for(rng.permutation(width)) for _ in range(n_random)])
    fits = np.asarray(_fits_of_masks(arch, index, params, a, fit, batch, masks,
                                     jnp.asarray(all_masks)))
    poz_fits, random_fits = fits[: len(removed)], fits[len(removed):].reshape(n_random, -1)
    return FractionCurve(
        layer=layer,
        levels=[float(f) for f in levels],
        removed=removed,
        fit=poz_fits.tolist(),
        max_kept_poz=[float(poz[order[k]]) for k in removed],
        random_fits=random_fits.tolist(),
        p_poz_beats_random=np.mean(random_fits < poz_fits[None, :], axis=0).tolist()
        if n_random else [],
        baseline_fit=float(fit(readout_feats)),
    )
