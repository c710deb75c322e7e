"""Training with optax: many seeds in one program, early stopping, masked fine-tuning.

S networks (one per seed) are trained together: their parameters and optimizer states are
stacked on a leading axis and one jit-compiled epoch (``jax.lax.scan`` over the minibatches,
``jax.vmap`` over the seeds) updates all of them. Every random stream of a seed is derived
from the seed alone, so a seed gives the same network whether it is trained alone or in a
stack:

- initialisation: ``init_params(arch, jax.random.key(seed))`` (as ``init_stack``);
- validation split: ``fold_in(key(seed), 1)``;
- data order of epoch e: ``fold_in(fold_in(key(seed), 2), e)``;
- dropout of step t of epoch e: ``fold_in(fold_in(fold_in(key(seed), 3), e), t)``.

Early stopping is per seed: a seed whose validation score has not improved for ``patience``
epochs is frozen inside the stack (its updates are discarded) and keeps its best-validation
parameters. Unit masks (shared ``{layer: [width]}`` or per seed ``{layer: [S, width]}``) are
held fixed during training: a removed unit's output is exactly zero and its incoming and
outgoing weights get exactly zero gradient. With a checkpoint folder, :func:`fit` saves the
whole training state after every epoch and resumes from it; since the random streams are
functions of (seed, epoch, step), a resumed run ends with the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxprune import checkpoint as ckpt
from jaxprune.models.arch import Architecture
from jaxprune.models.network import Params, apply, init_params
from jaxprune.provenance import fingerprint

PyTree = Any
STREAM_SPLIT, STREAM_SHUFFLE, STREAM_DROPOUT = 1, 2, 3
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
           "test_accuracy")
CHECKPOINT_PREFIX = "epoch_"
CHECKPOINTS_KEPT = 2


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters as plain data.

    ``patience``: epochs without a validation improvement larger than ``min_delta`` before a
    seed stops (None: never stop early). ``monitor``: the validation score early stopping and
    best-parameter selection use. ``val_fraction``: share of the training arrays held out for
    validation (per seed, from the seed) when no explicit validation set is given; 0 = none.
    ``restore_best``: return the best-validation parameters rather than the last ones.
    ``weight_decay``: L2 penalty added to the gradient. ``eval_batch_size``: examples per
    seed per evaluation chunk. ``scan``: run an epoch as one ``lax.scan`` (True) or as one
    jit call per step (False); None: scan except on CPU (see :func:`use_scan`).
    ``seed_batching``: "vmap" trains the S seeds in one vmapped program; "loop" runs them one
    after another through the one-seed program, with the same results (it holds one seed's
    activations at a time; conv layers are stacked without grouped convolutions on CPU, see
    :mod:`jaxprune.models.conv`, so "vmap" is as fast there). The last
    ``n_train % batch_size`` examples of each epoch's shuffled order are skipped (a different
    subset each epoch).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    patience: int | None = None
    min_delta: float = 0.0
    monitor: Literal["loss", "accuracy"] = "loss"
    val_fraction: float = 0.1
    restore_best: bool = True
    seeds: tuple[int, ...] = (0,)
    eval_batch_size: int = 256
    scan: bool | None = None
    seed_batching: Literal["vmap", "loop"] = "vmap"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.seed_batching not in ("vmap", "loop"):
            raise ValueError(f"seed_batching must be 'vmap' or 'loop', got {self.seed_batching!r}")
        if self.monitor not in ("loss", "accuracy"):
            raise ValueError(f"monitor must be 'loss' or 'accuracy', got {self.monitor!r}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"duplicate seeds: {self.seeds}")
        if any(s < 0 or s >= 2**32 for s in self.seeds):
            raise ValueError("seeds must be in [0, 2**32)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.epochs < 0 or self.eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be >= 1, epochs >= 0")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``TrainConfig.from_dict`` inverts it)."""
        data = dataclasses.asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return cls(**{**data, "seeds": tuple(data["seeds"])})


class Metrics(NamedTuple):
    """Accuracy and mean cross-entropy, each ``[S]`` for stacked params or a scalar."""

    accuracy: jax.Array
    loss: jax.Array


