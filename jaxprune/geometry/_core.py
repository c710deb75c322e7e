"""Shared pieces of :mod:`jaxprune.geometry`: warnings, validation, batching, numerics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Every matmul in this package runs at full float32 precision (GPUs default to TF32).
HIGHEST = jax.lax.Precision.HIGHEST
einsum = partial(jnp.einsum, precision=HIGHEST)


class GeometryWarning(RuntimeWarning):
    """Base class of the warnings :mod:`jaxprune.geometry` emits in eager calls."""


class ConstantRowWarning(GeometryWarning):
    """Some stimuli have a constant feature row, so their correlations are undefined.

    Their standardized row is defined as zero (see :func:`standardize_rows`)."""


class UndefinedFitWarning(GeometryWarning):
    """A fit (RSA or CKA) is undefined because one side is constant; its value is defined as 0."""


def is_traced(*xs: Any) -> bool:
    """Whether any argument (or leaf of a pytree argument) is a JAX tracer (jit/vmap/grad)."""
    return any(isinstance(leaf, jax.core.Tracer) for x in xs for leaf in jax.tree.leaves(x))


def as_float(x: Any) -> Array:
    """``x`` as a JAX array of a float dtype of at least 32 bits (ints, bools, halves → float32)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    return x


def as_common_float(*xs: Any) -> list[Array]:
    """The arguments as float arrays of one common dtype (explicit, for strict promotion)."""
    arrays = [as_float(x) for x in xs]
    dtype = arrays[0].dtype
    for a in arrays[1:]:
        dtype = jnp.promote_types(dtype, a.dtype)
    return [a.astype(dtype) for a in arrays]


def rtol(dtype: Any) -> float:
    """Relative tolerance under which a variance counts as zero: ``128·eps(dtype)``."""
    return 128.0 * float(jnp.finfo(dtype).eps)


def check_method(method: str, allowed: Sequence[str], what: str = "method") -> None:
    if method not in allowed:
        raise ValueError(f"unknown {what} {method!r}; expected one of {', '.join(allowed)}")


def check_features(x: Array, name: str, min_n: int = 3) -> None:
    """``x`` must be ``[..., n, d]`` with ``n >= min_n`` stimuli and ``d >= 1`` features."""
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [..., n, d]; got shape {x.shape}")
    n, d = x.shape[-2:]
    if n < min_n:
        raise ValueError(f"{name} has {n} stimuli; at least {min_n} are needed")
    if d < 1:
        raise ValueError(f"{name} has no features (shape {x.shape})")


def check_square(r: Array, name: str, min_n: int = 3) -> None:
    """``r`` must be ``[..., n, n]`` with ``n >= min_n``."""
    if r.ndim < 2 or r.shape[-1] != r.shape[-2]:
        raise ValueError(f"{name} must be a square matrix [..., n, n]; got shape {r.shape}")
    if r.shape[-1] < min_n:
        raise ValueError(f"{name} is {r.shape[-1]}×{r.shape[-1]}; at least {min_n} stimuli needed")


def check_same_n(a: Array, b: Array, names: str = "the two sides") -> None:
    if a.shape[-2] != b.shape[-2]:
        raise ValueError(
            f"{names} describe different numbers of stimuli: {a.shape[-2]} and {b.shape[-2]} "
            f"(shapes {a.shape} and {b.shape})"
        )


def finite(**arrays: Any) -> dict[str, Array]:
    """In-jit flags ``{"finite:name": all entries finite}`` for :func:`report` (pytrees allowed)."""
    return {
        f"finite:{name}": jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(x)]))
        for name, x in arrays.items()
    }


def constant_rows(x: Array) -> Array:
    """Total number of rows of ``x [..., n, d]`` whose entries are all equal (int32 scalar)."""
    return jnp.sum((jnp.max(x, axis=-1) == jnp.min(x, axis=-1)).astype(jnp.int32))


def report(
    info: dict[str, Array], rows: int = 0, row_kind: str = "constant", fits: str = "RSA fits are"
) -> None:
    """Act on a jitted core's diagnostics in an eager call (callers skip it when tracing).

    ``finite:<name>`` False → ``ValueError``; ``constant`` (count of ``rows``) > 0 →
    :class:`ConstantRowWarning`; any ``undefined`` → :class:`UndefinedFitWarning`."""
    for key, ok in info.items():
        if key.startswith("finite:") and not bool(ok):
            raise ValueError(f"{key[7:]} contains NaN or Inf (after casting to a float dtype)")
    k = int(info.get("constant", 0))
    if k:
        warnings.warn(
            f"{k} of {rows} stimulus rows are {row_kind}: their correlation with every other "
            "stimulus is undefined and is set to 0 (their standardized row is zero)",
            ConstantRowWarning,
            stacklevel=3,
        )
    if "undefined" in info:
        flags = np.asarray(info["undefined"])
        if flags.any():
            warnings.warn(
                f"{int(flags.sum())} of {flags.size} {fits} undefined (one side is constant) "
                "and set to 0",
                UndefinedFitWarning,
                stacklevel=3,
            )


