"""Greedy CKA pruning (method 4): remove, one at a time, the unit whose removal keeps the
representation most similar (CKA) to the original network's.

For each visited layer, every step scores each remaining unit ``u`` by the CKA between the
original representation and the one with ``u`` also removed, removes the best candidate and
repeats, so each step's scores reflect the removals already made (``greedy="recompute"``, the
default). ``greedy="once"`` scores the units once per layer visit and removes them in that
order (what the reference code does, although its README describes the greedy loop).
Ties — scores ``s`` with ``best − s <= TIE_ULPS·eps·|best|``, equal up to float rounding
relative to their magnitude — go to the lowest index; scores that differ by more are never
reordered. A layer stops after ``n_to_remove`` = ``floor(fraction · kept + 1/2)`` removals
(at most ``kept − 1``), or before the first removal whose CKA would fall below ``floor``.

``compare`` names the representation that is compared:

- ``"layer"`` (default): the pruned layer's own masked output;
- ``"readout"``: the readout layer (the penultimate, post-ReLU) — the judgement downstream;
- ``"later"``: the mean CKA over every layer after the pruned one up to the readout;
- ``"preact"``: the pruned layer's pre-activation, a removed unit's pre-activation set to its
  bias (the reference code's comparison). Centring makes a constant column equal to a
  removed one, so this is ``"layer"`` on the pre-ReLU values.

On the readout layer itself ``"layer"``, ``"readout"`` and ``"later"`` coincide. The
original representation is that of the network as given (``params``, ``masks``) at the start
of the call; layers are visited bottom-up by default.

**Exact structure** (the readout or a layer compared with itself, linear kernel). Let
``A [n, P, c]`` be the layer's centred activations with every unit present (``P`` spatial
positions, 1 for a dense layer), ``A_v = A[:, :, v]``, ``m ∈ {0,1}^c`` the mask,
``Y = A·diag(m)`` and ``X [n, dx]`` the centred original. Then

    ‖XᵀY‖²_F = Σ_v m_v ‖XᵀA_v‖²_F = hᵀm                  h_v  = ‖XᵀA_v‖²_F
    ‖YᵀY‖²_F = Σ_vw m_v m_w ‖A_vᵀA_w‖²_F = mᵀMm        M_vw = ‖A_vᵀA_w‖²_F  (dense: G_vw², G = AᵀA)

so ``CKA(m) = hᵀm / sqrt(‖XᵀX‖²_F · mᵀMm)``, and removing a unit ``u`` with ``m_u = 1`` gives

    CKA(m − e_u) = (hᵀm − h_u) / sqrt(‖XᵀX‖²_F · (mᵀMm − 2(Mm)_u + M_uu)):

the cross term loses ``‖Xᵀa_u‖²``, the self term ``2‖Yᵀa_u‖² − ‖a_u‖⁴``. ``h`` and ``M`` cost
one pass over the layer (``O(n·(Pc)²)``, or ``O(c·n²·P)`` in n×n form for wide conv maps); each
step is then one mat-vec ``g = Mm`` (``O(c²)``) and every candidate's CKA is ``O(1)``.
**Debiased** CKA (unbiased HSIC, centred features, so ``K̃1 = −k`` with ``k_i = ‖x_i‖²``) is
bilinear in ``m`` too: with ``R_iv = ‖A_v[i]‖²``, ``r = Rᵀ1``, ``kx_i = ‖X_i‖²``, ``s = Σ kx``,
``n(n−3)·HSIC_u(X, Y) = h̃ᵀm`` and ``n(n−3)·HSIC_u(Y, Y) = mᵀM̃m`` with

    M̃ = M − n/(n−2)·RᵀR + rrᵀ/((n−1)(n−2)),     h̃ = h − n/(n−2)·Rᵀkx + s·r/((n−1)(n−2)),

and the same update applies. A side with non-positive self-HSIC gives CKA 0 (as
:func:`jaxprune.geometry.cka`).

**Other cases** (RBF kernel; a layer below the compared one) evaluate every candidate's
representation: the next pre-activation is linear in the mask,
``z_next(m − e_u) = z_next(m) − C_u`` with ``C_u`` unit ``u``'s contribution, so candidates are
the current ``z_next`` minus one contribution each, forwarded through the rest of the network
and scored with :func:`jaxprune.geometry.cka` — one ``jit(vmap)`` program per step, over
chunks of ``chunk_size`` candidates (the chunk loop has a dynamic trip count, so one
compilation serves every step and the work shrinks with the candidates left).

``sequential=True`` runs the twin: a plain loop over candidates, each a forward pass with that
unit masked and :func:`jaxprune.geometry.cka` of the explicitly masked activations. Both make
the same choices.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune import geometry
from jaxprune.geometry import center, safe_divide
from jaxprune.masks import compression_rate
from jaxprune.models import Architecture, Params, forward_from, linear, transition
from jaxprune.models.network import activations, preactivation, unit_contribution
from jaxprune.search._common import (
    check_direction,
    check_stimuli,
    device_masks,
    layers_in_order,
    stackable,
    start_masks,
)
from jaxprune.search.result import LayerTrace, PruneResult
from jaxprune.sharding import candidate_sharding, constrain, round_up

COMPARES = ("layer", "readout", "later", "preact")
KERNELS = ("linear", "rbf")
GREEDY = ("recompute", "once")
#: Scores within ``TIE_ULPS · eps(dtype) · |best|`` of the best are ties (lowest index wins):
#: a relative tolerance of a few rounding units, e.g. two dead units score identically.
TIE_ULPS = 4

Scorer = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- shared plumbing


def check_fraction(fraction: float | None, *, allow_none: bool = False) -> None:
    """``fraction`` (of a layer's kept units to remove) must be in [0, 1)."""
    if fraction is None and allow_none:
        return
    if isinstance(fraction, bool) or not isinstance(fraction, int | float | np.floating) or \
            not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")


def check_floor(floor: float | None) -> None:
    """``floor`` (the lowest CKA a removal may reach) must be None or in (0, 1]."""
    if floor is not None and (isinstance(floor, bool) or not isinstance(
            floor, int | float | np.floating) or not 0.0 < float(floor) <= 1.0):
        raise ValueError(f"floor must be in (0, 1] or None, got {floor!r}")


def n_to_remove(kept: int, fraction: float | None) -> int:
    """Units to remove from a layer keeping ``kept``: ``floor(fraction·kept + 1/2)``, at most
    ``kept − 1`` (a layer keeps one unit); ``fraction=None`` means ``kept − 1``."""
    if kept <= 1:
        return 0
    if fraction is None:
        return kept - 1
    return min(kept - 1, int(np.floor(fraction * kept + 0.5)))


def stimuli(arch: Architecture, x: Any, min_n: int = 3) -> jax.Array:
    """``x`` as ``[n, *input_shape]`` floats (float32, or float64 if given so with x64
    enabled); vector networks also take flattened images."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    check_stimuli(arch, x.shape, min_n, what="CKA")
    return x


def preactivation_refs(arch: Architecture, params: Params, x: jax.Array,
                       masks: Mapping[str, Any], names: Sequence[str]) -> dict[str, jax.Array]:
    """``{layer: flattened pre-activation [n, features]}`` under ``masks``, the reference of
    ``compare="preact"``."""
    current = device_masks(masks, x.dtype)
    return {name: preactivation(arch, params, current, x, arch.index(name)).reshape(
        x.shape[0], -1) for name in names}


def layerwise_cka(
    arch: Architecture,
    x: Any,
    params: Params,
    masks: Mapping[str, Any] | None = None,
    ref_params: Params | None = None,
    ref_masks: Mapping[str, Any] | None = None,
    *,
    kernel: str = "linear",
    debiased: bool = False,
) -> dict[str, float]:
    """``{layer: CKA(reference activations, activations)}`` on stimuli ``x`` for every layer;
    the reference is ``ref_params`` (default ``params``) under ``ref_masks`` (default none)."""
    x = stimuli(arch, x, 4 if debiased else 3)
    ref = activations(arch, params if ref_params is None else ref_params,
                      device_masks(start_masks(arch, ref_masks), x.dtype), x)
    new = activations(arch, params, device_masks(start_masks(arch, masks), x.dtype), x)
    return {k: float(geometry.cka(ref[k], new[k], kernel, debiased)) for k in ref}


# ----------------------------------------------------------------------------- exact structure


def _center(a: jax.Array) -> jax.Array:
    """Columns of ``a [n, ...]`` minus their means (a constant unit becomes exactly zero)."""
    return center(a, axis=0)


@partial(jax.jit, static_argnames=("debiased", "feature"))
def _quadratic_form(x: jax.Array, a: jax.Array, debiased: bool, feature: bool):
    """``(h [c], M [c, c], pxx)`` of the module docstring from the original ``x [n, dx]`` and
    the unmasked activations ``a [n, P, c]`` (``feature``: d×d Gram form, else n×n form)."""
    n, p, c = a.shape
    x, a = _center(x), _center(a)
    if p == 1:  # dense: M = G∘G with G = AᵀA
        g = a[:, 0].T @ a[:, 0]
        m = g * g
        xa = x.T @ a[:, 0]
        h = jnp.sum(xa * xa, axis=0)
        xx = x.T @ x
    elif feature:
        g = a.reshape(n, p * c).T @ a.reshape(n, p * c)  # [Pc, Pc]
        g = g.reshape(p, c, p, c)
        m = jnp.einsum("pvqw,pvqw->vw", g, g)
        xa = (x.T @ a.reshape(n, p * c)).reshape(-1, p, c)
        h = jnp.sum(xa * xa, axis=(0, 1))
        xx = x.T @ x
    else:
        k = jnp.einsum("ipv,jpv->vij", a, a)  # per-unit kernels [c, n, n]
        m = jnp.einsum("vij,wij->vw", k, k)
        xx = x @ x.T
        h = jnp.einsum("ij,vij->v", xx, k)
    pxx = jnp.sum(xx * xx)
    if debiased:
        rows = jnp.sum(a * a, axis=1)  # R [n, c]
        kx = jnp.sum(x * x, axis=1)  # [n]
        r, s = jnp.sum(rows, axis=0), jnp.sum(kx)
        f1, f2 = n / (n - 2), 1.0 / ((n - 1) * (n - 2))
        m = m - f1 * (rows.T @ rows) + f2 * jnp.outer(r, r)
        h = h - f1 * (rows.T @ kx) + f2 * s * r
        pxx = pxx - f1 * jnp.sum(kx * kx) + f2 * s * s
    return h, m, pxx


@jax.jit
def _quadratic_scores(h: jax.Array, m: jax.Array, pxx: jax.Array, mask: jax.Array) -> jax.Array:
    """CKA of removing each unit from ``mask`` (``-inf`` for removed units), from the form."""
    g = m @ mask
    cross, self_ = h @ mask, mask @ g

    def one(h_u, g_u, m_uu, on):
        num, den = cross - h_u, pxx * (self_ - 2 * g_u + m_uu)
        ok = (den > 0) & (pxx > 0)
        value = safe_divide(num, jnp.sqrt(jnp.where(ok, den, jnp.zeros_like(den))))
        return jnp.where(on > 0, value, -jnp.inf)

    return jax.vmap(one)(h, g, jnp.diagonal(m), mask)


def quadratic_scorer(x: jax.Array, a: jax.Array, debiased: bool = False) -> Scorer:
    """Candidate scores for comparing a layer with its original ``x [n, dx]``: ``a`` is the
    layer's unmasked activation ``[n, ..., c]``; returns ``mask [c] -> CKA [c]``."""
    n, c = a.shape[0], a.shape[-1]
    a = a.reshape(n, -1, c)
    p = a.shape[1]
    feature = (p * c) ** 2 <= c * n * n  # the smaller of the two intermediate arrays
    h, m, pxx = _quadratic_form(x, a, debiased, feature)
    return lambda mask: np.asarray(_quadratic_scores(h, m, pxx, jnp.asarray(mask, h.dtype)))


# ----------------------------------------------------------------------------- general path


def _mean_cka(refs, acts, names, kernel, debiased, sigma):
    """Mean of :func:`jaxprune.geometry.cka` over the compared layers."""
    values = [geometry.cka(refs[k], acts[k].reshape(acts[k].shape[0], -1), kernel, debiased,
                           sigma) for k in names]
    return sum(values[1:], values[0]) / len(values)


def _linear_reference(x: jax.Array):
    """The candidate-independent side of biased linear CKA against ``x [n, d]`` (candidates
    have d features too): the centred ``x`` (feature form) or its kernel ``XXᵀ`` (n×n form,
    when cheaper), ``‖XᵀX‖²_F``, and which form (static)."""
    x = _center(x)
    n, d = x.shape
    if geometry.use_feature_space(n, d, d):
        xx = x.T @ x
        return x, jnp.sum(xx * xx), True
    k = x @ x.T
    return k, jnp.sum(k * k), False


def _linear_cka(reference, y: jax.Array) -> jax.Array:
    """Biased linear CKA of ``y [n, d]`` against a :func:`_linear_reference`: two Gram
    products per candidate instead of three."""
    side, pxx, feature = reference
    y = _center(y)
    if feature:
        xy, yy = side.T @ y, y.T @ y
        cross, self_ = jnp.sum(xy * xy), jnp.sum(yy * yy)
    else:
        k = y @ y.T
        cross, self_ = jnp.sum(side * k), jnp.sum(k * k)
    den = pxx * self_
    return safe_divide(cross, jnp.sqrt(jnp.where(den > 0, den, jnp.zeros_like(den))))


@partial(jax.jit, static_argnames=("arch", "index", "names", "kernel", "debiased", "sigma",
                                   "chunk", "preact", "spread"))
def _forward_scores(arch, index, names, kernel, debiased, sigma, chunk, params, masks, z, refs,
                    units, count, preact=False, spread=None):
    """CKA of the candidates ``units[:count]`` (entries of ``units`` past ``count`` are not
    evaluated and stay ``-inf``), ``chunk`` at a time (``preact``: of the layer's masked
    pre-activation; ``spread``: the sharding of a chunk's candidate axis, or None)."""
    name = arch.layers[index].name
    a = z if preact else jax.nn.relu(z)
    mask = masks[name]
    if names == (name,):
        def acts_of(u):
            return {name: a * mask.at[u].set(0.0).reshape((1,) * (a.ndim - 1) + (-1,))}
    else:
        masked = a * mask.reshape((1,) * (a.ndim - 1) + (-1,))
        z_next = linear(arch, params, index + 1, transition(arch, index + 1, masked))

        def acts_of(u):
            z_u = z_next - unit_contribution(arch, params, index, a, u)
            return forward_from(arch, params, masks, index + 1, z_u)[1]

    if kernel == "linear" and not debiased:
        prepared = {k: _linear_reference(refs[k]) for k in names}

        def score(u):
            acts = acts_of(u)
            values = [_linear_cka(prepared[k], acts[k].reshape(acts[k].shape[0], -1))
                      for k in names]
            return sum(values[1:], values[0]) / len(values)
    else:
        def score(u):
            return _mean_cka(refs, acts_of(u), names, kernel, debiased, sigma)

    def body(j, out):
        u = constrain(jax.lax.dynamic_slice_in_dim(units, j * chunk, chunk), spread)
        return jax.lax.dynamic_update_slice_in_dim(out, jax.vmap(score)(u), j * chunk, 0)

    start = jnp.full(units.shape, -jnp.inf, z.dtype)
    return jax.lax.fori_loop(0, (count + chunk - 1) // chunk, body, start)


def _forward_scorer(arch, params, masks, index, z, refs, names, kernel, debiased, sigma,
                    chunk, preact=False, sharding=None) -> Scorer:
    width = arch.layers[index].width
    chunk = max(1, min(chunk, width))
    spread = candidate_sharding(sharding)
    if spread is not None:  # a whole number of candidates per device
        chunk = round_up(chunk, spread.mesh.size)
    size = -(-width // chunk) * chunk

    def scorer(mask: np.ndarray) -> np.ndarray:
        alive = np.flatnonzero(mask > 0)
        units = np.concatenate([alive, np.repeat(alive[:1], size - alive.size)]).astype(np.int32)
        current = device_masks({**masks, arch.layers[index].name: mask}, z.dtype)
        out = np.asarray(_forward_scores(arch, index, names, kernel, debiased, sigma, chunk,
                                         params, current, z, refs, jnp.asarray(units),
                                         jnp.int32(alive.size), preact, spread))
        scores = np.full(width, -np.inf)
        scores[alive] = out[: alive.size]
        return scores

    return scorer


# ----------------------------------------------------------------------------- sequential twin


@partial(jax.jit, static_argnames=("arch", "index", "names", "kernel", "debiased", "sigma"))
def _masked_score(arch, index, names, kernel, debiased, sigma, params, masks, z, refs):
    """CKA of one explicitly masked network: a forward pass from layer ``index``."""
    _, acts = forward_from(arch, params, masks, index, z)
    return _mean_cka(refs, acts, names, kernel, debiased, sigma)


def _sequential_scorer(arch, params, masks, index, z, refs, names, kernel, debiased,
                       sigma) -> Scorer:
    name = arch.layers[index].name

    def scorer(mask: np.ndarray) -> np.ndarray:
        scores = np.full(mask.shape, -np.inf)
        for u in np.flatnonzero(mask > 0):
            candidate = mask.copy()
            candidate[u] = 0.0
            current = device_masks({**masks, name: candidate}, z.dtype)
            scores[u] = float(_masked_score(arch, index, names, kernel, debiased, sigma, params,
                                            current, z, refs))
        return scores

    return scorer


@partial(jax.jit, static_argnames=("kernel", "debiased", "sigma"))
def _preact_score(kernel, debiased, sigma, z, bias, mask, ref):
    """CKA of the pre-activation ``z`` with every removed unit's value set to its bias."""
    z = jnp.where(mask > 0, z, jnp.broadcast_to(bias, z.shape))
    return geometry.cka(ref, z.reshape(z.shape[0], -1), kernel, debiased, sigma)


def _preact_sequential_scorer(params, layer, z, ref, kernel, debiased, sigma) -> Scorer:
    """Twin of ``compare="preact"``: each candidate's pre-activation written out explicitly."""
    bias = params[layer]["bias"]

    def scorer(mask: np.ndarray) -> np.ndarray:
        scores = np.full(mask.shape, -np.inf)
        for u in np.flatnonzero(mask > 0):
            candidate = jnp.asarray(mask, z.dtype).at[u].set(0.0)
            scores[u] = float(_preact_score(kernel, debiased, sigma, z, bias, candidate, ref))
        return scores

    return scorer


# ----------------------------------------------------------------------------- the search


def compared_layers(arch: Architecture, index: int, compare: str) -> tuple[str, ...]:
    """Names of the layers whose CKA scores a removal in layer ``index``."""
    readout = arch.index(arch.readout_layer)
    if compare in ("layer", "preact") or index == readout:
        return (arch.layers[index].name,)
    if index > readout:
        raise ValueError(f"layer {arch.layers[index].name!r} is above the readout "
                         f"{arch.readout_layer!r}; compare='{compare}' needs a layer below it")
    if compare == "readout":
        return (arch.readout_layer,)
    return tuple(arch.layer_names[index + 1: readout + 1])


def make_scorer(
    arch: Architecture,
    params: Params,
    x: jax.Array,
    masks: Mapping[str, np.ndarray],
    layer: str,
    refs: Mapping[str, jax.Array],
    *,
    compare: str = "layer",
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float | None = None,
    chunk_size: int = 16,
    sequential: bool = False,
    sharding: str | None = None,
) -> Scorer:
    """``mask [width] -> scores [width]``: the CKA of removing each remaining unit of ``layer``
    (``-inf`` for removed units) given the other layers' ``masks``; ``refs`` are the original
    flattened activations ``{layer: [n, features]}``. ``sharding="candidates"`` lays each
    chunk of candidates over the local devices (the forward path; the closed-form quadratic
    path scores every unit in one small program)."""
    index = arch.index(layer)
    names = compared_layers(arch, index, compare)
    z = preactivation(arch, params, device_masks(masks, x.dtype), x, index)
    refs = {k: refs[k] for k in names}
    sigma = None if sigma is None else float(sigma)
    preact = compare == "preact"
    if sequential and preact:
        return _preact_sequential_scorer(params, layer, z, refs[layer], kernel, debiased, sigma)
    if sequential:
        return _sequential_scorer(arch, params, masks, index, z, refs, names, kernel, debiased,
                                  sigma)
    if kernel == "linear" and names == (layer,):
        return quadratic_scorer(refs[layer], z if preact else jax.nn.relu(z), debiased)
    return _forward_scorer(arch, params, masks, index, z, refs, names, kernel, debiased, sigma,
                           chunk_size, preact, sharding)


def greedy_removal(
    scorer: Scorer,
    mask: np.ndarray,
    steps: int,
    floor: float | None = None,
    tie_rtol: float = 0.0,
    progress: bool = False,
    desc: str = "",
    once: bool = False,
) -> tuple[np.ndarray, list[int], list[float], int]:
    """Greedy removal: ``steps`` times, score the remaining units and remove the best — the
    lowest index among scores ``s`` with ``best − s <= tie_rtol·|best|``; stop before a removal
    scoring below ``floor``. ``once``: score once and remove in that order (each unit keeps
    its score from the start). Returns the new mask, the chosen units, their scores and how
    many of them were removed."""
    mask = np.array(mask, np.float32)
    order: list[int] = []
    scores: list[float] = []
    first = None
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if once:
            first = scorer(mask) if first is None else first
            values = np.where(mask > 0, first, -np.inf)
        else:
            values = scorer(mask)
        if np.isnan(values).any():
            raise FloatingPointError("CKA scores are NaN: are the stimuli or weights finite?")
        best = np.max(values)
        u = int(np.argmax(values >= best - tie_rtol * abs(best)))
        order.append(u)
        scores.append(float(values[u]))
        if floor is not None and values[u] < floor:
            return mask, order, scores, len(order) - 1
        mask[u] = 0.0
    return mask, order, scores, len(order)


def check_options(compare: str, kernel: str, chunk_size: int, greedy: str = "recompute") -> None:
    if greedy not in GREEDY:
        raise ValueError(f"greedy must be one of {GREEDY}, got {greedy!r}")
    if compare not in COMPARES:
        raise ValueError(f"compare must be one of {COMPARES}, got {compare!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


@dataclass(frozen=True)
class CKAConfig:
    """Options of greedy CKA pruning (plain data, validated, hashable).

    ``fraction``: share of a layer's kept units to remove, in [0, 1) (``None`` with a
    ``floor``: as many as the floor allows); ``floor``: the lowest CKA a removal may reach,
    in (0, 1]; ``compare``, ``kernel`` (``"linear"``/``"rbf"``, bandwidth ``sigma`` × median
    distance) and ``debiased`` choose the score (module docstring); ``direction`` and
    ``layers`` the layers visited (default: every layer up to the readout); ``chunk_size``:
    candidates per vectorised call; ``greedy``: ``"recompute"`` or ``"once"``;
    ``sequential``: run the one-candidate-at-a-time twin. ``sharding="candidates"``: each
    chunk of candidates laid over the local devices (:mod:`jaxprune.sharding`), same result.
    """

    fraction: float | None = 0.5
    floor: float | None = None
    compare: str = "layer"
    kernel: str = "linear"
    debiased: bool = False
    sigma: float | None = None
    direction: str = "bottom-up"
    layers: tuple[str, ...] | None = None
    chunk_size: int = 16
    greedy: str = "recompute"
    sequential: bool = False
    sharding: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, str | list):
            object.__setattr__(self, "layers", tuple(
                [self.layers] if isinstance(self.layers, str) else self.layers))
        if self.sigma is not None:
            object.__setattr__(self, "sigma", float(self.sigma))
        check_fraction(self.fraction, allow_none=self.floor is not None)
        check_floor(self.floor)
        check_options(self.compare, self.kernel, self.chunk_size, self.greedy)
        check_direction(self.direction)
        if self.sharding not in (None, "candidates"):
            raise ValueError("CKA pruning searches one network at a time: sharding must be "
                             f"'candidates' or None, got {self.sharding!r}")

    @property
    def score(self) -> dict[str, Any]:
        """The options that define a candidate's score (what the scorers take)."""
        return {"compare": self.compare, "kernel": self.kernel, "debiased": self.debiased,
                "sigma": self.sigma}


def _prune_one(arch: Architecture, params: Params, x: jax.Array, config: CKAConfig,
               masks, seed: int | None, progress: bool) -> PruneResult:
    t0 = time.perf_counter()
    names = layers_in_order(arch, config.layers, config.direction)
    for name in names:
        compared_layers(arch, arch.index(name), config.compare)
    tie_rtol = TIE_ULPS * float(jnp.finfo(x.dtype).eps)
    current = start_masks(arch, masks)
    refs = activations(arch, params, device_masks(current, x.dtype), x)
    scored = preactivation_refs(arch, params, x, current, names) \
        if config.compare == "preact" else refs
    trace = []
    for name in tqdm(names, desc="CKA layers", disable=not progress, leave=False):
        scorer = make_scorer(arch, params, x, current, name, scored,
                             chunk_size=config.chunk_size, sequential=config.sequential,
                             sharding=config.sharding, **config.score)
        steps = n_to_remove(int(current[name].sum()), config.fraction)
        current[name], order, scores, removed = greedy_removal(
            scorer, current[name], steps, config.floor, tie_rtol, progress,
            desc=f"CKA {name}", once=config.greedy == "once")
        trace.append(LayerTrace(name, order, scores, removed,
                                note=f"CKA ({config.compare}) after each removal"))
    final = activations(arch, params, device_masks(current, x.dtype), x)
    readout = arch.readout_layer
    final_score = geometry.cka(refs[readout], final[readout], config.kernel, config.debiased,
                               config.sigma)
    return PruneResult(
        method="cka", masks=current, widths=arch.widths,
        compression_rate=compression_rate(arch, current), trace=trace,
        direction=config.direction, threshold=config.floor, baseline_score=1.0,
        final_score=float(final_score), seed=seed, wall_time_s=time.perf_counter() - t0,
        config={**config.score, "greedy": config.greedy, "fraction": config.fraction,
                "layers": names, "stimuli": int(x.shape[0]), "sequential": config.sequential})


@stackable
def cka_prune(
    arch: Architecture,
    params: Params,
    x: Any,
    config: CKAConfig | None = None,
    *,
    masks: Mapping[str, Any] | None = None,
    seed: int | None = None,
    progress: bool = False,
    **options: Any,
) -> PruneResult:
    """Greedy CKA pruning of one network (``stacked=True``: of every seed of stacked
    params, one result each; see :func:`jaxprune.search._common.stackable`).

    ``x``: stimuli ``[n, *input_shape]``; ``config``: a :class:`CKAConfig`, whose fields
    ``options`` override (``cka_prune(..., fraction=0.3)``); ``masks``: the starting masks
    (default: none). Each layer loses
    ``round(fraction · kept)`` of its kept units, stopping early before a removal whose CKA
    would be below ``floor``. The trace of a layer holds the chosen units and the CKA after
    each removal (``"once"``: each unit's CKA alone; with ``floor``: plus the first refused
    one); ``final_score`` is the CKA of the readout, original vs pruned.
    """
    config = dataclasses.replace(config or CKAConfig(), **options)
    x = stimuli(arch, x, 4 if config.debiased else 3)
    return _prune_one(arch, params, x, config, masks, seed, progress)


def cka_prune_layer(arch: Architecture, params: Params, x: Any, layer: str,
                    **kwargs) -> PruneResult:
    """:func:`cka_prune` of one layer."""
    return cka_prune(arch, params, x, layers=[layer], **kwargs)


def cka_prune_sequential(arch: Architecture, params: Params, x: Any, **kwargs) -> PruneResult:
    """:func:`cka_prune` with ``sequential=True``: the slow, obviously correct twin."""
    return cka_prune(arch, params, x, sequential=True, **kwargs)


def candidate_cka(
    arch: Architecture,
    params: Params,
    x: Any,
    layer: str,
    masks: Mapping[str, Any] | None = None,
    *,
    reference_masks: Mapping[str, Any] | None = None,
    config: CKAConfig | None = None,
    **options: Any,
) -> np.ndarray:
    """CKA of removing each unit of ``layer`` from the network under ``masks`` → ``[width]``
    (``-inf`` for units already removed), against the network under ``reference_masks``
    (default: ``masks``). ``config``/``options``: the score (``compare``, ``kernel``,
    ``debiased``, ``sigma``), ``chunk_size`` and ``sequential`` of a :class:`CKAConfig`."""
    config = dataclasses.replace(config or CKAConfig(), **options)
    arch.index(layer)
    x = stimuli(arch, x, 4 if config.debiased else 3)
    current = start_masks(arch, masks)
    reference = current if reference_masks is None else start_masks(arch, reference_masks)
    refs = preactivation_refs(arch, params, x, reference, [layer]) \
        if config.compare == "preact" \
        else activations(arch, params, device_masks(reference, x.dtype), x)
    scorer = make_scorer(arch, params, x, current, layer, refs, chunk_size=config.chunk_size,
                         sequential=config.sequential, **config.score)
    return scorer(current[layer])


__all__ = [
    "COMPARES",
    "CKAConfig",
    "KERNELS",
    "candidate_cka",
    "cka_prune",
    "cka_prune_layer",
    "cka_prune_sequential",
    "greedy_removal",
    "layerwise_cka",
    "make_scorer",
    "quadratic_scorer",
]