@dataclass(frozen=True)
class EpochInfo:
    """What the ``on_epoch_end`` hook of :func:`fit` receives after each epoch."""

    epoch: int  # 0-based index of the epoch just finished
    metrics: dict[str, np.ndarray]  # name -> [S]; NaN for seeds that were already stopped
    active: np.ndarray  # bool [S]: seeds still training
    params: Params  # stacked current parameters


@dataclass
class TrainResult:
    """The outcome of :func:`fit`.

    ``params``: stacked ``[S, ...]`` parameters returned (the best-validation ones when
    ``config.restore_best`` and a validation set exist, else the last ones).
    ``best_epoch``: ``[S]`` 0-based epoch index of each seed's best validation score (-1:
    none); printed counted from 1, as are all epochs shown to users.
    ``stopped_epoch``: ``[S]`` epoch after which early stopping froze a seed (-1: never).
    ``history``: ``{metric: [epochs_run, S]}`` for the metrics in ``METRICS``; train metrics
    are means over the epoch's minibatches (in training mode); NaN where a seed was stopped
    or a set is absent. ``epoch_seconds``: wall time of each epoch run by this call
    (training, evaluation and checkpointing; the first includes compilation);
    ``seconds_before``: the epochs' wall time in earlier calls of a resumed run.
    """

    params: Params
    arch: Architecture
    config: TrainConfig
    best_epoch: np.ndarray
    stopped_epoch: np.ndarray
    history: dict[str, np.ndarray]
    epochs_run: int
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_from: int = 0
    seconds_before: float = 0.0

    @property
    def total_seconds(self) -> float:
        """Wall time of every epoch of the run, summed over resumed calls."""
        return self.seconds_before + float(sum(self.epoch_seconds))

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.config.seeds

    @property
    def returned_epoch(self) -> np.ndarray:
        """``[S]``: the epoch whose parameters :attr:`params` holds (-1: the initial ones)."""
        last = np.where(self.stopped_epoch >= 0, self.stopped_epoch, self.epochs_run - 1)
        if self.config.restore_best and np.any(np.isfinite(self.history["val_loss"])):
            return self.best_epoch
        return last.astype(np.int64)

    def final(self) -> dict[str, np.ndarray]:
        """``{metric: [S]}`` at :attr:`returned_epoch` (NaN where unavailable)."""
        epoch = self.returned_epoch
        out = {}
        for name, values in self.history.items():
            out[name] = np.array([
                values[e, s] if 0 <= e < values.shape[0] else np.nan
                for s, e in enumerate(epoch)
            ])
        return out

    def summary(self) -> str:
        """A few lines: mean ± sd over seeds (ddof=1) of the final metrics, best epochs and
        early stops."""
        c = self.config
        opt = f"{c.optimizer} lr={c.learning_rate:g}"
        if c.optimizer == "sgd" and c.momentum:
            opt += f" momentum={c.momentum:g}"
        lines = [
            f"fit {self.arch.family}: {len(c.seeds)} seed(s), {self.epochs_run} epoch(s) "
            f"({opt}, batch {c.batch_size}), {sum(self.epoch_seconds):.1f} s this call"
            + (f", resumed after epoch {self.resumed_from} ({self.total_seconds:.1f} s in all)"
               if self.resumed_from else ""),
        ]
        final = self.final()

        def ms(v, digits=4):
            v = np.asarray(v, np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                return "n/a"
            sd = v.std(ddof=1) if v.size > 1 else 0.0
            return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"

        for split in ("train", "val", "test"):
            acc, loss = final[f"{split}_accuracy"], final[f"{split}_loss"]
            if np.any(np.isfinite(acc)):
                lines.append(f"  {split:<5} accuracy {ms(acc)}   loss {ms(loss)}")
        if np.any(self.best_epoch >= 0):
            stopped = int(np.sum(self.stopped_epoch >= 0))
            lines.append(
                f"  best epoch {ms(self.best_epoch + 1, 1)} (counted from 1); "
                f"stopped early: {stopped}/{len(c.seeds)}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- building blocks


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam, or SGD with optional (Nesterov) momentum; L2 weight decay added to gradients.
    Equal settings give the same (cached) object, so jit caches keyed on it are reused."""
    return _optimizer(config.optimizer, config.learning_rate, config.momentum, config.nesterov,
                      config.weight_decay)


@functools.lru_cache(maxsize=64)
def _optimizer(name: str, lr: float, momentum: float, nesterov: bool, weight_decay: float):
    if name == "adam":
        tx = optax.adam(lr)
    else:
        tx = optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    if weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx


def stream_key(seed: jax.Array | int, *path: jax.Array | int) -> jax.Array:
    """The key ``fold_in(...fold_in(key(seed), path[0])..., path[-1])`` of a seed's stream."""
    key = jax.random.key(jnp.asarray(seed, jnp.uint32))
    for p in path:
        key = jax.random.fold_in(key, p)
    return key


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy ``[n]`` of ``logits [n, c]`` and int ``labels [n]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


_init_one = jax.jit(init_params, static_argnums=0)


def _init_stack(arch: Architecture, seeds: np.ndarray) -> Params:
    """``init_stack(arch, seeds)`` (bit-identical), computed seed by seed so that one
    compilation serves every stack size (XLA compiles the random number generator slowly)."""
    per_seed = [_init_one(arch, jax.random.key(int(s))) for s in seeds]
    return jax.tree.map(lambda *a: jnp.stack(a), *per_seed)


@partial(jax.jit, static_argnums=1)
def _split_orders(seeds: jax.Array, n: int) -> jax.Array:
    """``[S, n]`` int32: each seed's permutation of the examples for the validation split."""
    return jax.vmap(
        lambda s: jax.random.permutation(stream_key(s, STREAM_SPLIT), n).astype(jnp.int32)
    )(seeds)


@partial(jax.jit, static_argnums=0)
def _opt_init(tx: optax.GradientTransformation, params: Params) -> PyTree:
    """Stacked optimizer states of stacked ``params``."""
    return jax.vmap(tx.init)(params)


def _param_rank(arch: Architecture) -> int:
    shape = jax.eval_shape(lambda: init_params(arch, jax.random.key(0)))
    return len(jax.tree.leaves(shape)[0].shape)


def is_stacked(arch: Architecture, params: Params) -> bool:
    """Whether ``params`` carry a leading seed axis."""
    return len(jax.tree.leaves(params)[0].shape) == _param_rank(arch) + 1


def _stack_masks(masks: Mapping[str, Any] | None, n_seeds: int) -> dict[str, jax.Array]:
    """Unit masks as ``{layer: float32 [S, width]}`` (shared masks are broadcast)."""
    out = {}
    for name, m in (masks or {}).items():
        m = jnp.asarray(m, jnp.float32)
        if m.ndim == 1:
            m = jnp.broadcast_to(m, (n_seeds, m.shape[0]))
        if m.ndim != 2 or m.shape[0] != n_seeds:
            raise ValueError(f"mask {name!r} must be [width] or [{n_seeds}, width], got {m.shape}")
        out[name] = m
    return out


def _stack_tree(arch: Architecture, tree: PyTree | None, n_seeds: int) -> PyTree | None:
    """A params-shaped tree (params or weight masks) stacked to ``[S, ...]``."""
    if tree is None:
        return None
    tree = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)
    if is_stacked(arch, tree):
        n = jax.tree.leaves(tree)[0].shape[0]
        if n != n_seeds:
            raise ValueError(f"stacked params have {n} seeds, the config has {n_seeds}")
        return tree
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n_seeds, *a.shape)), tree)


