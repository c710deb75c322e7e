"""Representational similarity matrices (RSMs) from features."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.geometry._core import (
    Array,
    as_float,
    center,
    check_features,
    check_method,
    constant_rows,
    einsum,
    finite,
    is_traced,
    ranks,
    report,
    safe_divide,
)

RSM_METHODS = ("pearson", "pearson_sq", "spearman", "cosine", "euclidean")


def count_constant_rows(x: Any) -> Array:
    """Number of stimuli whose features are all equal: ``x [..., n, d] → int32 [...]``.

    These are the rows with no Pearson correlation (e.g. an image whose remaining features are
    all zero after pruning). Use it under ``jit``, where no warning can be emitted."""
    x = as_float(x)
    constant = jnp.max(x, axis=-1) == jnp.min(x, axis=-1)
    return jnp.sum(constant.astype(jnp.int32), axis=-1)


def feature_mask(mask: Array | None, d: int) -> Array | None:
    """A unit mask ``[..., c]`` as a feature mask ``[..., d]`` over ``d = P·c`` flattened HWC
    features (the channel is the fastest axis, so the mask tiles over the P positions)."""
    if mask is None:
        return None
    c = mask.shape[-1]
    if d % c:
        raise ValueError(f"a mask of {c} units does not tile {d} features")
    return jnp.tile(mask, d // c) if d != c else mask


def _expand(mask: Array, x: Array) -> Array:
    """A feature mask ``[..., d]`` broadcast to the features ``x [..., n, d]`` (x's dtype)."""
    return jnp.broadcast_to(mask[..., None, :], x.shape).astype(x.dtype)


def _standardize(x: Array, mask: Array | None = None) -> Array:
    """Rows of ``x [..., n, d]`` standardized over the kept features (``mask [..., d]`` of 0/1;
    None: all): ``z_i = m∘(x_i − μ_i) / ‖m∘(x_i − μ_i)‖`` with ``μ_i = Σ_k m_k x_ik / Σ_k m_k``.
    Removed features get 0, so ``Z Zᵀ`` is the Pearson RSM of the kept features alone; a row
    constant over the kept features is zero."""
    if mask is None:
        c = center(x, axis=-1)
    else:
        m = _expand(mask, x)
        kept = m > 0
        lo = jnp.min(jnp.where(kept, x, jnp.inf), axis=-1, keepdims=True)
        hi = jnp.max(jnp.where(kept, x, -jnp.inf), axis=-1, keepdims=True)
        mean = safe_divide(jnp.sum(x * m, axis=-1, keepdims=True),
                           jnp.sum(m, axis=-1, keepdims=True))
        c = jnp.where(kept & (hi > lo), x - mean, jnp.zeros_like(x))
    # Divide by the largest |entry| first so that squaring tiny rows cannot underflow.
    c = safe_divide(c, jnp.max(jnp.abs(c), axis=-1, keepdims=True))
    return safe_divide(c, jnp.sqrt(jnp.sum(c * c, axis=-1, keepdims=True)))


def masked_ranks(x: Array, mask: Array | None = None) -> Array:
    """Within-row average ranks of ``x [..., n, d]`` over the kept features only (removed
    features are ranked above every kept one, so they do not move the kept ranks; their own
    ranks are zeroed by the masked standardization)."""
    if mask is None:
        return ranks(x)
    kept = _expand(mask, x) > 0
    return ranks(jnp.where(kept, x, jnp.inf))


def constant_rows_masked(x: Array, mask: Array | None = None) -> Array:
    """:func:`constant_rows` over the kept features only."""
    if mask is None:
        return constant_rows(x)
    kept = _expand(mask, x) > 0
    hi = jnp.max(jnp.where(kept, x, -jnp.inf), axis=-1)
    lo = jnp.min(jnp.where(kept, x, jnp.inf), axis=-1)
    return jnp.sum((hi <= lo).astype(jnp.int32))


@jax.jit
def _standardize_checked(x: Array, mask: Array | None) -> tuple[Array, dict[str, Array]]:
    return _standardize(x, mask), {**finite(x=x), "constant": constant_rows_masked(x, mask)}


def standardize_rows(x: Any, mask: Any = None) -> Array:
    """Row-standardized features ``Z [..., n, d]``: ``z_i = (x_i − mean(x_i)) / ‖x_i − mean(x_i)‖``.

    Then ``Z Zᵀ`` is the Pearson RSM. A constant row (all features equal) has no correlation;
    its standardized row is defined as **zero**, so its RSM entries with every stimulus, and its
    own diagonal entry, are 0 (every other diagonal entry is 1). Eager calls warn
    (:class:`ConstantRowWarning`) when such rows exist; see :func:`count_constant_rows`.

    ``mask [..., d]`` (0/1, optional) marks the kept features: means and norms are taken over
    them only and removed features are 0, so ``Z Zᵀ`` equals the RSM of ``x[..., kept]`` — a
    removed unit is absent, not a zero feature."""
    x = as_float(x)
    check_features(x, "x", min_n=1)
    mask = _check_mask(mask, x)
    z, info = _standardize_checked(x, mask)
    if not is_traced(x, mask):
        report(info, rows=x.size // x.shape[-1])
    return z


def _check_mask(mask: Any, x: Array) -> Array | None:
    if mask is None:
        return None
    mask = jnp.asarray(mask).astype(x.dtype)
    if mask.shape[-1:] != x.shape[-1:]:
        raise ValueError(f"mask has shape {mask.shape}; features have {x.shape[-1]} columns")
    return mask


def _pairwise_sq_distances(x: Array) -> Array:
    """``‖x_i − x_j‖²`` for ``x [..., n, d]``, computed on column-centred features (which leaves
    distances unchanged and limits cancellation), clamped at 0, zero diagonal."""
    c = x - jnp.mean(x, axis=-2, keepdims=True)
    sq = jnp.sum(c * c, axis=-1)
    gram = einsum("...id,...jd->...ij", c, c)
    d2 = jnp.maximum(sq[..., :, None] + sq[..., None, :] - 2 * gram, 0)
    n = x.shape[-2]
    return jnp.where(jnp.eye(n, dtype=bool), jnp.zeros_like(d2), d2)


def _rsm_values(x: Array, method: str, mask: Array | None = None) -> Array:
    if mask is not None:  # cosine and euclidean: a removed feature is a zero column
        x = x * _expand(mask, x)
    if method in ("pearson", "pearson_sq", "spearman"):
        z = _standardize(masked_ranks(x, mask) if method == "spearman" else x, mask)
        r = einsum("...id,...jd->...ij", z, z)
        return r * r if method == "pearson_sq" else r
    if method == "cosine":
        scale = safe_divide(x, jnp.max(jnp.abs(x), axis=-1, keepdims=True))
        u = safe_divide(scale, jnp.sqrt(jnp.sum(scale * scale, axis=-1, keepdims=True)))
        return einsum("...id,...jd->...ij", u, u)
    d2 = _pairwise_sq_distances(x)  # euclidean
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, jnp.ones_like(d2))), 0)


