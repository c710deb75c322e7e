"""Embedding-level alignment: the fit to a human RSM of a readout pruned by PoZ at every
level, against random removal orders (Truong & Hasson's PoZ, a human target)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from jaxprune import geometry
from jaxprune.align.engine import make_target, removal_fits
from jaxprune.search.curves import share_below

POZ_QUANTILES = (0.25, 0.5, 0.75, 0.9)


@dataclass
class AlignmentCurve:
    """``fit[r]``: R² between the human RSM and the readout's Pearson RSM with the ``r``
    highest-PoZ units removed (kept units only), r = 0 … d−1; ``poz [d]`` per unit;
    ``max_kept_poz[r]`` = PoZ of ``order[r]``, the largest PoZ still kept;
    ``p_poz_beats_random[r]`` = fraction of the K random orders whose fit at level r is below
    the PoZ order's by more than ``FIT_TIE`` (a tie is no win); ``random_fits`` summarised by
    its 5 / 50 / 95 % quantiles per level;
    ``poz_quantiles``: PoZ value and level (units whose PoZ exceeds it) per quantile."""

    fit: list[float]
    order: list[int]
    poz: list[float]
    max_kept_poz: list[float]
    best_level: int
    best_fit: float
    unpruned_fit: float
    n_random: int
    p_poz_beats_random: list[float]
    random_quantiles: dict[str, list[float]]
    poz_quantiles: list[dict[str, float]]

    def to_dict(self) -> dict:
        return asdict(self)


def poz_removal_order(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, poz)``: units by decreasing PoZ over the stimuli (``geometry.poz``: entries
    ``<= 0`` count), ties in index order (stable sort)."""
    poz = np.asarray(geometry.poz(np.asarray(features, np.float32), conv=False), np.float64)
    return np.argsort(-poz, kind="stable"), poz


def random_orders(d: int, count: int, seed: int) -> np.ndarray:
    """``[count, d]`` random permutations from ``default_rng([seed, 1])``."""
    rng = np.random.default_rng([seed, 1])
    return np.stack([rng.permutation(d) for _ in range(count)]) if count else np.zeros((0, d),
                                                                                         int)


def alignment_curve(features: np.ndarray, human: np.ndarray, *, n_random: int = 1000,
                    seed: int = 0, batch: int = 64) -> AlignmentCurve:
    """PoZ-order removal curve of ``features [n, d]`` against ``human [n, n]`` and the same
    removals in ``n_random`` random orders: every level of every order in batched calls of
    ``batch`` orders each."""
    features = np.asarray(features, np.float32)
    d = features.shape[1]
    target = make_target(human)
    order, poz = poz_removal_order(features)
    fits = removal_fits(features, target, np.concatenate(
        [order[None], random_orders(d, n_random, seed)]), batch)
    fit, rand = fits[0], fits[1:]
    best = int(np.argmax(fit))
    quant = {f"q{int(q * 100):02d}": np.quantile(rand, q, axis=0).tolist() if n_random else []
             for q in (0.05, 0.5, 0.95)}
    return AlignmentCurve(
        fit=fit.tolist(), order=order.tolist(), poz=poz.tolist(),
        max_kept_poz=poz[order].tolist(), best_level=best, best_fit=float(fit[best]),
        unpruned_fit=float(fit[0]), n_random=int(n_random),
        p_poz_beats_random=share_below(rand, fit).tolist() if n_random else [],
        random_quantiles=quant,
        poz_quantiles=[{"quantile": q, "poz": float(np.quantile(poz, q)),
                        "level": int(np.sum(poz > np.quantile(poz, q)))}
                       for q in POZ_QUANTILES],
    )
