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


def _standardize(x: Array) -> Array:
    c = center(x, axis=-1)
    # Divide by the largest |entry| first so that squaring tiny rows cannot underflow.
    c = safe_divide(c, jnp.max(jnp.abs(c), axis=-1, keepdims=True))
    return safe_divide(c, jnp.sqrt(jnp.sum(c * c, axis=-1, keepdims=True)))


@jax.jit
def _standardize_checked(x: Array) -> tuple[Array, dict[str, Array]]:
    return _standardize(x), {**finite(x=x), "constant": constant_rows(x)}


def standardize_rows(x: Any) -> Array:
    """Row-standardized features ``Z [..., n, d]``: ``z_i = (x_i − mean(x_i)) / ‖x_i − mean(x_i)‖``.

    Then ``Z Zᵀ`` is the Pearson RSM. A constant row (all features equal) has no correlation;
    its standardized row is defined as **zero**, so its RSM entries with every stimulus, and its
    own diagonal entry, are 0 (every other diagonal entry is 1). Eager calls warn
    (:class:`ConstantRowWarning`) when such rows exist; see :func:`count_constant_rows`."""
    x = as_float(x)
    check_features(x, "x", min_n=1)
    z, info = _standardize_checked(x)
    if not is_traced(x):
        report(info, rows=x.size // x.shape[-1])
    return z


def _pairwise_sq_distances(x: Array) -> Array:
    """``‖x_i − x_j‖²`` for ``x [..., n, d]``, computed on column-centred features (which leaves
    distances unchanged and limits cancellation), clamped at 0, zero diagonal."""
    c = x - jnp.mean(x, axis=-2, keepdims=True)
    sq = jnp.sum(c * c, axis=-1)
    gram = einsum("...id,...jd->...ij", c, c)
    d2 = jnp.maximum(sq[..., :, None] + sq[..., None, :] - 2 * gram, 0)
    n = x.shape[-2]
    return jnp.where(jnp.eye(n, dtype=bool), jnp.zeros_like(d2), d2)


def _rsm_values(x: Array, method: str) -> Array:
    if method in ("pearson", "pearson_sq", "spearman"):
        z = _standardize(ranks(x) if method == "spearman" else x)
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
def _rsm(x: Array, method: str) -> tuple[Array, dict[str, Array]]:
    info = finite(x=x)
    if method == "cosine":
        info["constant"] = jnp.sum(jnp.all(x == 0, axis=-1).astype(jnp.int32))
    elif method != "euclidean":
        info["constant"] = constant_rows(x)
    return _rsm_values(x, method), info


def rsm(x: Any, method: str = "pearson") -> Array:
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
    """
    check_method(method, RSM_METHODS)
    x = as_float(x)
    check_features(x, "x")
    out, info = _rsm(x, method)
    if not is_traced(x):
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
