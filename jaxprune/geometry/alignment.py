"""Centered kernel alignment (Kornblith et al. 2019), biased and debiased, and minibatch CKA.

``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K)·HSIC(L, L))`` with ``K``, ``L`` kernel matrices of
the n stimuli under two representations, and

- biased HSIC: ``tr(K H L H) / (n−1)²``, ``H = I − 11ᵀ/n``;
- debiased (unbiased HSIC of Song et al. 2012, as in Nguyen et al. 2021), with ``K̃``, ``L̃`` the
  kernels with zeroed diagonals:
  ``[tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))``.

The linear kernel ``K = XXᵀ`` is evaluated in feature space when that is cheaper
(``‖YᵀX‖²_F``-style sums over centred features, ``O(n·d²)``), otherwise in n×n form.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.geometry._core import (
    Array,
    as_common_float,
    center,
    check_features,
    check_method,
    check_same_n,
    einsum,
    finite,
    is_traced,
    map_leading,
    report,
    safe_divide,
    use_feature_space,
)
from jaxprune.geometry.comparison import upper_triangle
from jaxprune.geometry.similarity import _pairwise_sq_distances

KERNELS = ("linear", "rbf")
PATHS = ("auto", "feature", "kernel")


def _unbiased(trace: Array, sum_k: Array, sum_l: Array, k1l1: Array, n: int) -> Array:
    """Song et al. (2012) from ``tr(K̃L̃)``, ``1ᵀK̃1``, ``1ᵀL̃1`` and ``(K̃1)·(L̃1)``."""
    n = float(n)  # Python floats: products of n overflow int32 for large n
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * k1l1 / (n - 2)) / (n * (n - 3))


def _hsic_features(x: Array, y: Array, debiased: bool) -> Array:
    """HSIC of the linear kernels ``XXᵀ``, ``YYᵀ`` from ``x [n, d1]``, ``y [n, d2]`` (centred)."""
    n = x.shape[0]
    cross = einsum("nd,ne->de", x, y)
    if not debiased:
        return jnp.sum(cross * cross) / float(n - 1) ** 2
    kx, ky = jnp.sum(x * x, axis=1), jnp.sum(y * y, axis=1)  # the diagonals
    sx, sy = jnp.sum(x, axis=0), jnp.sum(y, axis=0)  # Xᵀ1, Yᵀ1
    k1 = einsum("nd,d->n", x, sx) - kx  # K̃1
    l1 = einsum("nd,d->n", y, sy) - ky
    trace = jnp.sum(cross * cross) - jnp.sum(kx * ky)
    return _unbiased(
        trace, jnp.sum(sx * sx) - jnp.sum(kx), jnp.sum(sy * sy) - jnp.sum(ky), jnp.sum(k1 * l1), n
    )


def _hsic_kernels(k: Array, l: Array, debiased: bool) -> Array:
    """HSIC of two ``[n, n]`` kernel matrices.

    Both estimators are invariant to ``K → K + 1aᵀ + a1ᵀ + c11ᵀ``, so both start from the
    doubly centred ``HKH`` (small entries: little cancellation in the unbiased sums)."""
    n = k.shape[0]
    k = center(center(k, axis=0), axis=1)
    l = center(center(l, axis=0), axis=1)
    if not debiased:
        return jnp.sum(k * l) / float(n - 1) ** 2
    off = ~jnp.eye(n, dtype=bool)
    kt, lt = jnp.where(off, k, jnp.zeros_like(k)), jnp.where(off, l, jnp.zeros_like(l))
    k1, l1 = jnp.sum(kt, axis=1), jnp.sum(lt, axis=1)
    return _unbiased(jnp.sum(kt * lt), jnp.sum(k1), jnp.sum(l1), jnp.sum(k1 * l1), n)


def _rbf(x: Array, sigma: Array) -> Array:
    """``exp(−‖x_i − x_j‖² / (2 s²))`` with ``s = sigma · median_{i<j} ‖x_i − x_j‖`` (the median
    falls back to the mean distance when it is 0, and to 1 when all stimuli coincide)."""
    d2 = _pairwise_sq_distances(x)
    dist = jnp.sqrt(upper_triangle(d2))
    scale = jnp.median(dist)
    scale = jnp.where(scale > 0, scale, jnp.mean(dist))
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale)) * sigma
    return jnp.exp(-d2 / (2 * scale * scale))


Triplet = tuple[Array, Array, Array]


def _triplet(
    x: Array, y: Array, sigma: Array, kernel: str, debiased: bool, feature: bool
) -> Triplet:
    """``(HSIC(K, L), HSIC(K, K), HSIC(L, L))`` for unbatched ``x [n, d1]``, ``y [n, d2]``."""
    if kernel == "linear":
        x, y = center(x, axis=0), center(y, axis=0)  # exact: HSIC ignores feature means
        if feature:
            pairs = ((x, y), (x, x), (y, y))
            return tuple(_hsic_features(a, b, debiased) for a, b in pairs)
        k, l = einsum("id,jd->ij", x, x), einsum("id,jd->ij", y, y)
    else:
        k, l = _rbf(x, sigma), _rbf(y, sigma)
    return tuple(_hsic_kernels(a, b, debiased) for a, b in ((k, l), (k, k), (l, l)))


@partial(jax.jit, static_argnames=("kernel", "debiased", "feature"))
def _hsic3(
    x: Array, y: Array, sigma: Array, kernel: str, debiased: bool, feature: bool
) -> tuple[Triplet, dict[str, Array]]:
    fn = partial(_triplet, sigma=sigma, kernel=kernel, debiased=debiased, feature=feature)
    return map_leading(fn, [x, y], [2, 2]), finite(x=x, y=y)


def _ratio(xy: Array, xx: Array, yy: Array) -> tuple[Array, Array]:
    undefined = (xx <= 0) | (yy <= 0)
    value = safe_divide(xy, jnp.sqrt(jnp.maximum(xx * yy, 0)))
    return jnp.where(undefined, jnp.zeros_like(value), value), undefined


def _prepare(
    x: Any, y: Any, kernel: str, debiased: bool, sigma: float | None, path: str
) -> Triplet:
    check_method(kernel, KERNELS, "kernel")
    check_method(path, PATHS, "path")
    x, y = as_common_float(x, y)
    min_n = 4 if debiased else 3
    check_features(x, "x", min_n)
    check_features(y, "y", min_n)
    check_same_n(x, y, "x and y")
    sigma = 1.0 if sigma is None else sigma
    if not is_traced(sigma) and not float(sigma) > 0:
        raise ValueError(f"sigma (a fraction of the median distance) must be > 0; got {sigma}")
    n, d1, d2 = x.shape[-2], x.shape[-1], y.shape[-1]
    feature = path == "feature" or (path == "auto" and use_feature_space(n, d1, d2))
    hsics, info = _hsic3(x, y, jnp.asarray(sigma, x.dtype), kernel, debiased, feature)
    if not is_traced(x, y):
        report(info)
    return hsics


def hsic(
    x: Any, y: Any, kernel: str = "linear", debiased: bool = False, sigma: float | None = None
) -> Array:
    """HSIC between the kernels of ``x [..., n, d1]`` and ``y [..., n, d2]`` → ``[...]``
    (biased ``tr(KHLH)/(n−1)²`` or, ``debiased=True``, the unbiased estimator; module docstring)."""
    return _prepare(x, y, kernel, debiased, sigma, "auto")[0]


def cka(
    x: Any,
    y: Any,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float | None = None,
    *,
    path: str = "auto",
) -> Array:
    """Centered kernel alignment of ``x [..., n, d1]`` and ``y [..., n, d2]`` → ``[...]``.

    ``HSIC(K, L) / sqrt(HSIC(K, K)·HSIC(L, L))`` (module docstring). ``kernel``:

    - ``"linear"``: ``K = XXᵀ``. ``path="auto"`` uses the feature-space form
      (``‖Ycᵀ Xc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)`` for the biased case) when
      ``n·(d1 + d2) > d1² + d1·d2 + d2²``, else the n×n form; ``"feature"``/``"kernel"`` force one.
    - ``"rbf"``: ``K_ij = exp(−‖x_i − x_j‖² / (2 s²))`` with bandwidth
      ``s = sigma × median_{i<j} ‖x_i − x_j‖`` of that representation (``sigma=None`` → 1.0, the
      median heuristic; Kornblith et al. also report 0.2–0.8). Always n×n.

    ``debiased=True`` uses the unbiased HSIC (needs ``n >= 4``; else ``n >= 3``). Invariant to
    orthogonal transforms and isotropic scaling of either side (rbf: to scaling via the
    median). If a side has zero (or, debiased, non-positive) self-HSIC — e.g. all stimuli equal —
    CKA is undefined and defined as 0 (eager calls warn with :class:`UndefinedFitWarning`).
    """
    xy, xx, yy = _prepare(x, y, kernel, debiased, sigma, path)
    value, undefined = _ratio(xy, xx, yy)
    if not is_traced(x, y):
        report({"undefined": undefined}, fits="CKA values are")
    return value


class MinibatchCKA(NamedTuple):
    """Accumulator of minibatch CKA (Nguyen et al. 2021): sums of unbiased HSIC over batches.

    ``CKA = mean_b HSIC_u(K_b, L_b) / sqrt(mean_b HSIC_u(K_b, K_b) · mean_b HSIC_u(L_b, L_b))``.
    A pytree, so it can be a ``lax.scan`` carry; leading axes (e.g. layer pairs) are allowed::

        acc = MinibatchCKA.zeros()
        for x, y in batches:               # x [b, d1], y [b, d2], b >= 4
            acc = acc.update(x, y)
        value = acc.result()
    """

    xy: Array
    xx: Array
    yy: Array
    count: Array

    @classmethod
    def zeros(cls, shape: tuple[int, ...] = (), dtype: Any = jnp.float32) -> MinibatchCKA:
        """An empty accumulator for results of leading shape ``shape``."""
        z = jnp.zeros(shape, dtype)
        return cls(z, z, z, jnp.zeros(shape, jnp.int32))

    def update(
        self, x: Any, y: Any, kernel: str = "linear", sigma: float | None = None
    ) -> MinibatchCKA:
        """Add one minibatch ``x [..., b, d1]``, ``y [..., b, d2]`` (``b >= 4`` stimuli)."""
        xy, xx, yy = _prepare(x, y, kernel, True, sigma, "auto")
        return MinibatchCKA(
            self.xy + xy.astype(self.xy.dtype),
            self.xx + xx.astype(self.xx.dtype),
            self.yy + yy.astype(self.yy.dtype),
            self.count + jnp.ones_like(self.count),
        )

    def result(self) -> Array:
        """Minibatch CKA of the batches added so far (0 where undefined, e.g. no batches)."""
        value, undefined = _ratio(self.xy, self.xx, self.yy)
        if not is_traced(self):
            report({"undefined": undefined}, fits="minibatch CKA values are")
        return value


def minibatch_cka(
    batches: Iterable[tuple[Any, Any]], kernel: str = "linear", sigma: float | None = None
) -> Array:
    """Minibatch CKA over an iterable of ``(x [..., b, d1], y [..., b, d2])`` batches."""
    acc = None
    for x, y in batches:
        if acc is None:
            shape = np.broadcast_shapes(jnp.shape(x)[:-2], jnp.shape(y)[:-2])
            acc = MinibatchCKA.zeros(shape, as_common_float(x, y)[0].dtype)
        acc = acc.update(x, y, kernel, sigma)
    if acc is None:
        raise ValueError("minibatch_cka needs at least one batch")
    return acc.result()
