"""Fit between two RSMs (representational similarity analysis) over the strict upper triangle."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.geometry._core import (
    RANK_TIE_TOL,
    Array,
    as_common_float,
    as_float,
    check_method,
    check_square,
    correlation_from_moments,
    finite,
    is_traced,
    map_leading,
    ranks,
    report,
    rtol,
)

RSA_METHODS = ("pearson", "spearman")


def upper_triangle(r: Any) -> Array:
    """Strict upper triangle ``r[..., i, j]`` for ``i < j`` (row-major): ``[..., n, n] → [..., m]``
    with ``m = n(n−1)/2``."""
    r = jnp.asarray(r)
    i, j = jnp.triu_indices(r.shape[-1], k=1)
    return r[..., i, j]


def _moments(a: Array, b: Array) -> tuple[Array, ...]:
    """Two-pass (centred) moments of two vectors: ``Σ a'b', Σ a'², Σ b'², Σ a², Σ b²``."""
    ac, bc = a - jnp.mean(a), b - jnp.mean(b)
    return jnp.sum(ac * bc), jnp.sum(ac * ac), jnp.sum(bc * bc), jnp.sum(a * a), jnp.sum(b * b)


def _sum_row_blocks(fn: Callable[..., tuple[Array, ...]], a: Array, b: Array) -> tuple:
    """``Σ_blocks fn(rows, a[rows], b[rows], fresh)`` over blocks of rows of ``a, b [n, n]``.

    A ``fori_loop`` over ``dynamic_slice`` blocks of ``block·n ≈ 2²²`` entries keeps the
    temporaries ``O(block·n)``; the last block is shifted back to fit, and ``fresh`` marks its
    rows not already covered."""
    n = a.shape[-1]
    block = max(1, min(n, 2**22 // n))

    def body(k: Array, acc: tuple[Array, ...]) -> tuple[Array, ...]:
        start = jnp.minimum(k * block, n - block)
        rows = start + jnp.arange(block)
        ra = jax.lax.dynamic_slice_in_dim(a, start, block)
        rb = jax.lax.dynamic_slice_in_dim(b, start, block)
        return tuple(s + v for s, v in zip(acc, fn(rows, ra, rb, rows >= k * block), strict=True))

    count = len(jax.eval_shape(fn, jnp.arange(block), a[:block], b[:block], jnp.ones(block, bool)))
    zeros = tuple(jnp.zeros((), a.dtype) for _ in range(count))
    return jax.lax.fori_loop(0, -(-n // block), body, zeros)


def _triangle_moments(a: Array, b: Array) -> tuple[Array, ...]:
    """:func:`_moments` of the strict upper triangles of ``a, b [n, n]``, except that the scales
    ``Σ a², Σ b²`` also cover the diagonal: two passes over row blocks (:func:`_sum_row_blocks`),
    no ``n×n`` temporaries and no triangle index arrays."""
    n = a.shape[-1]
    cols = jnp.arange(n)[None, :]
    zero = jnp.zeros((), a.dtype)

    def sums(rows: Array, ra: Array, rb: Array, fresh: Array) -> tuple[Array, ...]:
        upper = (cols > rows[:, None]) & fresh[:, None]
        upper_diag = (cols >= rows[:, None]) & fresh[:, None]
        return (
            jnp.sum(jnp.where(upper, ra, zero)),
            jnp.sum(jnp.where(upper, rb, zero)),
            jnp.sum(jnp.where(upper_diag, ra * ra, zero)),
            jnp.sum(jnp.where(upper_diag, rb * rb, zero)),
        )

    sum_a, sum_b, scale_a, scale_b = _sum_row_blocks(sums, a, b)
    pairs = n * (n - 1) / 2  # a Python float: large counts overflow int32
    mean_a, mean_b = sum_a / pairs, sum_b / pairs

    def centred(rows: Array, ra: Array, rb: Array, fresh: Array) -> tuple[Array, ...]:
        upper = (cols > rows[:, None]) & fresh[:, None]
        da, db = jnp.where(upper, ra - mean_a, zero), jnp.where(upper, rb - mean_b, zero)
        return jnp.sum(da * db), jnp.sum(da * da), jnp.sum(db * db)

    cov, var_a, var_b = _sum_row_blocks(centred, a, b)
    return cov, var_a, var_b, scale_a, scale_b


def _fit_one(a: Array, b: Array, method: str) -> tuple[Array, Array]:
    if method == "spearman":
        return correlation_from_moments(
            *_moments(ranks(upper_triangle(a), RANK_TIE_TOL),
                      ranks(upper_triangle(b), RANK_TIE_TOL))
        )
    return correlation_from_moments(*_triangle_moments(a, b))


@partial(jax.jit, static_argnames="method")
def _fit(a: Array, b: Array, method: str) -> tuple[Array, dict[str, Array]]:
    r, undefined = map_leading(partial(_fit_one, method=method), [a, b], [2, 2])
    return r, {**finite(a=a, b=b), "undefined": undefined}


def constant_triangle(r: Any) -> Array:
    """Whether the strict upper triangle of ``r [..., n, n]`` is (numerically) constant → bool
    ``[...]``: the sum of squared deviations of its entries from their mean is at most
    ``rtol = 128·eps(dtype)`` times the sum of squares of the triangle and diagonal entries
    (the scale of the float error of the Gram path). A fit with such an RSM is undefined;
    :func:`rsa` and :func:`gram_rsa` return 0 for it. Usable under ``jit``."""
    r = as_float(r)
    check_square(r, "r")
    _, var, _, scale, _ = map_leading(lambda v: _triangle_moments(v, v), [r], [2])
    return var <= rtol(r.dtype) * scale


def rsa(a: Any, b: Any, method: str = "pearson", squared: bool = False) -> Array:
    """Fit between two RSMs ``a, b [..., n, n]`` over their strict upper triangles → ``[...]``.

    - ``"pearson"``: Pearson correlation ``r`` of the ``n(n−1)/2`` pairs; ``squared=True`` gives
      ``r²`` (see :func:`r2`). Equals rsatoolbox's ``compare(method="corr")``.
    - ``"spearman"``: Spearman ρ (Pearson of average ranks); rsatoolbox's ``"spearman"``.
      Entries within ``RANK_TIE_TOL`` (16 float32 eps) relative to the largest |entry| are
      ties: float32 rounding must not order entries that are equal in exact arithmetic (e.g.
      a pruned RSM whose masked and compacted forms differ by a few ulps).

    Either side may be any similarity or dissimilarity matrix (e.g. human judgments, float64:
    both are cast to one float dtype, float32 unless x64 is enabled); leading batch axes
    broadcast (a side without them is shared). The fit reads only the strict upper triangle
    (the diagonal enters only the scale of the constant-triangle test). Pearson runs over
    blocks of rows: no ``n×n`` temporaries beyond the inputs.
    If either triangle is constant (:func:`constant_triangle`) the fit is undefined and defined
    as **0**; eager calls warn with :class:`UndefinedFitWarning`. Needs ``n >= 3``; mismatched
    ``n``, unknown methods and (eagerly) NaN/Inf raise ``ValueError``.
    """
    check_method(method, RSA_METHODS)
    a, b = as_common_float(a, b)
    check_square(a, "a")
    check_square(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"RSMs of different sizes: {a.shape} and {b.shape}")
    r, info = _fit(a, b, method)
    if not is_traced(a, b):
        report(info)
    return r * r if squared else r


def r2(a: Any, b: Any, method: str = "pearson") -> Array:
    """Squared fit ``rsa(a, b, method)²`` (the R² of the pruning criterion)."""
    return rsa(a, b, method=method, squared=True)
