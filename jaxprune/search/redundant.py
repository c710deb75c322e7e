"""What the units removed in PoZ order still carry: how many can go with no measurable change
of the RSM, and how much of the unpruned embedding they explain on their own.

For one layer's post-ReLU features ``F [n, d]`` (n stimuli, d units) of an unpruned network:

1. **Fits along the PoZ order.** Units are ranked by decreasing PoZ (ties: lower index first)
   and removed cumulatively; ``fits[k] = fit(RSM(F), RSM(F[:, kept_k]))`` with the first k
   units of the order removed, ``k = 0 .. d−1`` (a removed unit is absent, see
   :mod:`jaxprune.search.fit`; with ``class_means`` both RSMs are C×C over class means).
2. **Removable count.** ``k*`` = the largest k with ``fits[j] ≥ 1 − ε`` for every ``j ≤ k``:
   the PoZ search's stopping rule (the first removal that falls below ends it) at threshold
   ``1 − ε``.
3. **ε, the RSM's own resampling noise** (class means): over B pairs of independent
   class-stratified bootstrap resamples ``(S_b, S'_b)`` of the stimuli (each class keeps its
   count), ``ε = 1 − mean_b fit(RSM(F over S_b), RSM(F over S'_b))``: how far the unpruned
   network's RSM moves when it is measured on another stimulus sample of the same size. A
   pruned RSM closer to the unpruned one than that is not a measurable change. A fixed ε can
   be given instead (the only choice for per-image RSMs, whose rows change with the sample).
4. **What the removed units explain.** Ridge regression (closed form) from the removed units'
   activations ``X = F[:, removed] [n, k]`` to the whole embedding ``Y = F [n, d]``, with
   k-fold cross-validation: on each training part, with column means ``x̄, ȳ`` and centred
   ``Xc, Yc``, ``W = (XcᵀXc + λI)⁻¹ XcᵀYc``, ``λ = α·tr(XcᵀXc)/k`` with α chosen from
   :data:`ALPHAS` on the training part alone (smallest closed-form leave-one-out error, so a
   nearly silent predictor cannot overfit the held-out fold); held-out prediction
   ``Ŷ = (X − x̄)W + ȳ``; per fold ``R² = 1 − Σ‖Y − Ŷ‖² / Σ‖Y − mean_fold(Y)‖²`` summed over
   the fold's stimuli and the target columns (variance-weighted: the share of the
   embedding's total held-out variance explained). ``r2_full`` targets every unit (the
   removed ones included, which the predictors carry trivially); ``r2_kept`` targets the
   kept units only (the non-trivial part); ``removed_variance_share`` is the removed units'
   share of the total variance of ``F``, for scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import geometry
from jaxprune.search.curves import DEFAULT_LEVELS, removed_counts
from jaxprune.search.fit import METRICS, check_labels, class_average, make_fit


@dataclass
class Redundancy:
    """One network's layer (see the module docstring for the formulas).

    ``order [d]``: units by decreasing ``poz [d]``; ``fits [d]``: fit with the first k units
    of ``order`` removed (``fits[0] = 1``); ``epsilon``: the tolerance, ``epsilon_kind``
    ``"resample"`` (with the B ``resample_fits``) or ``"fixed"``; ``removable``: k*, and
    ``removed_units = order[:k*]``; ``dead_units``: units with PoZ 1 (never active);
    ``r2_full``/``r2_kept``: mean over folds of the held-out R² of the whole / kept embedding
    predicted from the removed units (per fold in ``*_folds``); ``levels``: fractions removed
    with the units removed (``level_removed``), their fit and R²s (``level_*``);
    ``ridge_alphas``: the penalty chosen in each fold for the k* removed units."""

    n: int
    width: int
    order: list[int]
    poz: list[float]
    fits: list[float]
    epsilon: float
    epsilon_kind: str
    resample_fits: list[float]
    removable: int
    removable_fraction: float
    removed_units: list[int]
    removed_max_poz: float | None
    removed_min_poz: float | None
    dead_units: int
    r2_full: float
    r2_full_folds: list[float]
    r2_kept: float
    r2_kept_folds: list[float]
    removed_variance_share: float
    levels: list[float]
    level_removed: list[int]
    level_fit: list[float]
    level_r2_full: list[float]
    level_r2_kept: list[float]
    ridge_alphas: list[float | None]
    options: dict

    def to_dict(self) -> dict:
        return asdict(self)


def unit_order(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order [d], poz [d])``: PoZ of each column of ``features [n, d]`` (the share of exact
    zeros, :func:`jaxprune.geometry.poz`) and the units by decreasing PoZ (stable: among equal
    PoZ the lower index first)."""
    poz = np.asarray(geometry.poz(np.asarray(features, np.float32), conv=False))
    return np.argsort(-poz, kind="stable"), poz


