"""Fits of a readout to a target RSM for every nested subset of its units, in one call.

For features ``x [n, d]`` and an order of the units ``π``, the *prefix fits* are

    f_k = R²( upper(T), upper(RSM(x[:, π_1..π_k])) ),   k = 1 … d,

with RSM the Pearson correlation between stimuli computed over the **kept units only** (a
removed unit is absent, not zero; :mod:`jaxprune.search.fit`). Removing units in an order
``σ`` leaves a suffix of ``σ``, i.e. a prefix of ``σ`` reversed, so removal curves are prefix
fits too (:func:`removal_fits`).

One ``lax.scan`` over the order carries the sufficient statistics of the kept set ``K``:
``G = Σ_{u∈K} x_u x_uᵀ`` (n×n), ``s₁ = Σ x_u``, ``s₂ = Σ x_u²`` and the running min / max of
every row, from which, with ``k = |K|``, ``μ = s₁/k``, ``v = s₂/k − μ²``,

    RSM_ij = (G_ij/k − μ_i μ_j) / sqrt(v_i v_j),

so all ``d`` levels cost ``O(d·n²)`` instead of ``O(d²·n²)``; orders are a batch axis
(``vmap``). Rows are first standardised over all units (mean 0, norm 1), which leaves every
subset's correlations unchanged and keeps the float32 sums well conditioned.

Defined everywhere, as in :mod:`jaxprune.geometry`: a row that is constant over the kept
units (min = max) has RSM entries 0; a fit whose RSM triangle is constant (variance at most
``128·eps`` of its sum of squares) is 0 — so the one-unit level always has fit 0.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.geometry._core import rtol


class Target(NamedTuple):
    """A target RSM's strict upper triangle as an n×n weight matrix: ``t`` = the centred
    triangle scaled to unit norm (zero elsewhere), ``upper`` = the 0/1 triangle mask."""

    t: jax.Array
    upper: jax.Array


class Stats(NamedTuple):
    """Sufficient statistics of a kept set of units (see the module docstring)."""

    gram: jax.Array
    s1: jax.Array
    s2: jax.Array
    lo: jax.Array
    hi: jax.Array
    k: jax.Array


def make_target(rsm: np.ndarray | jax.Array) -> Target:
    """:class:`Target` of a square ``rsm [n, n]`` (its strict upper triangle)."""
    rsm = jnp.asarray(rsm, jnp.float32)
    n = rsm.shape[0]
    upper = jnp.triu(jnp.ones((n, n), jnp.float32), 1)
    pairs = n * (n - 1) / 2
    c = (rsm - jnp.sum(rsm * upper) / pairs) * upper
    return Target(c / jnp.sqrt(jnp.sum(c * c)), upper)


def standardize(x: np.ndarray | jax.Array) -> jax.Array:
    """Rows of ``x [n, d]`` shifted to mean 0 and scaled to unit norm over all units (a
    constant row is only shifted). Subset correlations are unchanged; equal entries stay
    equal, so constant rows of a subset stay exactly constant."""
    x = jnp.asarray(x, jnp.float32)
    c = x - jnp.mean(x, axis=1, keepdims=True)
    norm = jnp.sqrt(jnp.sum(c * c, axis=1, keepdims=True))
    return c / jnp.where(norm > 0, norm, 1.0)


def fit_from_stats(st: Stats, target: Target) -> jax.Array:
    """R² between the target triangle and the Pearson RSM of the kept set ``st``."""
    k = jnp.maximum(st.k, 1).astype(jnp.float32)
    mu = st.s1 / k
    var = jnp.maximum(st.s2 / k - mu * mu, 0.0)
    live = (st.hi > st.lo) & (var > 0)
    sd = jnp.where(live, jnp.sqrt(var), 1.0)
    cov = st.gram / k - mu[:, None] * mu[None, :]
    r = jnp.where(live[:, None] & live[None, :], cov / (sd[:, None] * sd[None, :]), 0.0)
    r = jnp.clip(r, -1.0, 1.0)
    pairs = jnp.sum(target.upper)
    tri_sum = jnp.sum(r * target.upper)
    tri_sq = jnp.sum(r * r * target.upper)
    var_r = tri_sq - tri_sum * tri_sum / pairs
    scale = tri_sq + jnp.sum(jnp.where(live, 1.0, 0.0))  # diagonal: 1 for live rows, else 0
    cov_rt = jnp.sum(r * target.t)
    fit = cov_rt * cov_rt / jnp.where(var_r > 0, var_r, 1.0)
    return jnp.where(var_r > rtol(jnp.float32) * scale, jnp.clip(fit, 0.0, 1.0), 0.0)


def empty_stats(n: int) -> Stats:
    """Statistics of the empty set of units."""
    z = jnp.zeros((n,), jnp.float32)
    return Stats(jnp.zeros((n, n), jnp.float32), z, z, jnp.full((n,), jnp.inf),
                 jnp.full((n,), -jnp.inf), jnp.zeros((), jnp.int32))


def add_unit(st: Stats, col: jax.Array) -> Stats:
    """``st`` with one more unit whose column (one value per stimulus) is ``col [n]``."""
    return Stats(st.gram + col[:, None] * col[None, :], st.s1 + col, st.s2 + col * col,
                 jnp.minimum(st.lo, col), jnp.maximum(st.hi, col), st.k + 1)


def prefix_fits_one(z: jax.Array, target: Target, order: jax.Array) -> jax.Array:
    """Traceable core of :func:`prefix_fits` for one order; ``z`` = :func:`standardize` (x)."""
    def step(st, u):
        st = add_unit(st, z[:, u])
        return st, fit_from_stats(st, target)

    return jax.lax.scan(step, empty_stats(z.shape[0]), order)[1]


@partial(jax.jit, static_argnames="batch")
def _prefix_fits(z, target, orders, batch):
    return jax.lax.map(lambda o: prefix_fits_one(z, target, o), orders, batch_size=batch)


def prefix_fits(x: np.ndarray | jax.Array, target: Target | np.ndarray, orders,
                batch: int = 64) -> np.ndarray:
    """``[B, d]`` fits of the units ``orders[b, :k]``, k = 1 … d, for each order ``[B, d]``
    (a single order ``[d]`` gives ``[d]``); ``batch`` orders run vectorised at a time."""
    target = target if isinstance(target, Target) else make_target(target)
    orders = np.asarray(orders, np.int32)
    single = orders.ndim == 1
    out = _prefix_fits(standardize(x), target, jnp.asarray(orders.reshape(-1, orders.shape[-1])),
                       max(1, min(batch, len(orders) if not single else 1)))
    out = np.asarray(out, np.float64)
    return out[0] if single else out


def removal_fits(x, target, orders, batch: int = 64) -> np.ndarray:
    """``[..., d]``: entry ``r`` is the fit with the first ``r`` units of the removal order
    removed (r = 0 … d−1: the kept units are ``order[r:]``)."""
    orders = np.asarray(orders)
    return prefix_fits(x, target, orders[..., ::-1], batch)[..., ::-1]


def _without(z: jax.Array, st: Stats, sorted_rows: jax.Array, u: jax.Array) -> Stats:
    col = z[:, u]
    lo = jnp.where(col == sorted_rows[:, 0], sorted_rows[:, 1], sorted_rows[:, 0])
    hi = jnp.where(col == sorted_rows[:, -1], sorted_rows[:, -2], sorted_rows[:, -1])
    return Stats(st.gram - col[:, None] * col[None, :], st.s1 - col, st.s2 - col * col,
                 lo, hi, st.k - 1)


@partial(jax.jit, static_argnames="batch")
def _leave_one_out(z, target, batch):
    st = jax.lax.scan(lambda s, col: (add_unit(s, col), None), empty_stats(z.shape[0]), z.T)[0]
    rows = jnp.sort(z, axis=1)
    units = jnp.arange(z.shape[1])
    return jax.lax.map(lambda u: fit_from_stats(_without(z, st, rows, u), target), units,
                       batch_size=batch)


def leave_one_out_fits(x, target, batch: int = 128) -> np.ndarray:
    """``[d]``: the fit with unit ``u`` alone removed, for every ``u`` (needs d ≥ 2)."""
    target = target if isinstance(target, Target) else make_target(target)
    if np.shape(x)[1] < 2:
        raise ValueError("leave-one-out fits need at least 2 units")
    return np.asarray(_leave_one_out(standardize(x), target, batch), np.float64)
