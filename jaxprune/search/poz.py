"""Greedy layer-wise PoZ pruning that preserves the readout geometry (Truong & Hasson).

In each visited layer, units are ranked by Percentage of Zeros (highest first) and removed
cumulatively while ``fit(target, readout RSM of the pruned network) >= threshold``; the first
removal that breaks it ends the layer (a layer always keeps one unit).

Directions (``PoZConfig.direction``): the papers' ``bottom-up`` and ``top-down`` visit each
layer once; ``alternate`` repeats top-down and bottom-up passes (top-down first) over the
layers as pruned so far, each visit removing further kept units in PoZ order, until a whole
pass removes nothing; ``global`` ranks the units of all layers together by PoZ (a fraction of
zeros, comparable across layers) and removes them cumulatively in that order across layers,
stopping at the first removal that breaks the threshold (a layer's last unit is never a
candidate); ``global-alternate`` continues ``global`` with ``alternate`` passes. Every removal
of every direction is checked against the threshold.

The vectorised search evaluates the candidate removals of a layer chunk by chunk, each chunk
one ``jit(vmap(...))`` call, and stops at the first chunk containing a failure. It uses:

* each layer's pre-activation is computed once per search and reused across visits;
* the next layer's pre-activation is linear in the pruned layer's mask (masking commutes with
  pooling per channel): ``z_next(m) = b + Σ_u m_u C_u`` with ``C_u`` the contribution of unit
  ``u`` alone, so cumulative removals are ``z_full − cumsum(C_order)`` — one pass over the
  next layer's weights per layer, not one per candidate;
* the fit needs only d×d Gram matrices of the readout (:mod:`jaxprune.search.fit`).

:func:`poz_search_sequential` is the straightforward twin (a full forward pass per
candidate, stop at the first failure); both return identical masks.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune import geometry
from jaxprune.masks import compression_rate, full_masks, jaccard, layer_flops
from jaxprune.models import Architecture, Params, apply, seed_slice
from jaxprune.models.arch import layer_geometry
from jaxprune.models.network import (
    channel_last,
    consumer_state,
    preactivations,
    readout_after,
    running_sum,
    unit_contribution,
)
from jaxprune.models.residual import (
    candidate_bytes_residual,
    candidate_flops_residual,
    is_residual,
)
from jaxprune.provenance import check_identity, fingerprint, identity
from jaxprune.search._common import (
    DIRECTIONS,
    POZ_DIRECTIONS,
    check_direction,
    check_stimuli,
    layer_poz,
    layers_in_order,
    poz_ranking,
)
from jaxprune.search.fit import Fit, check_labels, class_average, make_fit
from jaxprune.search.result import LayerTrace, PruneResult, write_json
from jaxprune.sharding import (
    candidate_sharding,
    check_sharding,
    constrain,
    round_up,
    shard_seeds,
)


@dataclass(frozen=True)
class PoZConfig:
    """Options of the PoZ search (plain data).

    ``threshold``: the fit a pruned network must keep, in (0, 1]; ``None`` means 0.8 against
    the unpruned readout, and the unpruned network's own fit against an external RSM.
    ``rank``: ``"once"`` ranks each layer's units by PoZ on the unpruned network (default);
    ``"recompute"`` re-ranks a layer on the network as pruned when the search reaches it.
    ``layers``: the layers to prune (default: every layer up to the readout).
    ``chunk_size``: the most candidates per vectorised call. ``chunk_flops``: a layer's chunk
    is the largest power of two (at most ``chunk_size``) whose estimated cost
    (:func:`candidate_flops`) stays within this many operations, so expensive layers and
    large stimulus sets evaluate few candidates past the first failure and hold little memory.
    ``memory_budget``: bytes a chunk's candidates may hold (:func:`candidate_bytes`, an
    estimate); when given it alone sets each layer's chunk (a power of two, at least 1), in
    place of ``chunk_flops`` and ``chunk_size``. The chunking never changes the result.
    ``sharding``: ``"seeds"`` lays each batch of stacked seeds over the local devices,
    ``"candidates"`` the candidate axis of every chunk (:mod:`jaxprune.sharding`); neither
    changes the result.
    ``precision``: the network's matmuls and convolutions in ``"float32"`` (default, exact),
    or with ``"tf32"``/``"bfloat16"`` inputs on accelerators that have them (faster; the
    decisions may differ: ``benchmarks/precision_effect.py`` measures by how much). XLA:CPU
    computes all three in float32.
    ``class_means``: average the readout features of each class (``labels`` given to the
    search) before the RSM, for the target and every candidate alike (a C×C RSM; an external
    target must then be C×C).
    """

    direction: str = "bottom-up"
    threshold: float | None = None
    metric: str = "r2"
    rsm_method: str = "pearson"
    rank: str = "once"
    layers: tuple[str, ...] | None = None
    chunk_size: int = 32
    chunk_flops: float = 1e9
    poz_eps: float = 0.0
    class_means: bool = False
    sharding: str | None = None
    memory_budget: float | None = None
    precision: str = "float32"


#: ``PoZConfig.precision`` -> ``jax.default_matmul_precision`` for the network's matmuls and
#: convolutions (the fits' Gram products stay float32: :mod:`jaxprune.geometry` asks for it).
MATMUL_PRECISIONS = {"float32": "float32", "tf32": "tensorfloat32", "bfloat16": "bfloat16"}


@dataclass
class PoZSearch:
    """Results of one call: per direction, one :class:`PruneResult` per seed."""

    results: dict[str, list[PruneResult]]
    jaccard: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    identity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "identity": self.identity,
            "results": {d: [r.to_dict() for r in rs] for d, rs in self.results.items()},
            "jaccard": self.jaccard,
            "wall_time_s": self.wall_time_s,
        }


# ----------------------------------------------------------------------------- validation


def check_inputs(
    arch: Architecture,
    x: jax.Array,
    config: PoZConfig,
    target_rsm: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> list[str]:
    """Validate a search before any work; returns the layers to prune in visiting order."""
    check_direction(config.direction, POZ_DIRECTIONS)
    if config.direction.startswith("global") and config.rank != "once":
        raise ValueError(f"direction {config.direction!r} ranks all layers' units together on "
                         "the unpruned network: it needs rank='once'")
    if config.threshold is not None and not 0.0 < config.threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {config.threshold}")
    if config.rank not in ("once", "recompute"):
        raise ValueError(f"rank must be 'once' or 'recompute', got {config.rank!r}")
    if config.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {config.chunk_size}")
    if not config.chunk_flops > 0:
        raise ValueError(f"chunk_flops must be positive, got {config.chunk_flops}")
    check_sharding(config.sharding)
    if config.precision not in MATMUL_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(MATMUL_PRECISIONS)}, got "
                         f"{config.precision!r}")
    if config.memory_budget is not None and not config.memory_budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got "
                         f"{config.memory_budget}")
    if config.sharding == "seeds" and config.direction.startswith("global"):
        raise ValueError(f"direction {config.direction!r} searches one seed at a time: "
                         "sharding='seeds' does not apply; use sharding='candidates'")
    shape = tuple(np.shape(x))
    check_stimuli(arch, shape)
    rows = shape[0]
    if config.class_means:
        rows = class_average(check_labels(labels, shape[0])).shape[0]
    if target_rsm is not None and np.shape(target_rsm) != (rows, rows):
        what = f"{rows} classes" if config.class_means else f"{rows} stimuli"
        raise ValueError(f"target RSM has shape {np.shape(target_rsm)} but there are {what}")
    return layers_in_order(arch, config.layers,
                           "top-down" if config.direction == "top-down" else "bottom-up")


# ----------------------------------------------------------------------------- pure pieces


def candidate_flops(arch: Architecture, index: int, n: int) -> float:
    """Estimated operations to evaluate one candidate removal in layer ``index`` on ``n``
    stimuli: the removed unit's share of the next layer, the layers above it up to the readout
    and the Gram-path fit (``4·d²`` per stimulus for ``d`` readout features)."""
    if is_residual(arch):  # backbones: the same estimate over the residual family's ops
        return candidate_flops_residual(arch, index, n)
    per_layer = layer_flops(arch)
    readout = arch.index(arch.readout_layer)
    geometries, _ = layer_geometry(arch)
    d = int(np.prod(geometries[readout].out_shape))
    cost = 4.0 * d * d
    if index < readout:
        cost += per_layer[arch.layers[index + 1].name] / arch.layers[index].width
        cost += sum(per_layer[arch.layers[j].name] for j in range(index + 2, readout + 1))
    return n * cost


def candidate_bytes(arch: Architecture, index: int, n: int) -> float:
    """Estimated bytes one candidate removal in layer ``index`` holds on ``n`` stimuli: the
    float32 next pre-activation (twice: the unit's contribution and the running difference),
    every activation above it up to the readout, and the fit's d×d Gram matrix."""
    if is_residual(arch):
        return candidate_bytes_residual(arch, index, n)
    geometries, _ = layer_geometry(arch)
    readout = arch.index(arch.readout_layer)
    d = int(np.prod(geometries[readout].out_shape))
    sizes = [int(np.prod(g.out_shape)) for g in geometries]
    held = n * d if index == readout else n * (sizes[index + 1] + sum(sizes[index + 1:readout + 1]))
    return 4.0 * (held + d * d)


def _power_of_two_within(ratio: float) -> int:
    """The largest power of two at most ``ratio`` (1 below 2)."""
    return 1 if ratio < 2 else 2 ** int(np.floor(np.log2(ratio)))


def chunk_for(arch: Architecture, index: int, n: int, config: PoZConfig) -> int:
    """Candidates per call in layer ``index``: set by ``PoZConfig.memory_budget`` when given,
    else by ``chunk_flops`` and ``chunk_size``."""
    most = max(1, arch.layers[index].width - 1)
    if config.memory_budget is not None:
        return int(min(_power_of_two_within(config.memory_budget
                                            / candidate_bytes(arch, index, n)), most))
    chunk = _power_of_two_within(config.chunk_flops / candidate_flops(arch, index, n))
    return int(min(chunk, config.chunk_size, most))


def search_bytes_per_seed(arch: Architecture, n: int, config: PoZConfig) -> float:
    """Estimated bytes one seed of a vectorised search holds on ``n`` stimuli: its cached
    float32 pre-activations of every layer up to the readout (chains), the visited layer's
    activation and its largest chunk of candidates (:func:`chunk_for` ×
    :func:`candidate_bytes`), over the layers."""
    chunks = [chunk_for(arch, i, n, config) * candidate_bytes(arch, i, n)
              for i in range(arch.index(arch.readout_layer) + 1)]
    if is_residual(arch):
        return float(max(chunks))
    geometries, _ = layer_geometry(arch)
    sizes = [int(np.prod(g.out_shape)) for g in geometries[:len(chunks)]]
    return 4.0 * n * (sum(sizes) + max(sizes)) + max(chunks)


def seeds_within_memory(arch: Architecture, n: int, config: PoZConfig,
                        available: float | None = None, share: float = 0.5) -> int | None:
    """The most seeds one vectorised search call may stack: ``share`` of ``available`` bytes
    (default: the host's ``MemAvailable``) over :func:`search_bytes_per_seed`, at least 1;
    None where the available memory is unknown."""
    if available is None:
        from jaxprune.bench import proc_field

        kib = proc_field("/proc/meminfo", "MemAvailable")
        if kib is None:
            return None
        available = kib * 1024.0
    return max(1, int(share * available // search_bytes_per_seed(arch, n, config)))


def poz_order(acts: jax.Array, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unit indices by decreasing PoZ (ties: lower index first) and the PoZ values of
    post-ReLU activations ``acts [n, ..., width]``."""
    return poz_ranking(geometry.poz(acts, eps=eps, conv=acts.ndim == 4)[None])[0]


# ----------------------------------------------------------------------------- the engine


def _layer_chunk_one(arch, index, chunk, spread, params, masks, fit, a, z_prev, ctx, order, k0):
    """Fits of the candidates ``k0+1 .. k0+chunk`` of layer ``index`` (units ``order[:k]``
    removed on top of ``masks``, which keep them; ``order`` starts with a permutation of the
    layer's units) and the next pre-activation with all of the chunk removed. One seed. ``ctx``:
    what the continuation needs besides ``z_prev`` (residual families: the consumer's block
    input; chains: None). ``spread``: the candidate axis's sharding (or None)."""
    units = jax.lax.dynamic_slice_in_dim(order, k0, chunk)
    readout = arch.index(arch.readout_layer)
    if index == readout:
        width = a.shape[-1]
        rank = jnp.zeros(width, jnp.int32).at[order[:width]].set(jnp.arange(width))
        ks = k0 + jnp.arange(1, chunk + 1)
        cand = (rank[None, :] >= ks[:, None]).astype(a.dtype) * masks[arch.readout_layer][None]
        cand = constrain(cand, spread)
        return jax.vmap(lambda m: fit(a * channel_last(m, a.ndim), m))(cand), z_prev
    contrib = jax.vmap(lambda u: unit_contribution(arch, params, index, a, u))(units)
    zs = constrain(z_prev[None] - running_sum(constrain(contrib, spread)), spread)
    kept = masks[arch.readout_layer]
    fits = jax.vmap(lambda z: fit(readout_after(arch, params, masks, index, z, ctx), kept))(zs)
    return fits, zs[-1]


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _layer_chunk_seeds(arch, index, chunk, spread, *per_seed):
    """:func:`_layer_chunk_one` for stacked seeds (every argument has a leading seed axis)."""
    return jax.vmap(partial(_layer_chunk_one, arch, index, chunk, spread))(*per_seed)


@partial(jax.jit, static_argnums=(0, 1))
def _preacts_seeds(arch, start, params, masks, x, z):
    """Pre-activations from layer ``start`` for stacked seeds (``z`` None: from the input)."""
    fn = lambda p, m, zz: preactivations(arch, p, m, x, start, zz)  # noqa: E731
    return jax.vmap(fn)(params, masks, z)


@partial(jax.jit, static_argnums=(0, 1))
def _consumer_seeds(arch, index, params, masks, x):
    """Residual families: :func:`consumer_state` of group ``index`` for stacked seeds."""
    return jax.vmap(lambda p, m: consumer_state(arch, p, m, x, index))(params, masks)


@partial(jax.jit, static_argnums=(0,))
def _unpruned_preacts(arch, params, masks, x):
    return jax.vmap(lambda p, m: preactivations(arch, p, m, x))(params, masks)


@partial(jax.jit, static_argnums=(3, 4))
def _make_fits(readouts, target_rsm, average, metric, rsm_method) -> Fit:
    """One :class:`Fit` per seed, stacked (a pytree with a leading seed axis)."""
    options = dict(metric=metric, rsm_method=rsm_method, average=average)
    if target_rsm is not None:
        one = make_fit(target_rsm=target_rsm, **options)
        return jax.tree.map(lambda t: jnp.broadcast_to(t, (readouts.shape[0], *t.shape)), one)
    return jax.vmap(lambda r: make_fit(r, **options))(readouts)


def _orders(z: jax.Array, eps: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed, :func:`poz_order` of ``relu(z)`` (``z``: ``[S, n, ...]``), in one call."""
    return poz_ranking(layer_poz((z,), eps)[0])


class _State:
    """Per-seed-batch bookkeeping shared by the vectorised and the sequential search."""

    def __init__(self, arch, params, x, config, target_rsm, average):
        self.arch, self.params, self.x, self.config = arch, params, x, config
        self.seeds = jax.tree.leaves(params)[0].shape[0]
        self.spread = candidate_sharding(config.sharding)
        full = full_masks(arch)
        self.masks = {k: jnp.broadcast_to(v, (self.seeds, *v.shape)) for k, v in full.items()}
        pre = _unpruned_preacts(arch, params, self.masks, x)
        readout = arch.index(arch.readout_layer)
        self.pre: dict[int, jax.Array] = dict(enumerate(pre))
        self.fit = _make_fits(jax.nn.relu(pre[readout]).reshape(self.seeds, x.shape[0], -1),
                              target_rsm, average, config.metric, config.rsm_method)
        self.baseline = np.asarray(_masked_fits(self.fit, pre[readout],
                                                self.masks[arch.readout_layer]))
        if config.threshold is not None:
            self.threshold = np.full(self.seeds, config.threshold)
        elif target_rsm is None:
            self.threshold = np.full(self.seeds, 0.8)
        else:
            self.threshold = self.baseline.copy()
        self.orders = {}
        if config.rank == "once":
            values = layer_poz(tuple(self.pre.values()), config.poz_eps)
            self.orders = {j: poz_ranking(v) for j, v in zip(self.pre, values, strict=True)}

    def layer_input(self, index: int) -> jax.Array:
        """Pre-activation of layer ``index`` under the current masks (cached, recomputed from
        the nearest valid layer below when a lower layer was pruned since)."""
        if index not in self.pre:
            start = max(j for j in self.pre if j < index) if any(
                j < index for j in self.pre) else None
            if start is None:
                z = _preacts_seeds(self.arch, 0, self.params, self.masks, self.x, None)
                start = 0
            else:
                z = _preacts_seeds(self.arch, start, self.params, self.masks, self.x,
                                   self.pre[start])
            for j, zj in enumerate(z, start=start):
                self.pre[j] = zj
        return self.pre[index]

    def order(self, index: int, a: jax.Array):
        if self.config.rank == "once":
            return self.orders[index]
        return _orders(a, self.config.poz_eps)

    def kept_in_order(self, index: int) -> list[np.ndarray]:
        """Per seed, the layer's kept units by decreasing PoZ (:meth:`order`)."""
        z = self.layer_input(index)
        mask = np.asarray(self.masks[self.arch.layers[index].name])
        orders = self.order(index, jax.nn.relu(z))
        return [o[mask[s, o] > 0] for s, (o, _) in enumerate(orders)]

    def remove(self, index: int, units: Sequence[np.ndarray]) -> None:
        """Remove ``units[s]`` of layer ``index`` from seed ``s``'s mask."""
        name = self.arch.layers[index].name
        if not any(len(u) for u in units):
            return  # nothing removed: the cached pre-activations above stay valid
        m = np.array(self.masks[name])
        for s, u in enumerate(units):
            m[s, np.asarray(u, int)] = 0.0
        self.masks = {**self.masks, name: jnp.asarray(m)}
        for j in [j for j in self.pre if j > index]:
            del self.pre[j]


def _search_batch(arch, params, x, config, target_rsm, average, layers, sequential, progress):
    """Search one batch of stacked seeds; returns per-seed PruneResults."""
    t0 = time.perf_counter()
    real = jax.tree.leaves(params)[0].shape[0]
    if config.sharding == "seeds":  # padded to the devices; the copies are dropped below
        params, real = shard_seeds(params)
    st = _State(arch, params, x, config, target_rsm, average)
    low = np.flatnonzero(st.baseline[:real] < st.threshold[:real])
    if low.size:
        warnings.warn(
            f"{low.size} of {real} networks fit the target below the threshold before any "
            f"pruning (fit {st.baseline[low[0]]:.3f} < {st.threshold[low[0]]:.3f}; 0 means a "
            "constant readout RSM): nothing can be removed from them", UserWarning, stacklevel=3)
    traces: list[list[LayerTrace]] = [[] for _ in range(st.seeds)]
    visit = partial(_visit, st, traces, sequential)
    passes = _run_direction(st, config.direction, layers, visit, progress)
    final = _final_fits(st)
    wall = time.perf_counter() - t0
    out = []
    for s in range(real):
        masks = {k: np.asarray(v[s]) for k, v in st.masks.items()}
        out.append(PruneResult(
            method="poz", masks=masks, widths=arch.widths,
            compression_rate=compression_rate(arch, masks), trace=traces[s],
            direction=config.direction, threshold=float(st.threshold[s]),
            baseline_score=float(st.baseline[s]), final_score=float(final[s]),
            wall_time_s=wall / real,
            config={"metric": config.metric, "rsm_method": config.rsm_method,
                    "rank": config.rank, "stimuli": int(x.shape[0]),
                    "precision": config.precision,
                    "class_means": config.class_means, "passes": int(passes[s])},
        ))
    return out


def _visit(st: _State, traces, sequential: bool, index: int, units: Sequence[np.ndarray],
           n_cand: np.ndarray, note: str) -> np.ndarray:
    """Remove, per seed, the longest prefix of ``units[s][:n_cand[s]]`` (kept units of layer
    ``index``) whose every cumulative removal keeps the fit at the threshold, and record the
    visit in ``traces``; a seed with ``n_cand < 0`` is not visited. Returns units removed."""
    t0 = time.perf_counter()
    visited, n_cand = n_cand >= 0, np.maximum(n_cand, 0)
    z = st.layer_input(index)
    if sequential:
        removed, scores = _layer_sequential(st, index, units, n_cand)
    else:
        removed, scores = _layer_vectorised(st, index, jax.nn.relu(z), z, units, n_cand)
    name, width = st.arch.layers[index].name, st.arch.layers[index].width
    for s in np.flatnonzero(visited):
        traces[s].append(LayerTrace(name, units[s].tolist(), [float(v) for v in scores[s]],
                                    int(removed[s]), note=f"width {width}{note}",
                                    seconds=time.perf_counter() - t0))
    st.remove(index, [u[:r] for u, r in zip(units, removed, strict=True)])
    return removed


def _layer_pass(st: _State, names: Sequence[str], visit, active: np.ndarray, label: str,
                progress: bool) -> np.ndarray:
    """One visit of every layer of ``names`` in that order, for the ``active`` seeds: each
    visit's candidates are the layer's kept units in PoZ order but the last. Returns the
    units removed per seed."""
    total = np.zeros(st.seeds, int)
    bar = tqdm(names, desc=f"PoZ {label}", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)  # progress per layer: which one is being searched
        index = st.arch.index(name)
        units = st.kept_in_order(index)
        n_cand = np.where(active, [len(u) - 1 for u in units], -1)
        total += visit(index, units, n_cand, "" if label in DIRECTIONS else f", {label}")
    return total


def _run_direction(st: _State, direction: str, layers: Sequence[str], visit,
                   progress: bool) -> np.ndarray:
    """Run the search's visits (module docstring) on ``st``; returns the layer passes made
    per seed (a global ranking counts as none)."""
    everyone = np.ones(st.seeds, bool)
    if direction in DIRECTIONS:
        _layer_pass(st, layers, visit, everyone, direction, progress)
        return np.ones(st.seeds, int)
    if direction.startswith("global"):
        _global_pass(st, layers, visit)
    passes = np.zeros(st.seeds, int)
    if direction.endswith("alternate"):
        active, p = everyone, 0
        while active.any():
            order = DIRECTIONS[1 - p % 2]  # top-down first
            names = sorted(layers, key=st.arch.index, reverse=order == "top-down")
            removed = _layer_pass(st, names, visit, active, f"pass {p + 1} {order}", progress)
            passes += active
            active, p = active & (removed > 0), p + 1
    return passes


def global_steps(arch: Architecture, orders: dict[int, tuple[np.ndarray, np.ndarray]],
                 layers: Sequence[str]) -> list[tuple[int, np.ndarray]]:
    """The global PoZ order of one seed as runs of consecutive units of one layer.

    ``orders[i] = (units by decreasing PoZ, PoZ values)`` of layer ``i``. All layers' units
    but each layer's last-ranked one are sorted by (decreasing PoZ, layer, the layer's own
    rank); consecutive units of the same layer form one step ``(layer index, units)``."""
    entries = []
    for name in layers:
        index = arch.index(name)
        order, poz = orders[index]
        entries += [(-float(poz[u]), index, rank, int(u)) for rank, u in enumerate(order[:-1])]
    steps: list[tuple[int, list[int]]] = []
    for _, index, _, u in sorted(entries):
        if steps and steps[-1][0] == index:
            steps[-1][1].append(u)
        else:
            steps.append((index, [u]))
    return [(i, np.asarray(u, int)) for i, u in steps]


def _global_pass(st: _State, layers: Sequence[str], visit) -> None:
    """The global search of one seed: the steps of :func:`global_steps` in turn, each a visit
    whose candidates are all its units, until a removal fails."""
    if st.seeds != 1:
        raise ValueError("the global search runs one seed at a time (seed_batch=1)")
    steps = global_steps(st.arch, {i: o[0] for i, o in st.orders.items()}, layers)
    for k, (index, units) in enumerate(steps):
        if visit(index, [units], np.asarray([len(units)]), f", global step {k + 1}")[0] \
                < len(units):
            return


@jax.jit
def _masked_fits(fit: Fit, z: jax.Array, mask: jax.Array) -> jax.Array:
    """Per seed: the fit of ``relu(z) * mask`` (z: readout pre-activations ``[S, n, ...]``)."""
    def one(f, zz, m):
        return f(jax.nn.relu(zz) * channel_last(m, zz.ndim), m)

    return jax.vmap(one)(fit, z, mask)


def _final_fits(st: _State) -> np.ndarray:
    z = st.layer_input(st.arch.index(st.arch.readout_layer))
    return np.asarray(_masked_fits(st.fit, z, st.masks[st.arch.readout_layer]))


def _layer_vectorised(st: _State, index: int, a, z, units, n_cand):
    """Chunked candidate evaluation for all seeds (candidate ``k`` of seed ``s``: the units
    ``units[s][:k]`` removed, ``k <= n_cand[s]``); stops at the first chunk with a failure."""
    arch, width = st.arch, st.arch.layers[index].width
    removed = np.asarray(n_cand).copy()
    scores: list[list[float]] = [[] for _ in range(st.seeds)]
    if removed.max(initial=0) == 0:
        return removed, scores
    chunk = chunk_for(arch, index, st.x.shape[0], st.config)
    if st.spread is not None:  # a whole number of candidates per device
        chunk = round_up(chunk, st.spread.mesh.size)
    length = -(-int(removed.max()) // chunk) * chunk + width
    order = jnp.asarray(np.stack([_padded_order(u, width, length) for u in units]))
    readout = arch.index(arch.readout_layer)
    z_prev, ctx = (st.layer_input(index + 1) if index < readout else z), None
    if is_residual(arch) and index < readout:  # backbones: the consumer and its block input
        z_prev, ctx = _consumer_seeds(arch, index, st.params, st.masks, st.x)
    done = removed == 0
    k0 = np.zeros(st.seeds, np.int32)
    while not done.all():
        fits, z_last = _layer_chunk_seeds(arch, index, chunk, st.spread, st.params, st.masks,
                                          st.fit, a, z_prev, ctx, order, jnp.asarray(k0))
        fits = np.asarray(fits)
        for s in np.flatnonzero(~done):
            valid = fits[s][: max(0, min(chunk, n_cand[s] - k0[s]))]
            fail = np.flatnonzero(valid < st.threshold[s])
            scores[s].extend(valid[: fail[0] + 1 if fail.size else None].tolist())
            if fail.size:
                removed[s], done[s] = k0[s] + fail[0], True
            else:
                k0[s] += chunk
                done[s] = k0[s] >= n_cand[s]
        z_prev = z_last
    return removed, scores


def _padded_order(units: np.ndarray, width: int, length: int) -> np.ndarray:
    """``units`` then the layer's other units (a permutation of ``range(width)``), padded to
    ``length`` by repeating the last entry (padded candidates are never read)."""
    rest = np.setdiff1d(np.arange(width), units, assume_unique=True)
    perm = np.concatenate([np.asarray(units, int), rest])
    return np.concatenate([perm, np.repeat(perm[-1:], length - width)]).astype(np.int32)


@partial(jax.jit, static_argnums=(0,))
def _fit_of_masks(arch, params, masks, fit, x):
    _, acts = apply(arch, params, masks, x)
    return fit(acts[arch.readout_layer], masks[arch.readout_layer])


def _layer_sequential(st: _State, index: int, units, n_cand):
    """The reference: one full forward pass per candidate (``units[s][:k]`` removed on top of
    the current masks), stop at the first failure."""
    name = st.arch.layers[index].name
    removed = np.zeros(st.seeds, int)
    scores: list[list[float]] = [[] for _ in range(st.seeds)]
    for s in range(st.seeds):
        params = seed_slice(st.params, s)
        masks = {k: v[s] for k, v in st.masks.items()}
        fit = seed_slice(st.fit, s)
        mask = np.array(masks[name])
        for k in range(1, int(n_cand[s]) + 1):
            mask[units[s][k - 1]] = 0.0
            value = float(_fit_of_masks(st.arch, params, {**masks, name: jnp.asarray(mask)},
                                        fit, st.x))
            scores[s].append(value)
            if value < st.threshold[s]:
                break
            removed[s] = k
    return removed, scores


# ----------------------------------------------------------------------------- public API


def poz_search(
    arch: Architecture,
    params: Params,
    x: jax.Array,
    config: PoZConfig | None = None,
    *,
    target_rsm: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    stacked: bool = False,
    seed_batch: int = 8,
    sequential: bool = False,
    progress: bool = False,
    seed_ids: Sequence[int] | None = None,
) -> list[PruneResult]:
    """Greedy PoZ pruning of one network (or ``stacked=True``: of S networks whose params have
    a leading seed axis) against its unpruned readout RSM or an external ``target_rsm [n, n]``.

    ``x``: stimuli ``[n, *arch.input_shape]``; ``labels [n]``: their classes, needed with
    ``config.class_means``. Seeds are searched ``seed_batch`` at a time in one vectorised
    program, fewer where half the host's available memory would not hold them
    (:func:`seeds_within_memory`; batching never changes a result). ``sequential=True`` runs
    the one-candidate-at-a-time reference twin.
    Returns one :class:`PruneResult` per seed.
    """
    config = config or PoZConfig()
    layers = check_inputs(arch, x, config, target_rsm, labels)
    average = class_average(labels) if config.class_means else None
    x = jnp.asarray(x, jnp.float32)
    if not stacked:
        params = jax.tree.map(lambda p: p[None], params)
    seeds = jax.tree.leaves(params)[0].shape[0]
    if config.direction.startswith("global"):
        seed_batch = 1  # each seed's global order is its own sequence of layer steps
    elif config.sharding == "seeds":
        seed_batch = round_up(seed_batch, jax.local_device_count())
    elif not sequential and jax.default_backend() == "cpu":  # host memory holds the batch
        seed_batch = min(seed_batch, seeds_within_memory(arch, x.shape[0], config) or seed_batch)
    results: list[PruneResult] = []
    with jax.default_matmul_precision(MATMUL_PRECISIONS[config.precision]):
        for start in range(0, seeds, seed_batch):
            batch = jax.tree.map(lambda p, start=start: p[start:start + seed_batch], params)
            results += _search_batch(arch, batch, x, config, target_rsm, average, layers,
                                     sequential, progress)
    for i, r in enumerate(results):
        r.seed = int(seed_ids[i]) if seed_ids is not None else i
    return results


def poz_search_sequential(arch, params, x, config=None, **kwargs) -> list[PruneResult]:
    """:func:`poz_search` with ``sequential=True``: the slow, obviously-correct reference."""
    return poz_search(arch, params, x, config, sequential=True, **kwargs)


def search_identity(arch: Architecture, params: Params, x, config: PoZConfig,
                    directions: Sequence[str], *, target_rsm=None, labels=None,
                    stacked: bool = False, **extra) -> dict:
    """The run identity of a PoZ search (:mod:`jaxprune.provenance`): what its results depend
    on — parameters, stimuli, labels and target (hashes), every option but the chunking (which
    never changes a result), the directions — plus ``extra`` fields (e.g. data set, split)."""
    options = {k: v for k, v in dataclasses.asdict(config).items()
               if k not in ("direction", "chunk_size", "chunk_flops", "sharding",
                             "memory_budget")}
    if options["precision"] == "float32":  # the identity float32 searches had before the option
        del options["precision"]
    seeds = jax.tree.leaves(params)[0].shape[0] if stacked else 1
    return identity(
        kind="poz_search", family=arch.family, widths=list(arch.widths.values()),
        params=fingerprint(params), seeds=int(seeds), stimuli=int(np.shape(x)[0]),
        stimuli_hash=fingerprint(np.asarray(x, np.float32)),
        labels=None if labels is None or not config.class_means else fingerprint(labels),
        target_rsm=None if target_rsm is None else fingerprint(np.asarray(target_rsm)),
        directions=list(directions), **options, **extra)


def _read_resume(path: Path, expected: dict, directions) -> dict[str, dict[int, PruneResult]]:
    """The finished results of a resume file, after checking that this run wrote it."""
    try:
        saved = json.loads(path.read_text())
        check_identity(saved.get("identity"), expected, path)
        return {d: {int(r["seed"]): PruneResult.from_dict(r)
                    for r in saved.get("results", {}).get(d, [])} for d in directions}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a readable PoZ resume file ({type(e).__name__}: {e}); "
                         "rerun with --fresh to start afresh, or choose another file") from None


def poz_search_directions(
    arch: Architecture,
    params: Params,
    x: jax.Array,
    config: PoZConfig | None = None,
    *,
    directions: Sequence[str] = DIRECTIONS,
    resume_path: str | None = None,
    provenance: dict | None = None,
    **kwargs,
) -> PoZSearch:
    """:func:`poz_search` in each direction, with per-seed Jaccard overlap of the kept units of
    the first two directions. With ``resume_path`` (a JSON file), finished (direction, seed)
    results are saved after every batch of ``seed_batch`` seeds (default 8) and skipped when
    the same call is repeated after an interruption; a file written by a different search
    (:func:`search_identity`, with ``provenance`` as extra fields) is refused."""
    config = config or PoZConfig()
    t0 = time.perf_counter()
    stacked = kwargs.get("stacked", False)
    run_id = search_identity(arch, params, x, config, directions,
                             target_rsm=kwargs.get("target_rsm"), labels=kwargs.get("labels"),
                             stacked=stacked, **(provenance or {}))
    done: dict[str, dict[int, PruneResult]] = {d: {} for d in directions}
    if resume_path is not None and Path(resume_path).exists():
        done = _read_resume(Path(resume_path), run_id, directions)
    seeds = run_id["seeds"]
    seed_batch = kwargs.pop("seed_batch", 8)
    for d in directions:
        cfg = dataclasses.replace(config, direction=d)
        for start in range(0, seeds, seed_batch):
            ids = [s for s in range(start, min(seeds, start + seed_batch)) if s not in done[d]]
            if not ids:
                continue
            batch = jax.tree.map(lambda p, ids=ids: p[np.asarray(ids)], params) if stacked \
                else params
            for r in poz_search(arch, batch, x, cfg, seed_batch=seed_batch, seed_ids=ids,
                                **kwargs):
                done[d][r.seed] = r
            if resume_path is not None:
                write_json(resume_path, {"identity": run_id, "results": {
                    k: [v[s].to_dict() for s in sorted(v)] for k, v in done.items()}})
    results = {d: [done[d][s] for s in range(seeds)] for d in directions}
    overlap = []
    if len(directions) >= 2:
        a, b = results[directions[0]], results[directions[1]]
        overlap = [jaccard(ra.masks, rb.masks) for ra, rb in zip(a, b, strict=True)]
    return PoZSearch(results, overlap, time.perf_counter() - t0, run_id)