def prefix_masks(order: np.ndarray, counts: Sequence[int] | None = None) -> np.ndarray:
    """``[len(counts), d]`` float32 unit masks: row i keeps every unit but ``order[:counts[i]]``
    (default counts ``0 .. d−1``)."""
    d = len(order)
    counts = range(d) if counts is None else counts
    masks = np.ones((len(counts), d), np.float32)
    for i, k in enumerate(counts):
        masks[i, order[:k]] = 0.0
    return masks


@partial(jax.jit, static_argnames="batch")
def _masked_fits(fit, features, masks, batch: int):
    return jax.lax.map(lambda m: fit(features, m), masks, batch_size=batch)


def _rsm_features(features: np.ndarray, labels: np.ndarray | None, class_means: bool):
    """The rows the RSM is taken over: ``features [n, d]``, or their class means ``[C, d]``."""
    f = np.asarray(features, np.float64)
    if class_means:
        f = class_average(check_labels(labels, len(f))).astype(np.float64) @ f
    return f.astype(np.float32)


def removal_fits(features: np.ndarray, order: np.ndarray, *, labels: np.ndarray | None = None,
                 class_means: bool = False, metric: str = "r2", rsm_method: str = "pearson",
                 batch: int = 64) -> np.ndarray:
    """``fits [d]``: the fit of ``RSM(features[:, kept])`` to ``RSM(features)`` with the first
    k units of ``order`` removed, ``k = 0 .. d−1`` (``features [n, d]``; with ``class_means``
    both RSMs are over the class means of ``labels [n]``), all in one vmapped call."""
    f = _rsm_features(features, labels, class_means)
    fit = make_fit(jnp.asarray(f), metric=metric, rsm_method=rsm_method)
    masks = prefix_masks(np.asarray(order))
    return np.asarray(_masked_fits(fit, jnp.asarray(f), jnp.asarray(masks), batch), np.float64)


def removable_count(fits: Sequence[float], epsilon: float) -> int:
    """k*: the largest k with ``fits[j] ≥ 1 − epsilon`` for all ``j ≤ k`` (``fits[k]``: fit
    with k units removed; 0 when already ``fits[1]`` is below)."""
    ok = np.asarray(fits, np.float64) >= 1.0 - epsilon
    ok[0] = True  # nothing removed: the unpruned network itself
    return int(np.argmin(ok)) - 1 if not ok.all() else len(ok) - 1


def _fit_pairs(a: jax.Array, b: jax.Array, metric: str, rsm_method: str) -> jax.Array:
    """Fit between the RSMs of row sets ``a, b [..., m, d]`` (the :class:`Fit` metrics)."""
    ra, rb = geometry.rsm(a, method=rsm_method), geometry.rsm(b, method=rsm_method)
    if metric == "spearman":
        return geometry.rsa(ra, rb, method="spearman")
    return geometry.rsa(ra, rb, squared=metric == "r2")


def resample_epsilon(features: np.ndarray, labels: np.ndarray, *, n_boot: int = 100,
                     seed: int = 0, metric: str = "r2",
                     rsm_method: str = "pearson") -> tuple[float, np.ndarray]:
    """``(ε, fits [n_boot])``: ``fits[b]`` = fit between the class-mean RSMs of two independent
    class-stratified bootstrap resamples of the stimuli (``features [n, d]``, ``labels [n]``),
    ``ε = 1 − mean(fits)``. Resamples come from ``numpy.random.default_rng(seed)``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    f = np.asarray(features, np.float64)
    labels = check_labels(labels, len(f))
    class_average(labels)  # every class present, at least 3
    rng = np.random.default_rng(seed)
    means = []
    for c in range(int(labels.max()) + 1):
        rows = f[labels == c]
        counts = rng.multinomial(len(rows), np.full(len(rows), 1.0 / len(rows)),
                                 size=2 * n_boot)
        means.append(counts @ rows / len(rows))  # [2B, d]
    m = jnp.asarray(np.stack(means, axis=1), jnp.float32)  # [2B, C, d]
    fits = np.asarray(_fit_pairs(m[:n_boot], m[n_boot:], metric, rsm_method), np.float64)
    return float(1.0 - fits.mean()), fits


def fold_ids(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """``[n]`` fold of each stimulus: a random permutation (``default_rng(seed)``) cut into
    ``folds`` parts of sizes differing by at most one."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n // 2:
        raise ValueError(f"folds must be an integer in [2, n/2] = [2, {n // 2}], got {folds!r}")
    ids = np.empty(n, np.int64)
    for f, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        ids[part] = f
    return ids