def _as_data(x, y) -> tuple[jax.Array, jax.Array]:
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    y = y if isinstance(y, jax.Array) else np.asarray(y)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point (normalised images), got {x.dtype}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"y must be integer class labels, got {y.dtype}")
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x [n, ...] and y [n] disagree: {x.shape} and {y.shape}")
    return x, y


# ---------------------------------------------------------------- evaluation


@partial(jax.jit, static_argnames=("arch", "chunk"))
def _evaluate_indices(arch, params, masks, weight_masks, x, y, idx, chunk):
    """Sum of correct predictions and of losses ``[S]`` over ``x[idx]`` (``idx`` ``[n]``
    shared or ``[S, n]`` per seed; ``-1`` entries are padding)."""
    per_seed = idx.ndim == 2
    n = idx.shape[-1]
    pad = -n % chunk
    idx = jnp.pad(idx, [(0, 0)] * (idx.ndim - 1) + [(0, pad)], constant_values=-1)
    idx = idx.reshape(*idx.shape[:-1], -1, chunk)  # [..., chunks, chunk]
    idx = jnp.moveaxis(idx, -2, 0)  # [chunks, ..., chunk]

    def one(p, m, wm, xb, yb, valid):
        logits, _ = apply(arch, p, m, xb, weight_masks=wm)
        correct = jnp.where(valid, jnp.argmax(logits, -1) == yb, False)
        loss = jnp.where(valid, cross_entropy(logits, yb), 0.0)
        return jnp.sum(correct.astype(jnp.float32)), jnp.sum(loss)

    def body(totals, ic):
        valid = ic >= 0
        ic = jnp.maximum(ic, 0)
        xb, yb = x[ic], y[ic]
        axes = 0 if per_seed else None
        c, l = jax.vmap(one, in_axes=(0, 0, 0, axes, axes, axes))(
            params, masks, weight_masks, xb, yb, valid)
        return (totals[0] + c, totals[1] + l), None

    n_seeds = jax.tree.leaves(params)[0].shape[0]
    zeros = jnp.zeros((n_seeds,), jnp.float32)
    (correct, loss), _ = jax.lax.scan(body, (zeros, zeros), idx)
    return correct, loss


