"""Category circuits (method 5; Hamblin, Konkle & Alvarez; Andrade & Konkle): for each output
unit ``t`` (a category), the sparse set of weights that still computes it.

**Scores.** For a weight ``w`` feeding pre-activation ``z`` its contribution on image ``n`` is
``c = a·w`` (input activation times weight; a conv weight contributes at every position), and
the gradient of the target unit ``T_n = logit_t(x_n)`` with respect to it is ``∂T_n/∂z``. So

    score(w) = | mean_n Σ_positions c · ∂T_n/∂c | = | w · mean_n ∂T_n/∂w |

over the scoring images of category ``t`` (weight granularity). At kernel granularity a conv
kernel ``(i → o)`` contributes the map ``C = x_i ⋆ K_io``, and its score is
``| mean_n Σ_p C_p ∂T_n/∂C_p | = | Σ_{kh,kw} w · mean_n ∂T_n/∂w |`` (one score per
input-channel × output-channel kernel). The absolute value is taken after averaging over
images (the first-order estimate of how much removing the weight changes the mean target
value). Fully connected scores (hidden dense layers and the target's column of the head) are
min-max normalised to [0, 1] per layer and category (a constant layer gets 0); conv scores
are left as they are. All categories come from one forward pass and one ``vmap`` of the VJP
over the target units (:func:`raw_scores`); :func:`raw_scores_looped` is its slow twin.

**Circuit substitution accuracy.** With the circuit's output ``u_n + β`` (``u_n``: the target
unit computed with the masked weights, without bias; ``β``: the circuit's free bias) standing
in for the target unit in the unpruned network's output, the network predicts ``t`` iff
``u_n + β > m_n = max_{k≠t} logit_k(x_n)``. ``CSA = P(predict t | image of t) − P(predict t |
other image)``; for the unpruned network the prediction is its plain argmax.

**Bias fit** (:func:`fit_bias`, an exact 1-D search). ``CSA(β)`` is a step function of ``β``
that changes only where ``β`` crosses some ``d_n = m_n − u_n``. Every distinct partition is
``{n : d_n ≤ d_j}`` for some ``j`` (or nothing), so all ``n`` candidates are evaluated at once
(an ``n × n`` comparison), the best is kept (ties: the smallest ``d_j``) and ``β`` is set
midway between ``d_j`` and the next larger ``d`` (``d_j + 1`` when none): the global maximum of
``CSA(β)`` on the extraction images, not a local one.

**Extraction** (:func:`extract_circuits`). Items (weights; conv kernels at kernel granularity)
are pruned lowest score first, ranked globally within a group: first the fully connected
group (hidden dense layers and the head column), over the sweep of sparsity levels ``s_l``
(``⌊s_l·N⌋`` of the group's ``N`` items removed), with the conv layers intact; the kept level is
the largest one up to which ``CSA ≥ threshold · CSA_unpruned`` holds at every level (the first
failing level ends the sweep). Then the conv group is swept the same way with the fully
connected mask fixed. At every level the circuit that is judged is the **effective mask**
of the level's mask (:func:`effective_masks`: the weights still on a path from the input to
the target unit), so the circuit that is kept is the one that was measured; sparsity is
reported both ways (nominal: the items the level removed; effective). Every (category,
level) pair of a sweep is one element of one ``jax.lax.map`` (chunks of ``vmap``), and work
that no pair changes is done once: the fully connected sweep starts from the unpruned conv
layers' output, computed once; the conv sweep takes the first conv layer from its kernel
contributions (:func:`kernel_contributions`, computed once: the layer is linear in its
kernel mask). ``sequential=True`` runs the twin: one category and one level per call, the
whole masked network from its input with plain convolutions. Biases are never pruned.

**The empty circuit.** CSA substitutes the circuit into the *unpruned* network, so even a
constant output ``β`` (no weight at all) reaches a positive CSA when the other units are
lower on target images; :class:`Circuits` reports that floor (``null_csa``) next to every
circuit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models import HEAD, Architecture, Params, apply, forward_from, linear, transition
from jaxprune.models.arch import layer_geometry
from jaxprune.models.network import channel_last

Granularity = Literal["kernel", "weight"]


def default_levels(n: int = 20, keep: float = 0.7) -> tuple[float, ...]:
    """``n`` increasing sparsities ``1 − keep^k`` for ``k = 1..n`` (0.3, 0.51 … 0.9992)."""
    return tuple(float(1.0 - keep**k) for k in range(1, n + 1))


@dataclass(frozen=True)
class CircuitConfig:
    """Options of :func:`extract_circuits`.

    ``threshold``: the circuit keeps ``CSA ≥ threshold · CSA_unpruned`` (in (0, 1]).
    ``levels``: increasing sparsities in (0, 1) swept per group. ``conv_granularity``:
    ``"kernel"`` (one item per input × output channel) or ``"weight"``. ``chunk``: (category,
    level) pairs per vmapped batch (None: sized from the group's parameter count).
    """

    threshold: float = 0.9
    levels: tuple[float, ...] = field(default_factory=default_levels)
    conv_granularity: Granularity = "kernel"
    chunk: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(s) for s in self.levels))
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        lv = np.asarray(self.levels)
        if lv.size == 0 or np.any(lv <= 0) or np.any(lv >= 1) or np.any(np.diff(lv) <= 0):
            raise ValueError(f"levels must be strictly increasing sparsities in (0, 1), got "
                             f"{list(self.levels)}")
        if self.conv_granularity not in ("kernel", "weight"):
            raise ValueError(f"conv_granularity must be 'kernel' or 'weight', got "
                             f"{self.conv_granularity!r}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


# ----------------------------------------------------------------------------- checks


def check_categories(arch: Architecture, categories: Sequence[int]) -> np.ndarray:
    """``categories`` as int32, each in ``[0, num_classes)``, no duplicates."""
    cats = np.asarray(list(categories), dtype=np.int64)
    if cats.size == 0:
        raise ValueError("no category given")
    bad = [int(c) for c in cats if not 0 <= c < arch.num_classes]
    if bad:
        raise ValueError(f"categories {bad} are out of range: {arch.family} has "
                         f"{arch.num_classes} output units (0..{arch.num_classes - 1})")
    if len(set(cats.tolist())) != cats.size:
        raise ValueError(f"duplicate categories: {cats.tolist()}")
    return cats.astype(np.int32)


def check_image_set(labels: np.ndarray, categories: np.ndarray, what: str) -> None:
    """Every target category has images in ``labels``, and some other image exists."""
    labels = np.asarray(labels)
    missing = [int(c) for c in categories if not np.any(labels == c)]
    if missing:
        raise ValueError(f"the {what} set has no image of categories {missing}: give images "
                         f"of every target category")
    lonely = [int(c) for c in categories if np.all(labels == c)]
    if lonely and what != "scoring":
        raise ValueError(f"the {what} set has only images of category {lonely[0]}: CSA needs "
                         f"images of other categories too")


# ----------------------------------------------------------------------------- scores


def _target_means(arch: Architecture, params: Params, x: jax.Array, weights: jax.Array,
                  cats: jax.Array) -> jax.Array:
    """``[C]``: ``Σ_n weights[n, c] · logit_{cats[c]}(x_n)`` (weights: 1/count of class c)."""
    logits, _ = apply(arch, params, None, x)
    return jnp.sum(weights * logits[:, cats], axis=0)


def _class_weights(labels: np.ndarray, cats: np.ndarray, dtype=np.float32) -> np.ndarray:
    onehot = (np.asarray(labels)[:, None] == cats[None, :]).astype(dtype)
    return onehot / onehot.sum(0, keepdims=True)


@partial(jax.jit, static_argnums=0)
def _raw_scores(arch, params, x, weights, cats):
    _, vjp = jax.vjp(lambda p: _target_means(arch, p, x, weights, cats), params)
    grads = jax.vmap(vjp)(jnp.eye(cats.shape[0], dtype=params[HEAD]["kernel"].dtype))[0]
    return {name: grads[name]["kernel"] * params[name]["kernel"][None] for name in params}


def raw_scores(arch: Architecture, params: Params, x, labels, categories) -> dict[str, jax.Array]:
    """Signed ``w · mean_n ∂logit_t(x_n)/∂w`` per weight: ``{layer: [C, *kernel.shape]}``, the
    mean over the images of ``labels == t`` for each target ``t`` of ``categories``; one
    forward pass and a VJP vmapped over the C target units."""
    cats = check_categories(arch, categories)
    check_image_set(labels, cats, "scoring")
    dtype = params[HEAD]["kernel"].dtype
    return _raw_scores(arch, params, jnp.asarray(x, dtype),
                       jnp.asarray(_class_weights(labels, cats, dtype)), jnp.asarray(cats))


def raw_scores_looped(arch: Architecture, params: Params, x, labels, categories
                      ) -> dict[str, np.ndarray]:
    """The slow twin of :func:`raw_scores`: one backward pass per (category, image)."""
    cats = check_categories(arch, categories)
    labels = np.asarray(labels)
    grad = jax.jit(jax.grad(lambda p, xi, t: apply(arch, p, None, xi[None])[0][0, t]))
    out = {name: np.zeros((len(cats),) + p["kernel"].shape, np.float64)
           for name, p in params.items()}
    for ci, t in enumerate(cats):
        idx = np.flatnonzero(labels == t)
        for n in idx:
            g = grad(params, jnp.asarray(x[n]), jnp.int32(t))
            for name in out:
                out[name][ci] += np.asarray(g[name]["kernel"] * params[name]["kernel"]) / len(idx)
    return out


def _minmax(s: jax.Array) -> jax.Array:
    """``(s − min) / (max − min)`` over all axes but the first; 0 where the range is 0."""
    axes = tuple(range(1, s.ndim))
    lo, hi = jnp.min(s, axis=axes, keepdims=True), jnp.max(s, axis=axes, keepdims=True)
    span = hi - lo
    return jnp.where(span > 0, (s - lo) / jnp.where(span > 0, span, 1.0), jnp.zeros_like(s))


def item_scores(arch: Architecture, raw: dict[str, jax.Array], categories,
                granularity: Granularity = "kernel") -> dict[str, jax.Array]:
    """Scores of the prunable items from :func:`raw_scores`: dense layers ``[C, in, out]`` and
    the head's target column ``[C, in]`` as ``|raw|`` min-max normalised per layer; conv layers
    ``[C, in, out]`` (``|Σ_{kh,kw} raw|``) at kernel granularity, ``|raw|`` at weight."""
    cats = jnp.asarray(check_categories(arch, categories))
    return _item_scores(arch, raw, cats, granularity)


@partial(jax.jit, static_argnums=(0, 3))
def _item_scores(arch, raw, cats, granularity):
    out = {}
    for layer in arch.layers:
        r = raw[layer.name]
        if layer.kind == "dense":
            out[layer.name] = _minmax(jnp.abs(r))
        elif granularity == "kernel":
            out[layer.name] = jnp.abs(jnp.sum(r, axis=(1, 2)))
        else:
            out[layer.name] = jnp.abs(r)
    column = jnp.take_along_axis(raw[HEAD], cats[:, None, None], axis=2)[..., 0]
    out[HEAD] = _minmax(jnp.abs(column))
    return out


def circuit_scores(arch: Architecture, params: Params, x, labels, categories,
                   granularity: Granularity = "kernel") -> dict[str, jax.Array]:
    """:func:`item_scores` of :func:`raw_scores`: ``{layer: [C, *item_shape]}``."""
    return item_scores(arch, raw_scores(arch, params, x, labels, categories), categories,
                       granularity)


# ----------------------------------------------------------------------------- CSA and bias


def other_max(logits: jax.Array, cats: jax.Array) -> jax.Array:
    """``[C, n]``: ``max_{k ≠ t} logits[n, k]`` for each target ``t`` of ``cats``."""
    k = logits.shape[-1]
    own = jnp.arange(k)[None, :] == cats[:, None]  # [C, K]
    return jnp.max(jnp.where(own[:, None, :], -jnp.inf, logits[None]), axis=-1)


def csa_of(predicted: jax.Array, is_target: jax.Array) -> jax.Array:
    """Hits minus false alarms: mean of ``predicted`` over targets minus over the others
    (along the last axis)."""
    p, t = predicted.astype(jnp.float32), is_target.astype(jnp.float32)
    return jnp.sum(p * t, -1) / jnp.sum(t, -1) - jnp.sum(p * (1 - t), -1) / jnp.sum(1 - t, -1)


def network_csa(logits: jax.Array, labels: jax.Array, cats: jax.Array) -> jax.Array:
    """``[C]`` CSA of the unpruned network itself (its argmax predictions)."""
    pred = jnp.argmax(logits, axis=-1)
    return csa_of(pred[None, :] == cats[:, None], labels[None, :] == cats[:, None])


def fit_bias(d: jax.Array, is_target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(max_β CSA(β), β)`` where image n is predicted the target iff ``β > d[n]``
    (``d = m − u``); the exact search described in the module docstring. ``d``: ``[n]``."""
    le = d[None, :] <= d[:, None]  # [j, n]: image n predicted when beta is just above d_j
    csa = csa_of(le, jnp.broadcast_to(is_target, le.shape))
    j = jnp.argmax(jnp.where(csa == jnp.max(csa), -d, -jnp.inf))  # best; ties: smallest d_j
    above = jnp.where(d > d[j], d, jnp.inf)
    nxt = jnp.min(above)
    beta = jnp.where(jnp.isfinite(nxt), 0.5 * (d[j] + nxt), d[j] + 1.0)
    none = csa[j] <= 0.0  # predicting nothing (CSA 0) is as good: beta below every d
    return (jnp.where(none, jnp.zeros_like(csa[j]), csa[j]),
            jnp.where(none, jnp.min(d) - 1.0, beta))


def substitution_csa(u: jax.Array, beta: jax.Array, m: jax.Array, is_target: jax.Array
                     ) -> jax.Array:
    """CSA of a circuit output ``u + β`` standing in against the others' maximum ``m``."""
    return csa_of(u + beta > m, is_target)


# ----------------------------------------------------------------------------- circuit forward


def _masked_params(arch: Architecture, params: Params, items: dict[str, jax.Array]) -> Params:
    """Params with each hidden layer's kernel multiplied by its item mask (a conv kernel mask
    ``[in, out]`` broadcast over the kernel taps); other layers unchanged."""
    out = dict(params)
    for layer in arch.layers:
        if layer.name in items:
            m = items[layer.name].astype(jnp.float32)
            if layer.kind == "conv" and m.ndim == 2:
                m = m[None, None]
            out[layer.name] = {**params[layer.name], "kernel": params[layer.name]["kernel"] * m}
    return out


def layer_input(arch: Architecture, params: Params, x: jax.Array, start: int) -> jax.Array:
    """The input of layer ``start`` of the unpruned network (``start = 0``: the network input,
    flattened where a dense layer reads it)."""
    if start == 0:
        return transition(arch, 0, x)
    _, acts = apply(arch, params, None, x)
    return transition(arch, start, acts[arch.layers[start - 1].name])


def kernel_contributions(arch: Architecture, params: Params, x: jax.Array) -> jax.Array:
    """``[n, h, w, in, out]``: the map each kernel ``(in → out)`` of the first (conv) layer
    adds to its output, ``x_in ⋆ K_{in,out}`` (no bias). The layer's pre-activation with a
    kernel mask ``M`` is ``Σ_in M[in, out] · P[..., in, out] + b``: linear in the mask."""
    name, h = arch.layers[0].name, transition(arch, 0, x)
    kernel = params[name]["kernel"]
    zero = jnp.zeros_like(params[name]["bias"])
    maps = [linear(arch, {**params, name: {"kernel": kernel[:, :, i:i + 1], "bias": zero}}, 0,
                   h[..., i:i + 1]) for i in range(kernel.shape[2])]
    return jnp.stack(maps, axis=-2)


def circuit_output(arch: Architecture, params: Params, items: dict[str, jax.Array],
                   cat: jax.Array, h: jax.Array, start: int = 0,
                   first: jax.Array | None = None) -> jax.Array:
    """``[n]``: the target unit ``cat`` without its bias, computed from ``h`` (the input of
    layer ``start``) through the layers ``start..`` with their weights masked by ``items``;
    ``items[HEAD]`` ``[in]`` masks the target's column of the head. ``first``: the first conv
    layer's :func:`kernel_contributions` (``start = 0``, kernel-structured masks): its
    pre-activation is then the masked sum of those maps instead of a convolution."""
    p = _masked_params(arch, params, items)
    if first is None:
        z = linear(arch, p, start, h)
    else:
        name = arch.layers[0].name
        m = items[name] if items[name].ndim == 2 else jnp.any(items[name], axis=(0, 1))
        z = jnp.einsum("...io,io->...o", first, m.astype(first.dtype))
        z = z + channel_last(params[name]["bias"], z.ndim)
    _, acts = forward_from(arch, p, None, start, z)
    n = len(arch.layers)
    hh = transition(arch, n, acts[arch.layers[-1].name])
    column = jnp.take(params[HEAD]["kernel"], cat, axis=1)
    return hh @ (column * items[HEAD].astype(jnp.float32))


def _element(arch, params, ranks, fixed, cats, h, first, m, is_target, start, ci, k):
    """One (category, level) pair of a sweep: mask the group at removal count ``k``, compute
    the circuit output, fit its bias: ``(CSA, β)``."""
    items = {name: r[ci] >= k for name, r in ranks.items()}
    items.update({name: f[ci] for name, f in fixed.items()})
    u = circuit_output(arch, params, _effective_one(arch, items), cats[ci], h, start, first)
    return fit_bias(m[ci] - u, is_target[ci])


@partial(jax.jit, static_argnames=("arch", "start", "chunk"))
def _sweep_batched(arch, params, ranks, fixed, cats, h, first, m, is_target, cat_idx, counts,
                   *, start, chunk):
    def one(args):
        return _element(arch, params, ranks, fixed, cats, h, first, m, is_target, start, *args)

    return jax.lax.map(one, (cat_idx, counts), batch_size=chunk)


@partial(jax.jit, static_argnames=("arch",))
def _sweep_one(arch, params, ranks, fixed, cats, x, m, is_target, ci, k):
    """The twin's pair: the whole masked network from its input, plain convolutions."""
    return _element(arch, params, ranks, fixed, cats, x, None, m, is_target, 0, ci, k)


# ----------------------------------------------------------------------------- extraction


def group_ranks(scores: dict[str, jax.Array], names: Sequence[str]) -> dict[str, jax.Array]:
    """Rank (0 = lowest score, pruned first) of every item of the layers ``names`` among all
    of them, per category: ``{layer: int32 [C, *item_shape]}``; ties go to the earlier layer
    and the lower flat index (a stable sort)."""
    return _group_ranks({n: scores[n] for n in names}, tuple(names))


@partial(jax.jit, static_argnums=1)
def _group_ranks(scores, names):
    c = scores[names[0]].shape[0]
    flat = jnp.concatenate([scores[n].reshape(c, -1) for n in names], axis=1)
    order = jnp.argsort(flat, axis=1, stable=True)
    total = flat.shape[1]
    rows = jnp.arange(c, dtype=order.dtype)[:, None]
    ranks = jnp.zeros_like(order).at[rows, order].set(
        jnp.broadcast_to(jnp.arange(total, dtype=order.dtype), order.shape))
    out, offset = {}, 0
    for n in names:
        size = int(np.prod(scores[n].shape[1:]))
        out[n] = ranks[:, offset:offset + size].reshape(scores[n].shape)
        offset += size
    return out


def kept_levels(csa: np.ndarray, baseline: np.ndarray, threshold: float) -> np.ndarray:
    """``[C]`` index of the largest level up to which ``csa[c, :] ≥ threshold · baseline[c]``
    holds at every level (``csa [C, L]``, level 0 = unpruned group); -1 if level 0 fails."""
    passes = np.asarray(csa) >= threshold * np.asarray(baseline)[:, None]
    return np.cumprod(passes, axis=1).sum(axis=1).astype(np.int64) - 1


def _chunk(arch: Architecture, params: Params, n_images: int, elements: int) -> int:
    """(category, level) pairs per vmapped batch: about 40 MB of masked weights and
    activations (float32) per batch (larger batches ran no faster on a 2-core CPU and
    compile longer: conv layers with stacked kernels run as one convolution per pair)."""
    weights = sum(int(np.prod(p["kernel"].shape)) for p in params.values())
    acts = sum(int(np.prod(g.out_shape)) for g in layer_geometry(arch)[0])
    per = weights + n_images * acts
    return int(max(1, min(elements, 1e7 // per)))


@dataclass
class GroupSweep:
    """One group's sweep: ``counts[l]`` items removed at level l (level 0: none),
    ``csa``/``beta`` ``[C, L+1]`` on the extraction images, ``kept_level`` ``[C]``."""

    layers: list[str]
    items: int
    counts: np.ndarray
    csa: np.ndarray
    beta: np.ndarray
    kept_level: np.ndarray

    @property
    def sparsity(self) -> np.ndarray:
        """``[C]`` fraction of the group's items removed at the kept level."""
        return self.counts[np.maximum(self.kept_level, 0)] / self.items


def _sweep(arch, params, ranks, fixed, cats, inputs, m, is_target, counts, start, chunk,
           sequential) -> tuple[np.ndarray, np.ndarray]:
    """``(csa, beta)`` ``[C, L]`` for every category × removal count: one chunked
    ``lax.map`` call over ``inputs = (h, first)``, or (``sequential``, ``inputs`` = the
    network input) one call per pair."""
    n_c, n_l = len(cats), len(counts)
    if sequential:
        args = (params, ranks, fixed, jnp.asarray(cats), inputs, m, is_target)
        out = [[_sweep_one(arch, *args, jnp.int32(c), jnp.int32(k))
                for k in counts] for c in range(n_c)]
        csa = np.array([[float(v[0]) for v in row] for row in out], np.float32)
        beta = np.array([[float(v[1]) for v in row] for row in out], np.float32)
        return csa, beta
    cat_idx = jnp.repeat(jnp.arange(n_c, dtype=jnp.int32), n_l)
    ks = jnp.tile(jnp.asarray(counts, jnp.int32), n_c)
    size = chunk or _chunk(arch, params, m.shape[1], n_c * n_l)
    csa, beta = _sweep_batched(arch, params, ranks, fixed, jnp.asarray(cats), *inputs, m,
                               is_target, cat_idx, ks, start=start, chunk=size)
    return np.asarray(csa).reshape(n_c, n_l), np.asarray(beta).reshape(n_c, n_l)


def _run_group(arch, params, scores, names, fixed, cats, inputs, m, is_target, baseline,
               config, start, sequential) -> tuple[GroupSweep, dict[str, jax.Array]]:
    """Sweep one group; returns the sweep and its kept item masks ``{layer: bool [C, ...]}``."""
    ranks = group_ranks(scores, names)
    total = sum(int(np.prod(scores[n].shape[1:])) for n in names)
    counts = np.array([0] + [int(np.floor(s * total)) for s in config.levels], np.int64)
    csa, beta = _sweep(arch, params, ranks, fixed, cats, inputs, m, is_target, counts, start,
                       config.chunk, sequential)
    kept = kept_levels(csa, baseline, config.threshold)
    k_kept = jnp.asarray(counts[np.maximum(kept, 0)], jnp.int32)
    items = _kept_items(ranks, k_kept)
    return GroupSweep(list(names), total, counts, csa, beta, kept), items


@jax.jit
def _kept_items(ranks, k):
    return {n: r >= k.reshape((-1,) + (1,) * (r.ndim - 1)) for n, r in ranks.items()}


@dataclass
class Circuits:
    """The circuits of ``categories`` of one network.

    ``groups``: the sweeps, ``"dense"`` then ``"conv"`` (when the network has conv layers);
    ``items``: the extracted item masks ``{layer: bool [C, *item_shape]}`` (conv kernels
    ``[C, in, out]`` at kernel granularity, the head ``[C, in]``: the target's column);
    ``effective``: the effective masks at weight level ``{layer: bool [C, *kernel_shape]}``
    (head ``[C, in]``); ``beta``: ``[C]`` fitted biases; ``baseline_csa``: ``[C]`` the
    unpruned network's CSA on the extraction images; ``extraction_csa``: ``[C]`` the
    circuit's there. ``null_beta``/``null_csa``: ``[C]`` the same fit for the empty circuit
    (a constant ``β`` against the other units of the unpruned network), the floor any
    circuit is to be compared with.
    """

    categories: np.ndarray
    levels: tuple[float, ...]
    groups: dict[str, GroupSweep]
    items: dict[str, jax.Array]
    effective: dict[str, jax.Array]
    beta: np.ndarray
    baseline_csa: np.ndarray
    extraction_csa: np.ndarray
    config: CircuitConfig
    null_beta: np.ndarray
    null_csa: np.ndarray


@partial(jax.jit, static_argnames=("arch", "starts", "first"))
def _prepare(arch, params, x, labels, cats, starts, first):
    """Extraction-set quantities every sweep shares: ``m [C, n]``, ``is_target [C, n]``, the
    unpruned CSA ``[C]``, the input of each group's first layer and (``first``) the first
    conv layer's kernel contributions."""
    logits, _ = apply(arch, params, None, x)
    m, is_target = other_max(logits, cats), labels[None, :] == cats[:, None]
    hs = tuple(layer_input(arch, params, x, s) for s in starts)
    maps = kernel_contributions(arch, params, x) if first else None
    return m, is_target, network_csa(logits, labels, cats), hs, maps


def _use_contributions(arch: Architecture, config: CircuitConfig, n: int) -> bool:
    """Whether the conv sweep takes the first layer from :func:`kernel_contributions` (conv
    first layer, kernel items, the maps under 5·10^7 floats)."""
    layer = arch.layers[0]
    if layer.kind != "conv" or config.conv_granularity != "kernel":
        return False
    out = layer_geometry(arch)[0][0]
    return n * int(np.prod(out.out_shape)) * out.in_shape[-1] <= 5e7


def _group_layers(arch: Architecture) -> dict[str, list[str]]:
    groups = {"dense": [la.name for la in arch.layers if la.kind == "dense"] + [HEAD]}
    conv = [la.name for la in arch.layers if la.kind == "conv"]
    if conv:
        groups["conv"] = conv
    return groups


def extract_circuits(arch: Architecture, params: Params, scoring: tuple[Any, Any],
                     extraction: tuple[Any, Any], categories: Sequence[int],
                     config: CircuitConfig | None = None, *, sequential: bool = False
                     ) -> Circuits:
    """Circuits of the output units ``categories`` of one (unstacked) network.

    ``scoring`` and ``extraction``: ``(x [n, ...], labels [n])`` image sets (the scores from
    the first, CSA and the bias fit on the second). ``sequential``: the slow twin (one
    category and one level per call), with the same results.
    """
    config = config or CircuitConfig()
    if not any(la.kind == "dense" for la in arch.layers):
        raise ValueError(f"{arch.family} has no hidden dense layer; circuits need one")
    cats = check_categories(arch, categories)
    check_image_set(scoring[1], cats, "scoring")
    check_image_set(extraction[1], cats, "extraction")
    scores = circuit_scores(arch, params, jnp.asarray(scoring[0]), np.asarray(scoring[1]),
                            cats, config.conv_granularity)
    layers = _group_layers(arch)
    starts = tuple(arch.index(names[0]) if g == "dense" else 0 for g, names in layers.items())
    x = jnp.asarray(extraction[0])
    use_maps = not sequential and _use_contributions(arch, config, x.shape[0])
    m, is_target, baseline, hs, maps = _prepare(arch, params, x, jnp.asarray(extraction[1]),
                                                jnp.asarray(cats), starts, use_maps)
    baseline = np.asarray(baseline)
    groups, items = {}, {}
    fixed = {n: jnp.ones((len(cats),) + scores[n].shape[1:], bool) for n in layers.get("conv", [])}
    for (group, names), start, h in zip(layers.items(), starts, hs, strict=True):
        inputs = hs[-1] if sequential else (h, maps if group == "conv" else None)
        sweep, kept = _run_group(arch, params, scores, names, fixed, cats, inputs, m, is_target,
                                 baseline, config, start, sequential)
        groups[group] = sweep
        items.update(kept)
        fixed = dict(kept)
    last = groups[list(groups)[-1]]
    pick = np.maximum(last.kept_level, 0)
    rows = np.arange(len(cats))
    null_csa, null_beta = jax.vmap(fit_bias)(m, is_target)
    return Circuits(cats, config.levels, groups, items, effective_masks(arch, items),
                    last.beta[rows, pick], baseline, last.csa[rows, pick], config,
                    np.asarray(null_beta), np.asarray(null_csa))


# ----------------------------------------------------------------------------- effective mask


def _connections(kind: str, mask: jax.Array, in_spatial: int) -> jax.Array:
    """Unit-level connectivity ``bool [in_units, out_units]`` (head: ``[in_units]``) of an
    item mask: a conv kernel is present if any tap is; a dense layer reading a flattened
    ``(h, w, c)`` map connects channel c if any of its positions does."""
    if kind == "conv":
        return mask if mask.ndim == 2 else jnp.any(mask, axis=(0, 1))
    per = mask.reshape((in_spatial, -1) + mask.shape[1:])
    return jnp.any(per, axis=0)


def _effective_one(arch: Architecture, items: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """:func:`effective_masks` for one category (items without the category axis)."""
    geos, head_geo = layer_geometry(arch)
    names = [*arch.layer_names, HEAD]
    kinds = [la.kind for la in arch.layers] + ["dense"]
    spatial = [g.in_spatial for g in [*geos, head_geo]]
    conn = [_connections(k, items[n], s) for n, k, s in zip(names, kinds, spatial, strict=True)]
    fwd = [jnp.ones(conn[0].shape[0], bool)]  # fwd[i]: units feeding layer i reach the input
    for c in conn[:-1]:
        fwd.append(jnp.any(fwd[-1][:, None] & c, axis=0))
    back = [conn[-1]]  # back[i]: units of layer i's output that reach the target
    for c in conn[-2:0:-1]:
        back.insert(0, jnp.any(c & back[0][None, :], axis=1))
    back.append(None)
    out = {}
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        m = items[name]
        if kind == "conv":
            k = arch.layers[i].kernel
            m = m if m.ndim == 4 else jnp.broadcast_to(m[None, None], (k, k) + m.shape)
            out[name] = m & fwd[i][None, None, :, None] & back[i][None, None, None, :]
        else:
            alive_in = jnp.tile(fwd[i], spatial[i])
            out[name] = m & (alive_in if back[i] is None else alive_in[:, None] & back[i][None])
    return out


def effective_masks(arch: Architecture, items: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Weight-level masks ``{layer: bool [C, *kernel_shape]}`` (head ``[C, in]``) keeping only
    the weights of ``items`` that lie on a path from the input to the target unit: its input
    unit is reached from the input through kept weights, and its output unit reaches the
    target through kept weights (per channel for conv maps; pooling and flattening keep
    channels apart)."""
    return _effective(arch, items)


@partial(jax.jit, static_argnums=0)
def _effective(arch, items):
    return jax.vmap(partial(_effective_one, arch))(items)


# ----------------------------------------------------------------------------- evaluation


@partial(jax.jit, static_argnames=("arch",))
def _heldout(arch, params, masks, cats, beta, null_beta, x, labels):
    logits, _ = apply(arch, params, None, x)
    m, is_target = other_max(logits, cats), labels[None, :] == cats[:, None]
    h = layer_input(arch, params, x, 0)

    def one(args):
        ci, item = args
        u = circuit_output(arch, params, item, cats[ci], h, 0)
        return substitution_csa(u, beta[ci], m[ci], is_target[ci])

    csa = jax.lax.map(one, (jnp.arange(cats.shape[0]), masks), batch_size=1)
    null = jax.vmap(substitution_csa)(jnp.zeros_like(m), null_beta, m, is_target)
    return csa, network_csa(logits, labels, cats), null


def evaluate_circuits(arch: Architecture, params: Params, circuits: Circuits, x, labels
                      ) -> dict[str, np.ndarray]:
    """CSA on new images ``(x, labels)`` of the circuits (effective masks, fitted biases),
    against the unpruned network: ``{"csa": [C], "baseline": [C], "relative": csa / baseline
    (NaN where the baseline is ≤ 0), "null": [C] (the empty circuit, its own fitted bias)}``."""
    cats = circuits.categories
    check_image_set(labels, cats, "evaluation")
    args = (jnp.asarray(cats), jnp.asarray(circuits.beta), jnp.asarray(circuits.null_beta),
            jnp.asarray(x), jnp.asarray(labels))
    csa, base, null = _heldout(arch, params, circuits.effective, *args)
    base = np.asarray(base)
    rel = np.where(base > 0, np.asarray(csa) / np.where(base > 0, base, 1.0), np.nan)
    return {"csa": np.asarray(csa), "baseline": base, "relative": rel, "null": np.asarray(null)}


def sparsity(arch: Architecture, masks: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """``{layer: [C] fraction of the layer's weights removed, "total": [C]}`` of item or
    weight masks (a conv kernel counts its taps; the head counts the target's column)."""
    removed, total = {}, {}
    for name, m in masks.items():
        m = np.asarray(m)
        per_item = 1
        if m.ndim == 3 and name != HEAD and arch.layers[arch.index(name)].kind == "conv":
            per_item = arch.layers[arch.index(name)].kernel ** 2
        flat = m.reshape(m.shape[0], -1)
        removed[name] = (~flat).sum(1) * per_item
        total[name] = flat.shape[1] * per_item
    out = {name: removed[name] / total[name] for name in masks}
    out["total"] = sum(removed.values()) / sum(total.values())
    return out


def circuit_jaccard(arch: Architecture, masks: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """``{layer: [C, C], "total": [C, C]}`` Jaccard overlap ``|A ∩ B| / |A ∪ B|`` of the
    circuits' weights for every pair of categories, per hidden layer and over all of them (the
    head is left out: each circuit has its own column); NaN (undefined) off the diagonal when
    both are empty."""
    flat = {la.name: np.asarray(masks[la.name]).reshape(np.shape(masks[la.name])[0], -1)
            for la in arch.layers}
    flat["total"] = np.concatenate(list(flat.values()), axis=1)
    out = {}
    for name, f in flat.items():
        c = f.shape[0]
        jac = np.ones((c, c))
        for i in range(c):
            for j in range(i + 1, c):
                union = np.count_nonzero(f[i] | f[j])
                inter = np.count_nonzero(f[i] & f[j])
                jac[i, j] = jac[j, i] = np.nan if union == 0 else inter / union
        out[name] = jac
    return out