#: Ridge penalties tried, relative to the mean eigenvalue of ``XcᵀXc`` (``λ = α·tr(XcᵀXc)/k``).
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _ridge_fit(xc: np.ndarray, yc: np.ndarray, alphas: Sequence[float]):
    """``(W [k, m], α)`` for centred ``xc [n, k]``, ``yc [n, m]``: the penalty of ``alphas``
    with the smallest leave-one-out error ``Σ_i ‖(yc_i − ŷc_i) / (1 − h_ii)‖²`` (hat matrix
    ``H = Xc(XcᵀXc + λI)⁻¹Xcᵀ``, from the thin SVD ``Xc = U S Vᵀ``; among errors equal to a
    relative 10⁻⁹ the largest α, e.g. for a unit active on one training image, whose
    leave-one-out error no penalty changes)."""
    u, sv, vt = np.linalg.svd(xc, full_matrices=False)
    s2 = sv * sv
    uy = u.T @ yc
    scale = s2.sum() / xc.shape[1]
    best = None
    for alpha in sorted(alphas, reverse=True):  # among equal errors the strongest penalty
        shrink = s2 / (s2 + alpha * scale)
        h = (u * u) @ shrink
        with np.errstate(divide="ignore", invalid="ignore"):
            loo = (yc - u @ (shrink[:, None] * uy)) / (1.0 - h)[:, None]
        err = float(np.sum(loo * loo))
        err = err if np.isfinite(err) else np.inf
        if best is None or err < best[0] * (1.0 - 1e-9):
            best = (err, alpha)
    alpha = best[1]
    w = vt.T @ ((sv / (s2 + alpha * scale))[:, None] * uy)
    return w, alpha


def ridge_oof(x: np.ndarray, y: np.ndarray, ids: np.ndarray,
              alphas: Sequence[float] = ALPHAS) -> tuple[np.ndarray, list[float | None]]:
    """Out-of-fold ridge predictions ``Ŷ [n, m]`` of ``y [n, m]`` from ``x [n, k]`` and the
    penalty chosen per fold: the rows of fold f are predicted by the model fitted on the other
    folds (centred there, penalty picked there by leave-one-out, :func:`_ridge_fit`); ``k = 0``
    or constant ``x``: the training mean (α None). float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    pred, chosen = np.empty_like(y), []
    for f in np.unique(ids):
        tr, te = ids != f, ids == f
        mx, my = x[tr].mean(0), y[tr].mean(0)
        xc = x[tr] - mx
        if x.shape[1] == 0 or not np.any(xc):
            pred[te] = my
            chosen.append(None)
            continue
        w, alpha = _ridge_fit(xc, y[tr] - my, alphas)
        pred[te] = (x[te] - mx) @ w + my
        chosen.append(alpha)
    return pred, chosen


def fold_r2(y: np.ndarray, pred: np.ndarray, ids: np.ndarray,
            columns: np.ndarray | None = None) -> np.ndarray:
    """``[folds]`` held-out R² per fold, ``1 − Σ(y − ŷ)² / Σ(y − mean_fold(y))²`` over the
    fold's rows and ``columns`` (default all) of ``y, pred [n, m]``."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    if columns is not None:
        y, pred = y[:, columns], pred[:, columns]
    out = []
    for f in np.unique(ids):
        yt, pt = y[ids == f], pred[ids == f]
        total = np.sum((yt - yt.mean(0)) ** 2)
        if total == 0.0:
            raise ValueError(f"fold {f}: the target is constant on its held-out stimuli, so "
                             "R² is undefined; use more stimuli or fewer folds")
        out.append(1.0 - np.sum((yt - pt) ** 2) / total)
    return np.asarray(out)


def explained_by_removed(features: np.ndarray, removed: np.ndarray, ids: np.ndarray,
                         alphas: Sequence[float] = ALPHAS
                         ) -> tuple[np.ndarray, np.ndarray, list[float | None]]:
    """``(r2_full [folds], r2_kept [folds], α per fold)``: held-out R² of the whole embedding
    ``features [n, d]`` and of its kept columns, predicted from the ``removed`` columns (one
    fit serves both: the kept columns are a subset of the targets)."""
    f = np.asarray(features, np.float64)
    removed = np.asarray(removed, np.int64)
    kept = np.setdiff1d(np.arange(f.shape[1]), removed)
    pred, chosen = ridge_oof(f[:, removed], f, ids, alphas)
    return fold_r2(f, pred, ids), fold_r2(f, pred, ids, kept), chosen