def evaluate(
    arch: Architecture,
    params: Params,
    x,
    y,
    masks: Mapping[str, Any] | None = None,
    *,
    weight_masks: Params | None = None,
    batch_size: int = 256,
) -> Metrics:
    """Accuracy and mean cross-entropy of ``params`` on ``x [n, ...]``, ``y [n]``, in chunks
    of ``batch_size`` examples (jit). Stacked ``[S, ...]`` params give ``[S]`` arrays, single
    params scalars; ``masks`` are shared ``{layer: [w]}`` or per seed ``{layer: [S, w]}``."""
    stacked = is_stacked(arch, params)
    params = params if stacked else jax.tree.map(lambda a: a[None], params)
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    x, y = _as_data(x, y)
    correct, loss = _evaluate_indices(
        arch, params, _stack_masks(masks, n_seeds), _stack_tree(arch, weight_masks, n_seeds),
        x, y, jnp.arange(x.shape[0], dtype=jnp.int32), min(batch_size, x.shape[0]))
    acc, loss = correct / x.shape[0], loss / x.shape[0]
    return Metrics(acc, loss) if stacked else Metrics(acc[0], loss[0])


# ---------------------------------------------------------------- one epoch of S seeds


@partial(jax.jit, static_argnames=("batch_size",))
def _epoch_batches(train_idx, seeds, epoch, batch_size):
    """``[steps, S, B]`` example indices of every step of epoch ``epoch`` for every seed: the
    seed's training examples ``train_idx [S, n]`` in the order of its shuffle stream (the
    last ``n % B`` of that order are skipped)."""
    n_train = train_idx.shape[1]
    steps = n_train // batch_size

    def order(seed, idx):
        perm = jax.random.permutation(stream_key(seed, STREAM_SHUFFLE, epoch), n_train)
        return idx[perm[: steps * batch_size]].reshape(steps, batch_size)

    return jnp.swapaxes(jax.vmap(order)(seeds, train_idx), 0, 1)


def _step(arch, tx, params, opt_state, active, masks, weight_masks, x, y, seeds, epoch, step,
          batch):
    """One optimizer step of every seed on its minibatch ``x[batch[s]]`` (``batch [S, B]``);
    seeds with ``active`` False keep their params and state. Returns params, optimizer
    states, minibatch loss and accuracy ``[S]``."""

    def seed_step(p, o, m, wm, on, seed, b):
        xb, yb = x[b], y[b]
        key = stream_key(seed, STREAM_DROPOUT, epoch, step)

        def loss_fn(p):
            logits, _ = apply(arch, p, m, xb, train=True, key=key, weight_masks=wm)
            return jnp.mean(cross_entropy(logits, yb)), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes float and int32
            updates, o_new = tx.update(grads, o, p)
        p_new = optax.apply_updates(p, updates)
        p = jax.tree.map(lambda new, old: jnp.where(on, new, old), p_new, p)
        o = jax.tree.map(lambda new, old: jnp.where(on, new, old), o_new, o)
        acc = jnp.mean((jnp.argmax(logits, -1) == yb).astype(jnp.float32))
        return p, o, loss, acc

    return jax.vmap(seed_step)(params, opt_state, masks, weight_masks, active, seeds, batch)


