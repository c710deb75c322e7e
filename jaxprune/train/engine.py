"""The epoch engine: the jit-compiled programs that train and evaluate S seeds at once.

:func:`programs` builds, once per ``(arch, tx)``, a one-step program and a whole-epoch
``lax.scan`` that close over the network and the optimizer; their arguments are the state,
the fixed per-seed inputs and the data, so one compilation serves every step and epoch.
:func:`map_seeds` is the one place where seeds run one after another instead of vmapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.models.arch import Architecture
from jaxprune.models.network import Params, apply
from jaxprune.streams import DROPOUT, stream_key
from jaxprune.train.state import SeedInputs, TrainState, concat_seeds, seed_slice

PyTree = Any


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy ``[n]`` of ``logits [n, c]`` and int ``labels [n]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


class Programs(NamedTuple):
    """``step(params, opt_state, active, inputs, x, y, epoch, t, batch [S, B])`` and
    ``epoch(params, opt_state, active, inputs, x, y, epoch, batches [S, steps, B])``, both
    returning ``(params, opt_state, loss [S], accuracy [S])`` (minibatch means)."""

    step: Callable
    epoch: Callable


@functools.lru_cache(maxsize=32)
def programs(arch: Architecture, tx: optax.GradientTransformation) -> Programs:
    """The jitted training programs of ``arch`` under optimizer ``tx`` (cached)."""

    def seed_step(p, o, on, inputs: SeedInputs, x, y, epoch, t, b):
        xb, yb = x[b], y[b]
        key = stream_key(inputs.seeds, DROPOUT, epoch, t)

        def loss_fn(p):
            logits, _ = apply(arch, p, inputs.masks, xb, train=True, key=key,
                              weight_masks=inputs.weight_masks)
            return jnp.mean(cross_entropy(logits, yb)), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes float and int32
            updates, o_new = tx.update(grads, o, p)
        if inputs.keep is not None:  # a pruned entry never changes (decay included)
            updates = jax.tree.map(jnp.multiply, updates, inputs.keep)
        p_new = optax.apply_updates(p, updates)
        p = jax.tree.map(lambda new, old: jnp.where(on, new, old), p_new, p)
        o = jax.tree.map(lambda new, old: jnp.where(on, new, old), o_new, o)
        acc = jnp.mean((jnp.argmax(logits, -1) == yb).astype(jnp.float32))
        return p, o, loss, acc

    axes = (0, 0, 0, 0, None, None, None, None, 0)

    def step(params, opt_state, active, inputs, x, y, epoch, t, batch):
        return jax.vmap(seed_step, in_axes=axes)(params, opt_state, active, inputs, x, y,
                                                 epoch, t, batch)

    def epoch_scan(params, opt_state, active, inputs, x, y, epoch, batches):
        def body(carry, tb):
            p, o, loss, acc = step(*carry, active, inputs, x, y, epoch, *tb)
            return (p, o), (loss, acc)

        ts = jnp.arange(batches.shape[1], dtype=jnp.int32)
        (params, opt_state), (losses, accs) = jax.lax.scan(
            body, (params, opt_state), (ts, jnp.swapaxes(batches, 0, 1)))
        return params, opt_state, jnp.mean(losses, 0), jnp.mean(accs, 0)

    return Programs(jax.jit(step), jax.jit(epoch_scan))


def map_seeds(fn: Callable, per_seed: Sequence[PyTree], shared: Sequence[Any], *,
              loop: bool, which: Sequence[int] | None = None) -> PyTree:
    """``fn(*per_seed, *shared)`` over the leading seed axis of ``per_seed``: one vmapped
    call (``loop`` False), or one call per seed in ``which`` (default: all) on slices with a
    seed axis of 1, concatenated: the seeds of ``which`` only, in that order."""
    if not loop:
        return fn(*per_seed, *shared)
    n = jax.tree.leaves(per_seed)[0].shape[0]
    which = range(n) if which is None else which
    return concat_seeds([fn(*(seed_slice(a, s) for a in per_seed), *shared) for s in which])


def run_epoch(arch: Architecture, tx, state: TrainState, inputs: SeedInputs, x, y,
              epoch: int, batches: jax.Array, *, scan: bool, loop: bool):
    """Every step of epoch ``epoch`` (``batches [S, steps, B]``) for every active seed;
    returns the new state and the mean minibatch loss and accuracy ``[S]`` (NaN for seeds
    that were already stopped, when run seed by seed)."""
    prog = programs(arch, tx)
    e = jnp.int32(epoch)

    def run(params, opt_state, active, inputs, batches):
        if scan:
            return prog.epoch(params, opt_state, active, inputs, x, y, e, batches)
        losses, accs = [], []
        for t in range(batches.shape[1]):
            params, opt_state, loss, acc = prog.step(params, opt_state, active, inputs, x, y, e,
                                                     jnp.int32(t), batches[:, t])
            losses.append(loss)
            accs.append(acc)
        return params, opt_state, jnp.mean(jnp.stack(losses), 0), jnp.mean(jnp.stack(accs), 0)

    per_seed = (state.params, state.opt_state, state.active, inputs, batches)
    which = np.flatnonzero(np.asarray(state.active)) if loop else None
    params, opt_state, loss, acc = map_seeds(run, per_seed, (), loop=loop, which=which)
    if loop:  # scatter the seeds that ran back into the stack
        idx = jnp.asarray(which)
        params = jax.tree.map(lambda a, b: a.at[idx].set(b), state.params, params)
        opt_state = jax.tree.map(lambda a, b: a.at[idx].set(b), state.opt_state, opt_state)
        nan = jnp.full(state.active.shape, jnp.nan, jnp.float32)
        loss, acc = nan.at[idx].set(loss), nan.at[idx].set(acc)
    return state._replace(params=params, opt_state=opt_state), loss, acc


@partial(jax.jit, static_argnames=("arch", "chunk"))
def _evaluate_indices(arch, params, masks, weight_masks, x, y, idx, chunk):
    """Sum of correct predictions and of losses ``[S]`` over ``x[idx]`` (``idx`` ``[n]``
    shared or ``[S, n]`` per seed; ``-1`` entries are padding)."""
    per_seed = idx.ndim == 2
    n = idx.shape[-1]
    pad = -n % chunk
    idx = jnp.pad(idx, [(0, 0)] * (idx.ndim - 1) + [(0, pad)], constant_values=-1)
    idx = jnp.moveaxis(idx.reshape(*idx.shape[:-1], -1, chunk), -2, 0)  # [chunks, ..., chunk]

    def one(p, m, wm, xb, yb, valid):
        logits, _ = apply(arch, p, m, xb, weight_masks=wm)
        correct = jnp.where(valid, jnp.argmax(logits, -1) == yb, False)
        loss = jnp.where(valid, cross_entropy(logits, yb), 0.0)
        return jnp.sum(correct.astype(jnp.float32)), jnp.sum(loss)

    def body(totals, ic):
        valid = ic >= 0
        ic = jnp.maximum(ic, 0)
        axes = 0 if per_seed else None
        c, l = jax.vmap(one, in_axes=(0, 0, 0, axes, axes, axes))(
            params, masks, weight_masks, x[ic], y[ic], valid)
        return (totals[0] + c, totals[1] + l), None

    zeros = jnp.zeros((jax.tree.leaves(params)[0].shape[0],), jnp.float32)
    (correct, loss), _ = jax.lax.scan(body, (zeros, zeros), idx)
    return correct, loss


def evaluate_stack(arch: Architecture, params: Params, masks, weight_masks, x, y,
                   idx: jax.Array, chunk: int, *, loop: bool = False) -> tuple[np.ndarray, ...]:
    """Accuracy and mean cross-entropy ``[S]`` of stacked ``params`` on ``x[idx]`` (``idx``
    ``[n]`` shared or ``[S, n]`` per seed), ``chunk`` examples per seed at a time."""
    def run(p, m, wm, *i):
        return _evaluate_indices(arch, p, m, wm, x, y, i[0] if i else idx, min(chunk, n))

    n = idx.shape[-1]
    per_seed = (params, masks, weight_masks) + ((idx,) if idx.ndim == 2 else ())
    correct, loss = map_seeds(run, per_seed, (), loop=loop)
    return np.asarray(correct / n), np.asarray(loss / n)


@jax.jit
def early_stopping(state: TrainState, score: jax.Array, epoch: jax.Array, patience: jax.Array,
                   min_delta: jax.Array) -> TrainState:
    """``state`` after an epoch with validation ``score [S]`` (lower is better): per seed,
    the best score, parameters and epoch, and the stop flags (``patience`` < 0: never)."""
    was_active = state.active
    improved = was_active & (score < state.best_score - min_delta)
    bad = jnp.where(improved, 0, state.bad_epochs + was_active.astype(jnp.int32))
    stop = was_active & (patience > 0) & (bad >= patience)
    best = jax.tree.map(
        lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
        state.params, state.best_params)
    return state._replace(
        best_params=best, best_score=jnp.where(improved, score, state.best_score),
        best_epoch=jnp.where(improved, epoch, state.best_epoch), bad_epochs=bad,
        active=was_active & ~stop, stopped_epoch=jnp.where(stop, epoch, state.stopped_epoch))