def _check_options(features, metric, epsilon, alphas, class_means) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] < 2 or f.shape[0] < 4:
        raise ValueError(f"features must be [n, d] with n >= 4 and d >= 2, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features hold NaN or Inf")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    if epsilon is not None and not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
    if epsilon is None and not class_means:
        raise ValueError("the resampling ε needs class means (class_means=True); for "
                         "per-image RSMs give a fixed epsilon")
    if not alphas or not all(a > 0 for a in alphas):
        raise ValueError(f"alphas (ridge penalties) must be positive, got {list(alphas)}")
    return f.reshape(len(f), -1)


def redundancy(
    features: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_means: bool = True,
    epsilon: float | None = None,
    n_boot: int = 100,
    folds: int = 5,
    alphas: Sequence[float] = ALPHAS,
    levels: Sequence[float] = DEFAULT_LEVELS,
    seed: int = 0,
    metric: str = "r2",
    rsm_method: str = "pearson",
) -> Redundancy:
    """All of the module docstring for one layer's ``features [n, d]`` (``labels [n]`` for
    class means): the PoZ-order fits, ε (resampled with ``n_boot`` pairs, or the fixed
    ``epsilon``), k*, and the cross-validated R² (``folds`` folds, penalty from ``alphas``) of the
    embedding from the k* removed units and from the units removed at each of ``levels``
    (fractions removed, ``floor(f·d)`` units). ``seed`` draws the resamples and the folds."""
    f = _check_options(features, metric, epsilon, alphas, class_means)
    order, poz = unit_order(f)
    fits = removal_fits(f, order, labels=labels, class_means=class_means, metric=metric,
                        rsm_method=rsm_method)
    if epsilon is None:
        eps, boot = resample_epsilon(f, labels, n_boot=n_boot, seed=seed, metric=metric,
                                     rsm_method=rsm_method)
    else:
        eps, boot = float(epsilon), np.zeros(0)
    k = removable_count(fits, eps)
    ids = fold_ids(len(f), folds, seed)
    r2_full, r2_kept, chosen = explained_by_removed(f, order[:k], ids, alphas)
    level_values, level_removed, _ = removed_counts(f.shape[1], levels)
    per_level = [explained_by_removed(f, order[:j], ids, alphas) for j in level_removed]
    total = f.astype(np.float64).var(0)
    return Redundancy(
        n=len(f), width=f.shape[1], order=order.tolist(), poz=poz.tolist(), fits=fits.tolist(),
        epsilon=eps, epsilon_kind="fixed" if epsilon is not None else "resample",
        resample_fits=boot.tolist(), removable=k, removable_fraction=k / f.shape[1],
        removed_units=order[:k].tolist(),
        removed_max_poz=float(poz[order[:k]].max()) if k else None,
        removed_min_poz=float(poz[order[:k]].min()) if k else None,
        dead_units=int(np.sum(poz == 1.0)),
        r2_full=float(r2_full.mean()), r2_full_folds=r2_full.tolist(),
        r2_kept=float(r2_kept.mean()), r2_kept_folds=r2_kept.tolist(),
        removed_variance_share=float(total[order[:k]].sum() / total.sum()),
        levels=level_values, level_removed=level_removed,
        level_fit=[float(fits[j]) for j in level_removed],
        level_r2_full=[float(a.mean()) for a, _, _ in per_level],
        level_r2_kept=[float(b.mean()) for _, b, _ in per_level],
        ridge_alphas=chosen,
        options={"class_means": class_means, "n_boot": n_boot, "folds": folds,
                 "alphas": list(alphas),
                 "seed": seed, "metric": metric, "rsm_method": rsm_method,
                 "fixed_epsilon": epsilon},
    )


@partial(jax.jit, static_argnums=(0, 3))
def _layer_forward(arch, params, x, layer: str):
    from jaxprune import models

    return models.apply(arch, params, None, x)[1][layer]


def layer_features(arch, params, x: np.ndarray, layer: str | None = None,
                   batch: int = 500) -> np.ndarray:
    """Post-ReLU activations of ``layer`` (default: the readout) of one unmasked network,
    ``[n, d]`` flattened, ``batch`` stimuli per forward pass (the last batch zero-padded, so
    one program serves every batch)."""
    layer = arch.readout_layer if layer is None else layer
    arch.index(layer)
    x = np.asarray(x, np.float32)
    n = len(x)
    pad = (-n) % batch if n > batch else 0
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)]) if pad else x
    step = min(batch, n)
    parts = [np.asarray(_layer_forward(arch, params, jnp.asarray(xp[i:i + step]), layer))
             for i in range(0, len(xp), step)]
    out = np.concatenate(parts)[:n]
    return out.reshape(n, -1)
