"""Fits of a readout to a target RSM for every nested subset of its units, in one call.

For features ``x [n, d]`` and an order of the units ``π``, the *prefix fits* are

    f_k = R²( upper(T), upper(RSM(x[:, π_1..π_k])) ),   k = 1 … d,

with RSM the Pearson correlation between stimuli computed over the **kept units only** (a
removed unit is absent, not zero; :mod:`jaxprune.search.fit`). Removing units in an order
``σ`` leaves a suffix of ``σ``, i.e. a prefix of ``σ`` reversed, so removal curves are prefix
fits too (:func:`removal_fits`).

One ``lax.scan`` over the order carries the statistics of the kept set ``K`` (``k = |K|``):
every row's mean ``μ`` over ``K``, the co-moment matrix ``C = Σ_{u∈K} (x_u − μ)(x_u − μ)ᵀ``
(n×n), and every row's running min / max. Adding a unit with column ``x`` updates them as
Welford does (``δ = x − μ``, ``μ ← μ + δ/k``, ``C ← C + δ (x − μ)ᵀ``), stable in float32 even
for nearly constant rows, and

    RSM_ij = C_ij / sqrt(C_ii C_jj),

so all ``d`` levels cost ``O(d·n²)`` instead of ``O(d²·n²)``; orders are a batch axis
(``vmap``). Rows are first standardised over all units (mean 0, norm 1), which leaves every
subset's correlations unchanged.

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
    """Statistics of a kept set of units (see the module docstring)."""

    mean: jax.Array
    comoment: jax.Array
    lo: jax.Array
    hi: jax.Array
    k: jax.Array


def make_target(rsm: np.ndarray | jax.Array, subset: np.ndarray | None = None) -> Target:
    """:class:`Target` of a square ``rsm [n, n]`` over the pairs of its strict upper triangle,
    or only over the pairs of stimuli in ``subset`` (indices): the fit of a subset's sub-RSM
    equals the fit restricted to its pairs, since a stimulus's RSM row depends on its own
    features only."""
    rsm = np.asarray(rsm, np.float64)
    n = rsm.shape[0]
    upper = np.triu(np.ones((n, n)), 1)
    if subset is not None:
        keep = np.zeros(n)
        keep[np.asarray(subset)] = 1.0
        upper = upper * keep[:, None] * keep[None, :]
    c = (rsm - np.sum(rsm * upper) / np.sum(upper)) * upper
    return Target(jnp.asarray(c / np.sqrt(np.sum(c * c)), jnp.float32),
                  jnp.asarray(upper, jnp.float32))


def stack_targets(targets: list[Target]) -> Target:
    """Targets stacked on a leading axis."""
    return Target(*(jnp.stack(a) for a in zip(*targets, strict=True)))


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
    var = jnp.diagonal(st.comoment)
    live = (st.hi > st.lo) & (var > 0)
    sd = jnp.where(live, jnp.sqrt(jnp.where(live, var, 1.0)), 1.0)
    r = jnp.where(live[:, None] & live[None, :],
                  st.comoment / (sd[:, None] * sd[None, :]), 0.0)
    r = jnp.clip(r, -1.0, 1.0)
    pairs = jnp.sum(target.upper)
    tri_sum = jnp.sum(r * target.upper)
    tri_sq = jnp.sum(r * r * target.upper)
    dev = (r - tri_sum / pairs) * target.upper
    var_r = jnp.sum(dev * dev)
    scale = tri_sq + jnp.sum(jnp.where(live, 1.0, 0.0))  # diagonal: 1 for live rows, else 0
    cov_rt = jnp.sum(r * target.t)
    fit = cov_rt * cov_rt / jnp.where(var_r > 0, var_r, 1.0)
    return jnp.where(var_r > rtol(jnp.float32) * scale, jnp.clip(fit, 0.0, 1.0), 0.0)


def empty_stats(n: int) -> Stats:
    """Statistics of the empty set of units."""
    return Stats(jnp.zeros((n,), jnp.float32), jnp.zeros((n, n), jnp.float32),
                 jnp.full((n,), jnp.inf), jnp.full((n,), -jnp.inf), jnp.zeros((), jnp.int32))


def add_unit(st: Stats, col: jax.Array) -> Stats:
    """``st`` with one more unit whose column (one value per stimulus) is ``col [n]``."""
    k = st.k + 1
    delta = col - st.mean
    mean = st.mean + delta / k.astype(jnp.float32)
    return Stats(mean, st.comoment + delta[:, None] * (col - mean)[None, :],
                 jnp.minimum(st.lo, col), jnp.maximum(st.hi, col), k)


def prefix_fits_one(z: jax.Array, targets: Target, order: jax.Array) -> jax.Array:
    """Traceable core: ``[M, d]`` prefix fits of one ``order`` against ``targets`` ``[M]``;
    ``z`` = :func:`standardize` (x)."""
    fits = jax.vmap(fit_from_stats, in_axes=(None, 0))

    def step(st, u):
        st = add_unit(st, z[:, u])
        return st, fits(st, targets)

    return jax.lax.scan(step, empty_stats(z.shape[0]), order)[1].T


@jax.jit
def _prefix_chunk(z, targets, orders):
    return jax.vmap(prefix_fits_one, in_axes=(None, 0, 0))(z, targets, orders)


def _as_targets(targets, count: int) -> tuple[Target, bool]:
    """Per-order targets ``[count, M]`` from one matrix, a Target, a Target ``[M]`` or
    ``[count, M]``; and whether a single target (M = 1, unstacked) was given."""
    if not isinstance(targets, Target):
        targets = make_target(targets)
    single = targets.t.ndim == 2
    if single:
        targets = Target(*(a[None] for a in targets))
    if targets.t.ndim == 3:
        targets = Target(*(jnp.broadcast_to(a, (count, *a.shape)) for a in targets))
    return targets, single


def prefix_fits(x: np.ndarray | jax.Array, targets: Target | np.ndarray, orders: np.ndarray,
                batch: int = 32) -> np.ndarray:
    """Fits of the units ``orders[b, :k]``, k = 1 … d, for each order ``[B, d]`` against
    ``targets`` (a matrix or :class:`Target`: ``[B, d]`` out; targets ``[M]`` shared, or
    ``[B, M]`` per order: ``[B, M, d]`` out). A single order ``[d]`` drops the B axis.
    ``batch`` orders run vectorised per call; the last chunk is padded, so every call of a
    shape reuses one compiled program."""
    orders = np.asarray(orders, np.int32)
    one_order = orders.ndim == 1
    orders = orders.reshape(-1, orders.shape[-1])
    b = len(orders)
    tg, single = _as_targets(targets, b)
    z = standardize(x)
    size = batch
    out = []
    for i in range(0, b, size):
        pad = max(0, i + size - b)
        o = np.concatenate([orders[i:i + size], np.repeat(orders[-1:], pad, 0)])
        t = Target(*(jnp.concatenate([a[i:i + size], jnp.repeat(a[-1:], pad, 0)])
                     for a in tg))
        out.append(np.asarray(_prefix_chunk(z, t, jnp.asarray(o)), np.float64)[:size - pad])
    res = np.concatenate(out)
    res = res[:, 0] if single else res
    return res[0] if one_order else res


def removal_fits(x: np.ndarray | jax.Array, targets: Target | np.ndarray, orders: np.ndarray,
                 batch: int = 32) -> np.ndarray:
    """As :func:`prefix_fits`, but entry ``r`` of the last axis is the fit with the first
    ``r`` units of the removal order removed (r = 0 … d−1: the kept units are
    ``order[r:]``)."""
    orders = np.asarray(orders)
    return prefix_fits(x, targets, orders[..., ::-1], batch)[..., ::-1]


def _without(z: jax.Array, st: Stats, sorted_rows: jax.Array, u: jax.Array) -> Stats:
    """``st`` of all units with unit ``u`` taken out: ``μ' = (kμ − x)/(k−1)``,
    ``C' = C − k/(k−1)·(x − μ)(x − μ)ᵀ``; min / max from each row's sorted values."""
    col = z[:, u]
    k = st.k.astype(jnp.float32)
    dev = col - st.mean
    lo = jnp.where(col == sorted_rows[:, 0], sorted_rows[:, 1], sorted_rows[:, 0])
    hi = jnp.where(col == sorted_rows[:, -1], sorted_rows[:, -2], sorted_rows[:, -1])
    return Stats((k * st.mean - col) / (k - 1.0),
                 st.comoment - (k / (k - 1.0)) * dev[:, None] * dev[None, :], lo, hi,
                 st.k - 1)


@partial(jax.jit, static_argnames="batch")
def _leave_one_out(z, targets, batch):
    st = jax.lax.scan(lambda s, col: (add_unit(s, col), None), empty_stats(z.shape[0]), z.T)[0]
    rows = jnp.sort(z, axis=1)
    fits = jax.vmap(fit_from_stats, in_axes=(None, 0))
    return jax.lax.map(lambda u: fits(_without(z, st, rows, u), targets), jnp.arange(z.shape[1]),
                       batch_size=batch).T


def leave_one_out_fits(x: np.ndarray | jax.Array, targets: Target | np.ndarray,
                       batch: int = 32, target_chunk: int = 8) -> np.ndarray:
    """The fit with unit ``u`` alone removed, for every ``u``: ``[d]`` for one target, ``[M, d]``
    for targets ``[M]`` (needs d ≥ 2). Targets go ``target_chunk`` per call (the last chunk
    padded), so any M reuses one compiled program."""
    if np.shape(x)[1] < 2:
        raise ValueError("leave-one-out fits need at least 2 units")
    tg, single = _as_targets(targets, 1)
    tg = Target(*(a[0] for a in tg))
    z, m = standardize(x), tg.t.shape[0]
    out = []
    for i in range(0, m, target_chunk):
        pad = max(0, i + target_chunk - m)
        t = Target(*(jnp.concatenate([a[i:i + target_chunk], jnp.repeat(a[-1:], pad, 0)])
                     for a in tg))
        out.append(np.asarray(_leave_one_out(z, t, batch), np.float64)[:target_chunk - pad])
    res = np.concatenate(out)
    return res[0] if single else res