@partial(jax.jit, static_argnames="method")
def _rsm(x: Array, method: str, mask: Array | None) -> tuple[Array, dict[str, Array]]:
    info = finite(x=x)
    if method == "cosine":
        xm = x if mask is None else x * _expand(mask, x)
        info["constant"] = jnp.sum(jnp.all(xm == 0, axis=-1).astype(jnp.int32))
    elif method != "euclidean":
        info["constant"] = constant_rows_masked(x, mask)
    return _rsm_values(x, method, mask), info


def rsm(x: Any, method: str = "pearson", mask: Any = None) -> Array:
    """Representational similarity matrix: features ``x [..., n, d]`` → ``[..., n, n]``.

    Methods (entry ``(i, j)`` between stimuli i and j, across the d features):

    - ``"pearson"`` (default): signed Pearson correlation ``r_ij = z_i · z_j`` with ``z`` from
      :func:`standardize_rows`. rsatoolbox's ``calc_rdm(method="correlation")`` is ``1 − r``.
    - ``"pearson_sq"``: ``r_ij²``, the squared correlation one reference implementation used.
    - ``"spearman"``: Pearson correlation of the within-row (average, tie-aware) ranks.
    - ``"cosine"``: ``x_i · x_j / (‖x_i‖ ‖x_j‖)``; an all-zero row gives 0.
    - ``"euclidean"``: the Euclidean distance ``‖x_i − x_j‖`` — a *dis*\\ similarity, zero on the
      diagonal. rsatoolbox's ``calc_rdm(method="euclidean")`` is ``‖x_i − x_j‖² / d``.

    For the correlation methods a constant row gives a zero row and column (diagonal included;
    see :func:`standardize_rows`); eager calls warn with :class:`ConstantRowWarning` (for cosine:
    on all-zero rows). Needs ``n >= 3``; NaN/Inf raise ``ValueError`` in eager calls.

    ``mask [..., d]`` (0/1, optional) marks the kept features: the RSM equals that of
    ``x[..., kept]`` (row means, norms and ranks over the kept features only).
    """
    check_method(method, RSM_METHODS)
    x = as_float(x)
    check_features(x, "x")
    mask = _check_mask(mask, x)
    out, info = _rsm(x, method, mask)
    if not is_traced(x, mask):
        report(
            info,
            rows=x.size // x.shape[-1],
            row_kind="all-zero" if method == "cosine" else "constant",
        )
    return out


@partial(jax.jit, static_argnames="num_classes")
def _condition_means(x: Array, labels: Array, num_classes: int):
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)  # [n, C]
    sums = einsum("nc,...nd->...cd", onehot, x)
    counts = jnp.sum(onehot, axis=0)[:, None]
    in_range = jnp.all((labels >= 0) & (labels < num_classes))
    return safe_divide(sums, jnp.broadcast_to(counts, sums.shape)), finite(x=x), in_range


def condition_means(x: Any, labels: Any, num_classes: int) -> Array:
    """Class-mean features ``[..., num_classes, d]`` from ``x [..., n, d]`` and ``labels [n]``.

    Row ``c`` is the mean of the rows labelled ``c`` (for class-level RSMs); a class without
    stimuli gets a zero row. Labels outside ``[0, num_classes)`` raise ``ValueError`` in eager
    calls (under ``jit`` they are ignored)."""
    x = as_float(x)
    labels = jnp.asarray(labels)
    check_features(x, "x", min_n=1)
    if labels.shape != x.shape[-2:-1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape {x.shape[-2:-1]}; got {labels.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive; got {num_classes}")
    means, info, in_range = _condition_means(x, labels, num_classes)
    if not is_traced(x, labels):
        report(info)
        if not bool(in_range):
            raise ValueError(f"labels must lie in [0, {num_classes})")
    return means