_train_step = jax.jit(_step, static_argnames=("arch", "tx"))


@partial(jax.jit, static_argnames=("arch", "tx"))
def _train_epoch_scan(arch, tx, params, opt_state, active, masks, weight_masks, x, y, seeds,
                      epoch, batches):
    """All steps of an epoch (``batches [steps, S, B]``) as one ``jax.lax.scan``; returns
    params, optimizer states and the mean minibatch loss and accuracy ``[S]``."""

    def body(carry, inputs):
        step, batch = inputs
        p, o, loss, acc = _step(arch, tx, *carry, active, masks, weight_masks, x, y, seeds,
                                epoch, step, batch)
        return (p, o), (loss, acc)

    steps = jnp.arange(batches.shape[0], dtype=jnp.int32)
    (params, opt_state), (losses, accs) = jax.lax.scan(
        body, (params, opt_state), (steps, batches))
    return params, opt_state, jnp.mean(losses, 0), jnp.mean(accs, 0)


def use_scan(config: TrainConfig) -> bool:
    """Whether an epoch runs as one ``lax.scan`` (``config.scan``; by default everywhere but
    on CPU, where XLA runs the weight-gradient convolutions inside loops several times
    slower than in a program of one step)."""
    return config.scan if config.scan is not None else jax.default_backend() != "cpu"


def _slice(tree: PyTree, s: int) -> PyTree:
    """Seed ``s`` of a stacked tree, keeping a seed axis of length 1."""
    return jax.tree.map(lambda a: a[s:s + 1], tree)


def _concat(trees: list[PyTree]) -> PyTree:
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def _run_epoch(arch, tx, config, params, opt_state, active, masks, weight_masks, x, y, seeds,
               epoch, batches):
    """The steps ``batches [steps, S, B]`` of every seed in one vmapped program (a scan, or
    one jit call per step); returns params, optimizer states, mean loss and accuracy [S]."""
    if use_scan(config):
        return _train_epoch_scan(arch, tx, params, opt_state, active, masks, weight_masks, x, y,
                                 seeds, epoch, batches)
    losses, accs = [], []
    for step in range(batches.shape[0]):
        params, opt_state, loss, acc = _train_step(
            arch, tx, params, opt_state, active, masks, weight_masks, x, y, seeds, epoch,
            jnp.int32(step), batches[step])
        losses.append(loss)
        accs.append(acc)
    return params, opt_state, jnp.mean(jnp.stack(losses), 0), jnp.mean(jnp.stack(accs), 0)


def _train_epoch(arch, tx, config, batch_size, params, opt_state, active, masks, weight_masks,
                 x, y, train_idx, seeds, epoch):
    """One epoch of every seed (see :func:`_step`); returns params, optimizer states and the
    mean minibatch loss and accuracy ``[S]``. With ``config.seed_batching == "loop"`` the
    seeds run one after another through the one-seed program (stopped seeds are skipped)."""
    batches = _epoch_batches(train_idx, seeds, epoch, batch_size)
    n_seeds = batches.shape[1]
    if config.seed_batching == "vmap" or n_seeds == 1:
        return _run_epoch(arch, tx, config, params, opt_state, active, masks, weight_masks, x, y,
                          seeds, epoch, batches)
    outs = []
    nan = jnp.full((1,), jnp.nan, jnp.float32)
    for s, on in enumerate(np.asarray(active)):
        if not on:
            outs.append((_slice(params, s), _slice(opt_state, s), nan, nan))
            continue
        outs.append(_run_epoch(arch, tx, config, _slice(params, s), _slice(opt_state, s),
                               active[s:s + 1], _slice(masks, s), _slice(weight_masks, s),
                               x, y, seeds[s:s + 1], epoch, batches[:, s:s + 1]))
    return tuple(_concat(list(parts)) for parts in zip(*outs, strict=True))