def batch_shape(x: Any, core_ndim: int) -> tuple[int, ...]:
    """Leading (batch) shape of ``x`` (an array, or a pytree judged by its first leaf)."""
    leaf = jax.tree.leaves(x)[0]
    return tuple(leaf.shape[: leaf.ndim - core_ndim])


def map_leading(fn: Callable[..., Any], args: Sequence[Any], core: Sequence[int]) -> Any:
    """Apply ``fn`` (written for unbatched arguments) over leading batch axes with ``vmap``.

    ``args[i]`` has ``core[i]`` trailing core axes (a pytree argument: judged by its first leaf,
    every leaf sharing the same leading axes). Leading shapes broadcast explicitly; an argument
    without leading axes is shared (``in_axes=None``), not copied."""
    shapes = [batch_shape(a, k) for a, k in zip(args, core, strict=True)]
    batch = tuple(np.broadcast_shapes(*shapes))
    if not batch:
        return fn(*args)
    size = math.prod(batch)

    def flatten(a: Any, nb: int) -> Any:
        def leaf(v: Array) -> Array:
            v = jnp.broadcast_to(v, batch + v.shape[nb:])
            return v.reshape((size,) + v.shape[len(batch) :])

        return jax.tree.map(leaf, a)

    flat = [flatten(a, len(s)) if s else a for a, s in zip(args, shapes, strict=True)]
    axes = tuple(0 if s else None for s in shapes)
    out = jax.vmap(fn, in_axes=axes)(*flat)
    return jax.tree.map(lambda o: o.reshape(batch + o.shape[1:]), out)


def center(x: Array, axis: int) -> Array:
    """``x`` minus its mean along ``axis``; exactly zero where ``x`` is constant along it."""
    constant = jnp.max(x, axis=axis, keepdims=True) == jnp.min(x, axis=axis, keepdims=True)
    c = x - jnp.mean(x, axis=axis, keepdims=True)
    return jnp.where(constant, jnp.zeros_like(c), c)


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0``, else 0 (no 0/0 NaN, also in gradients; NaN propagates)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, jnp.ones_like(den)), jnp.zeros_like(num))


def ranks(v: Array, tol: float = 0.0) -> Array:
    """Average ranks (1..k, ties get their mean rank, as ``scipy.stats.rankdata``) along axis -1.

    ``tol > 0``: values whose sorted neighbours differ by at most ``tol·max|v|`` are ties
    (chained), so rankings do not depend on rounding noise below that scale."""

    def exact(u: Array) -> Array:
        s = jnp.sort(u)
        lo = jnp.searchsorted(s, u, side="left")
        hi = jnp.searchsorted(s, u, side="right")
        return (lo + hi + 1).astype(u.dtype) / 2

    def tolerant(u: Array) -> Array:
        order = jnp.argsort(u)
        s = u[order]
        k = s.shape[0]
        new = jnp.concatenate([jnp.ones(1, bool), s[1:] - s[:-1] > tol * jnp.max(jnp.abs(s))])
        idx = jnp.arange(k)
        first = jax.lax.associative_scan(jnp.maximum, jnp.where(new, idx, 0))
        last_new = jnp.concatenate([new[1:], jnp.ones(1, bool)])
        last = jax.lax.associative_scan(jnp.minimum, jnp.where(last_new, idx, k), reverse=True)
        sorted_ranks = (first + last + 2).astype(u.dtype) / 2
        return jnp.zeros_like(u).at[order].set(sorted_ranks)

    return map_leading(tolerant if tol > 0 else exact, [v], [1])


#: Relative tolerance below which two RSM entries are ties in a Spearman fit: entries computed
#: in float32 carry rounding of a few eps, which must not order them.
RANK_TIE_TOL = 16.0 * float(np.finfo(np.float32).eps)


def correlation_from_moments(
    cov: Array, var_a: Array, var_b: Array, scale_a: Array, scale_b: Array
) -> tuple[Array, Array]:
    """Pearson ``r = cov / sqrt(var_a·var_b)`` (clipped to [-1, 1]) and an ``undefined`` flag.

    ``var_*`` are sums of squared deviations of the fitted entries and ``scale_*`` sums of squares
    (:func:`constant_triangle`); a side is constant when ``var <= rtol·scale`` (:func:`rtol`),
    and then ``r`` is defined as 0."""
    tol = rtol(cov.dtype)
    undefined = (var_a <= tol * scale_a) | (var_b <= tol * scale_b)
    den = jnp.sqrt(jnp.maximum(var_a, 0) * jnp.maximum(var_b, 0))
    r = jnp.clip(safe_divide(cov, den), -1, 1)
    return jnp.where(undefined, jnp.zeros_like(r), r), undefined


def use_feature_space(n: int, d1: int, d2: int) -> bool:
    """The auto-path rule: feature (Gram) space when its flops are fewer than the n×n form's.

    Feature space costs ``n·(d1² + d1·d2 + d2²)`` multiply-adds, the n×n form ``n²·(d1 + d2)``;
    so it is chosen when ``n·(d1 + d2) > d1² + d1·d2 + d2²``
    (for ``d1 = d2 = d``: ``n > 1.5·d``)."""
    return n * (d1 + d2) > d1 * d1 + d1 * d2 + d2 * d2