@jax.jit
def _early_stopping(state, params, score, epoch, patience, min_delta):
    """Update the per-seed best score/params and the stop flags after an epoch (``score``
    ``[S]``, lower is better; ``patience`` < 0 means never stop)."""
    was_active = state["active"]
    improved = was_active & (score < state["best_score"] - min_delta)
    bad = jnp.where(improved, 0, state["bad_epochs"] + was_active.astype(jnp.int32))
    stop = was_active & (patience > 0) & (bad >= patience)
    return {
        "best_params": jax.tree.map(
            lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            params, state["best_params"]),
        "best_score": jnp.where(improved, score, state["best_score"]),
        "best_epoch": jnp.where(improved, epoch, state["best_epoch"]),
        "bad_epochs": bad,
        "active": was_active & ~stop,
        "stopped_epoch": jnp.where(stop, epoch, state["stopped_epoch"]),
    }


# ---------------------------------------------------------------- checkpoints of a run


def _epoch_dirs(directory: Path) -> list[Path]:
    """Epoch checkpoints in ``directory``, newest first."""
    n = len(CHECKPOINT_PREFIX)
    found = [p for p in directory.glob(f"{CHECKPOINT_PREFIX}*") if p.name[n:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[n:]), reverse=True)


def _resume(directory: Path, identity: dict, abstract: dict, abstract_masks: PyTree | None
            ) -> tuple[dict, int, float] | None:
    """The training state, number of completed epochs and wall time so far of the newest
    readable checkpoint in ``directory`` (None if there is none); a checkpoint of another run
    is an error."""
    for path in _epoch_dirs(directory):
        try:
            meta = ckpt.read_metadata(path)
        except ckpt.CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint {path}: {err}", stacklevel=3)
            continue
        saved = meta.get("run")
        if saved != identity:
            diff = sorted(k for k in set(identity) | set(saved or {})
                          if (saved or {}).get(k) != identity.get(k))
            raise ValueError(
                f"{directory} holds checkpoints of a different run (differs in {diff}); "
                "use another checkpoint directory or delete it"
            )
        epochs = int(meta["epochs_completed"])
        state_abstract = {**abstract, "history": {
            k: jax.ShapeDtypeStruct((epochs, len(identity["config"]["seeds"])), jnp.float32)
            for k in METRICS}}
        try:
            restored = ckpt.restore(path, abstract=state_abstract.pop("params"),
                                    abstract_masks=abstract_masks, abstract_state=state_abstract)
        except ckpt.CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint {path}: {err}", stacklevel=3)
            continue
        return ({"params": restored.params, **restored.state}, epochs,
                float(meta.get("train_seconds", 0.0)))
    return None


def _save_epoch(directory: Path, epochs: int, state: dict, masks, arch: Architecture,
                config: TrainConfig, identity: dict, metadata: Mapping[str, Any]) -> None:
    """Checkpoint ``directory/epoch_NNNNN`` after ``epochs`` completed epochs; keeps the
    newest ``CHECKPOINTS_KEPT``. Random streams are functions of (seed, epoch, step), so the
    epoch count is all the RNG and data-order state there is."""
    state = dict(state)
    params = state.pop("params")
    ckpt.save(
        directory / f"{CHECKPOINT_PREFIX}{epochs:05d}", params, masks or None,
        {**metadata, "run": identity, "seeds": list(config.seeds),
         "train_config": config.to_dict(), "epochs_completed": epochs,
         "rng": "every stream is derived from (seed, epoch, step); see jaxprune.train"},
        arch=arch, state=state,
    )
    for old in _epoch_dirs(directory)[CHECKPOINTS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- fit


def fit(
    arch: Architecture,
    x,
    y,
    config: TrainConfig | None = None,
    *,
    val: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    params: Params | None = None,
    masks: Mapping[str, Any] | None = None,
    weight_masks: Params | None = None,
    checkpoint_dir: str | Path | None = None,
    metadata: Mapping[str, Any] | None = None,
    max_epochs_this_call: int | None = None,
    on_epoch_end: Callable[[EpochInfo], None] | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> TrainResult:
    """Train ``len(config.seeds)`` networks of ``arch`` together on ``x`` (float32
    ``[n, ...]``) and ``y`` (int ``[n]``).

    ``val``/``test``: optional ``(x, y)`` sets; without ``val``, a per-seed share
    ``config.val_fraction`` of ``x`` is held out for validation. ``params``: initial
    parameters, stacked ``[S, ...]`` or single (copied to every seed); default
    ``init_stack(arch, seeds)``. ``masks``: fixed unit masks (shared or ``[S, width]``);
    ``weight_masks``: fixed weight masks shaped like the params. ``checkpoint_dir``: save
    the training state after every epoch and resume from the newest checkpoint of the same
    run there (``config.epochs`` may grow between calls; anything else must match).
    ``metadata``: JSON-able extras stored in the checkpoints (e.g. the data set's name).
    ``max_epochs_this_call``: stop this call after that many epochs (resume later).
    ``on_epoch_end``: called after each epoch (after its checkpoint is saved).
    """
    config = config if config is not None else TrainConfig()
    seeds_np = np.asarray(config.seeds, np.uint32)
    n_seeds = len(seeds_np)
    seeds = jnp.asarray(seeds_np)
    x, y = _as_data(x, y)
    n = x.shape[0]
    masks_s = _stack_masks(masks, n_seeds)
    wmasks_s = _stack_tree(arch, weight_masks, n_seeds)
    init = _init_stack(arch, seeds_np) if params is None else _stack_tree(arch, params, n_seeds)

    # validation and training examples of every seed
    if val is not None:
        x_val, y_val = _as_data(*val)
        train_idx = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n_seeds, n))
        val_idx = jnp.arange(x_val.shape[0], dtype=jnp.int32)
    elif config.val_fraction > 0:
        n_val = max(1, round(n * config.val_fraction))
        perms = _split_orders(seeds, n)
        x_val, y_val, val_idx, train_idx = x, y, perms[:, :n_val], perms[:, n_val:]
    else:
        x_val = y_val = val_idx = None
        train_idx = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n_seeds, n))
    if val_idx is None and config.patience is not None:
        raise ValueError("early stopping (patience) needs validation data: set val_fraction "
                         "> 0 or pass val=(x, y)")
    batch_size = min(config.batch_size, train_idx.shape[1])
    if test is not None:
        x_test, y_test = _as_data(*test)

    tx = make_optimizer(config)
    state = {
        "params": init,
        "opt_state": _opt_init(tx, init),
        "best_params": init,
        "best_score": jnp.full((n_seeds,), jnp.inf, jnp.float32),
        "best_epoch": jnp.full((n_seeds,), -1, jnp.int32),
        "bad_epochs": jnp.zeros((n_seeds,), jnp.int32),
        "active": jnp.ones((n_seeds,), bool),
        "stopped_epoch": jnp.full((n_seeds,), -1, jnp.int32),
    }
    history: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    start, seconds_before = 0, 0.0

    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    identity = {}
    if directory is not None:
        config_id = {k: v for k, v in config.to_dict().items() if k != "epochs"}
        identity = {
            "config": config_id,
            "architecture": ckpt.arch_to_dict(arch),
            "data": fingerprint(x, y),
            "val": None if val is None else fingerprint(x_val, y_val),
            "test": None if test is None else fingerprint(x_test, y_test),
            "init": None if params is None else fingerprint(init),
            "masks": fingerprint(masks_s, wmasks_s),
        }
        directory.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(directory)
        resumed = _resume(directory, identity, ckpt.abstract_tree(state),
                          ckpt.abstract_tree(masks_s) if masks_s else None)
        if resumed is not None:
            restored, start, seconds_before = resumed
            hist = restored.pop("history")
            history = {k: list(np.asarray(hist[k])) for k in METRICS}
            state = jax.tree.map(jnp.asarray, restored)

    def evaluate_set(params, xs, ys, idx):
        chunk = min(config.eval_batch_size, idx.shape[-1])
        if config.seed_batching == "vmap" or n_seeds == 1:
            correct, loss = _evaluate_indices(arch, params, masks_s, wmasks_s, xs, ys, idx,
                                              chunk)
        else:  # one seed at a time through the one-seed program
            parts = [_evaluate_indices(arch, _slice(params, s), _slice(masks_s, s),
                                       _slice(wmasks_s, s), xs, ys,
                                       idx[s:s + 1] if idx.ndim == 2 else idx, chunk)
                     for s in range(n_seeds)]
            correct, loss = (jnp.concatenate(v) for v in zip(*parts, strict=True))
        return np.asarray(correct / idx.shape[-1]), np.asarray(loss / idx.shape[-1])

    patience = -1 if config.patience is None else config.patience
    epoch_seconds: list[float] = []
    bar = tqdm(total=config.epochs, initial=start, disable=not progress, unit="epoch",
               desc=f"fit {arch.family} x{n_seeds}", leave=False)
    try:
        for epoch in range(start, config.epochs):
            was_active = np.asarray(state["active"])
            if not was_active.any():
                break
            if max_epochs_this_call is not None and len(epoch_seconds) >= max_epochs_this_call:
                break
            t0 = time.perf_counter()
            state["params"], state["opt_state"], tr_loss, tr_acc = _train_epoch(
                arch, tx, config, batch_size, state["params"], state["opt_state"], state["active"],
                masks_s, wmasks_s, x, y, train_idx, seeds, jnp.int32(epoch))
            row = {"train_loss": np.asarray(tr_loss), "train_accuracy": np.asarray(tr_acc)}
            nan = np.full(n_seeds, np.nan, np.float32)
            row["val_accuracy"], row["val_loss"] = (nan, nan) if val_idx is None else \
                evaluate_set(state["params"], x_val, y_val, val_idx)
            row["test_accuracy"], row["test_loss"] = (nan, nan) if test is None else \
                evaluate_set(state["params"], x_test, y_test,
                             jnp.arange(x_test.shape[0], dtype=jnp.int32))
            if val_idx is not None:
                score = row["val_loss"] if config.monitor == "loss" else -row["val_accuracy"]
                keep = {k: state.pop(k) for k in ("params", "opt_state")}
                state = {**keep, **_early_stopping(
                    state, keep["params"], jnp.asarray(score, jnp.float32), jnp.int32(epoch),
                    jnp.int32(patience), jnp.float32(config.min_delta))}
            else:
                state["best_params"] = state["params"]
            for k in METRICS:
                history[k].append(np.where(was_active, row[k], np.nan).astype(np.float32))
            if directory is not None:
                hist = {k: np.stack(v) for k, v in history.items()}
                seconds = seconds_before + sum(epoch_seconds) + time.perf_counter() - t0
                _save_epoch(directory, epoch + 1, {**state, "history": hist}, masks_s, arch,
                            config, identity, {**(metadata or {}), "train_seconds": seconds})
            epoch_seconds.append(time.perf_counter() - t0)
            bar.update(1)
            on = was_active
            bar.set_postfix(
                loss=f"{np.mean(row['train_loss'][on]):.3f}",
                acc=f"{np.mean(row['train_accuracy'][on]):.3f}",
                val_acc=f"{np.nanmean(row['val_accuracy'][on]) if val_idx is not None else 0:.3f}",
                active=int(np.sum(np.asarray(state["active"]))))
            if on_epoch_end is not None:
                on_epoch_end(EpochInfo(epoch, {k: v[-1] for k, v in history.items()},
                                       np.asarray(state["active"]), state["params"]))
    finally:
        bar.close()

    use_best = config.restore_best and val_idx is not None
    result = TrainResult(
        params=state["best_params"] if use_best else state["params"],
        arch=arch,
        config=config,
        best_epoch=np.asarray(state["best_epoch"]).astype(np.int64),
        stopped_epoch=np.asarray(state["stopped_epoch"]).astype(np.int64),
        history={k: np.stack(v) if v else np.zeros((0, n_seeds), np.float32)
                 for k, v in history.items()},
        epochs_run=len(history["train_loss"]),
        epoch_seconds=epoch_seconds,
        resumed_from=start,
        seconds_before=seconds_before,
    )
    if verbose:
        print(result.summary())
    return result


def fine_tune(
    arch: Architecture,
    params: Params,
    masks: Mapping[str, Any],
    x,
    y,
    config: TrainConfig | None = None,
    **kwargs,
) -> TrainResult:
    """Train a pruned network with its unit ``masks`` held fixed, starting from ``params``
    (single or stacked): :func:`fit` with ``params`` and ``masks`` given."""
    return fit(arch, x, y, config, params=params, masks=masks, **kwargs)


__all__ = [
    "METRICS",
    "EpochInfo",
    "Metrics",
    "TrainConfig",
    "TrainResult",
    "cross_entropy",
    "evaluate",
    "fine_tune",
    "fit",
    "is_stacked",
    "make_optimizer",
    "stream_key",
    "use_scan",
]
