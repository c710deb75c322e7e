"""``fit``: train S seeds of a network together, with early stopping and resumable epochs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune.data.batching import epoch_indices
from jaxprune.models.arch import Architecture
from jaxprune.models.network import Params
from jaxprune.provenance import fingerprint
from jaxprune.sharding import shard_seeds
from jaxprune.streams import split_order
from jaxprune.train import engine, resume
from jaxprune.train.config import (
    METRICS,
    EpochInfo,
    Metrics,
    TrainConfig,
    TrainResult,
    make_optimizer,
)
from jaxprune.train.state import (
    SeedInputs,
    TrainState,
    as_data,
    init_seeds,
    initial_state,
    is_stacked,
    stack_masks,
    stack_tree,
    trainable_entries,
)


def use_scan(config: TrainConfig) -> bool:
    """Whether an epoch runs as one ``lax.scan`` (``config.scan``; by default everywhere but
    on CPU, where XLA runs the weight-gradient convolutions inside loops several times
    slower than in a program of one step)."""
    return config.scan if config.scan is not None else jax.default_backend() != "cpu"


@dataclass
class _Run:
    """A run's fixed inputs: data, the per-seed masks and examples, the optimizer."""

    arch: Architecture
    config: TrainConfig
    x: jax.Array
    y: jax.Array
    inputs: SeedInputs
    train_idx: jax.Array  # [S, n_train]
    val: tuple[jax.Array, jax.Array, jax.Array] | None  # x, y, idx ([n] or [S, n])
    test: tuple[jax.Array, jax.Array, jax.Array] | None
    tx: Any
    init: Params

    @property
    def loop(self) -> bool:
        return self.config.seed_batching == "loop" and len(self.config.seeds) > 1


def _whole(pair) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A set ``(x, y)`` used whole: ``(x, y, every index)``."""
    xs, ys = as_data(*pair)
    return xs, ys, jnp.arange(xs.shape[0], dtype=jnp.int32)


def _examples(config: TrainConfig, x, y, seeds: jax.Array, val):
    """``(train_idx [S, n_train], val set or None)``: an explicit validation set, or a
    per-seed held-out share of the training arrays, or none."""
    n = x.shape[0]
    every = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (seeds.shape[0], n))
    if val is not None:
        return every, _whole(val)
    if config.val_fraction > 0:
        n_val = max(1, round(n * config.val_fraction))
        perms = jax.vmap(lambda s: split_order(s, n))(seeds)
        return perms[:, n_val:], (x, y, perms[:, :n_val])
    return every, None


def _prepare(arch, x, y, config, val, test, params, masks, weight_masks) -> _Run:
    seeds_np = np.asarray(config.seeds, np.uint32)
    n_seeds, seeds = len(seeds_np), jnp.asarray(seeds_np)
    x, y = as_data(x, y)
    masks_s = stack_masks(masks, n_seeds)
    wmasks_s = stack_tree(arch, weight_masks, n_seeds)
    init = init_seeds(arch, seeds_np) if params is None else stack_tree(arch, params, n_seeds)
    train_idx, val_set = _examples(config, x, y, seeds, val)
    if val_set is None and config.patience is not None:
        raise ValueError("early stopping (patience) needs validation data: set val_fraction "
                         "> 0 or pass val=(x, y)")
    test_set = None if test is None else _whole(test)
    inputs = SeedInputs(masks_s, wmasks_s, trainable_entries(arch, masks_s, wmasks_s, init),
                        seeds)
    return _Run(arch, config, x, y, inputs, train_idx, val_set, test_set,
                make_optimizer(config), init)


def _identity(run: _Run, val, test, params) -> dict[str, Any]:
    """What a checkpoint folder's steps must share to be resumed by this call."""
    from jaxprune.checkpoint import arch_to_dict

    return {
        "config": {k: v for k, v in run.config.to_dict().items()
                   if k not in ("epochs", "sharding")},
        "architecture": arch_to_dict(run.arch),
        "data": fingerprint(run.x, run.y),
        "val": None if val is None else fingerprint(*run.val[:2]),
        "test": None if test is None else fingerprint(*run.test[:2]),
        "init": None if params is None else fingerprint(run.init),
        "masks": fingerprint(run.inputs.masks, run.inputs.weight_masks),
    }


def _evaluate(run: _Run, params: Params, split) -> tuple[np.ndarray, np.ndarray]:
    """``(accuracy [S], loss [S])`` on a set, NaN when it is absent."""
    if split is None:
        nan = np.full(jax.tree.leaves(params)[0].shape[0], np.nan, np.float32)
        return nan, nan
    xs, ys, idx = split
    return engine.evaluate_stack(run.arch, params, run.inputs.masks, run.inputs.weight_masks,
                                 xs, ys, idx, run.config.eval_batch_size, loop=run.loop)


def _epoch(run: _Run, state: TrainState, epoch: int) -> tuple[TrainState, dict[str, np.ndarray]]:
    """One epoch of every active seed, then evaluation and early stopping; returns the new
    state and the epoch's metrics ``{name: [S]}`` (NaN for seeds already stopped)."""
    c = run.config
    was_active = np.asarray(state.active)
    batch_size = min(c.batch_size, run.train_idx.shape[1])
    batches = jnp.swapaxes(epoch_indices(run.train_idx, run.inputs.seeds, jnp.int32(epoch),
                                         batch_size), 0, 1)
    state, loss, acc = engine.run_epoch(run.arch, run.tx, state, run.inputs, run.x, run.y,
                                        epoch, batches, scan=use_scan(c), loop=run.loop)
    row = {"train_loss": np.asarray(loss), "train_accuracy": np.asarray(acc)}
    row["val_accuracy"], row["val_loss"] = _evaluate(run, state.params, run.val)
    row["test_accuracy"], row["test_loss"] = _evaluate(run, state.params, run.test)
    if run.val is not None:
        score = row["val_loss"] if c.monitor == "loss" else -row["val_accuracy"]
        patience = -1 if c.patience is None else c.patience
        state = engine.early_stopping(state, jnp.asarray(score, jnp.float32), jnp.int32(epoch),
                                      jnp.int32(patience), jnp.float32(c.min_delta))
    else:
        state = state._replace(best_params=state.params)
    return state, {k: np.where(was_active, row[k], np.nan).astype(np.float32) for k in METRICS}


def _result(run: _Run, state: TrainState, history, seconds: list[float], start: int,
            before: float) -> TrainResult:
    n_seeds = len(run.config.seeds)
    use_best = run.config.restore_best and run.val is not None
    return TrainResult(
        params=state.best_params if use_best else state.params, arch=run.arch,
        config=run.config, best_epoch=np.asarray(state.best_epoch).astype(np.int64),
        stopped_epoch=np.asarray(state.stopped_epoch).astype(np.int64),
        history={k: np.stack(v) if v else np.zeros((0, n_seeds), np.float32)
                 for k, v in history.items()},
        epochs_run=len(history["train_loss"]), epoch_seconds=seconds, resumed_from=start,
        seconds_before=before)


def _spread_seeds(run: _Run, state: TrainState) -> tuple[_Run, TrainState]:
    """``run``'s per-seed inputs and ``state`` padded to a multiple of the local devices
    (frozen copies of the last seed: ``active`` False, so they never change) and laid over
    them by seed (:mod:`jaxprune.sharding`)."""
    n = len(run.config.seeds)
    state, _ = shard_seeds(state)
    state = state._replace(active=state.active.at[n:].set(False))
    val = run.val
    if val is not None and val[2].ndim == 2:
        val = (*val[:2], shard_seeds(val[2])[0])
    return dataclasses.replace(run, inputs=shard_seeds(run.inputs)[0], val=val,
                               train_idx=shard_seeds(run.train_idx)[0]), state


def _first_seeds(tree, n: int):
    """The first ``n`` entries of every leaf's seed axis (drops :func:`_spread_seeds`'s
    padding)."""
    return jax.tree.map(lambda a: a[:n], tree)


def _postfix(row: dict[str, np.ndarray], state: TrainState, on: np.ndarray) -> dict[str, str]:
    val = np.nanmean(row["val_accuracy"][on]) if np.isfinite(row["val_accuracy"]).any() else 0
    return {"loss": f"{np.mean(row['train_loss'][on]):.3f}",
            "acc": f"{np.mean(row['train_accuracy'][on]):.3f}", "val_acc": f"{val:.3f}",
            "active": str(int(np.sum(np.asarray(state.active))))}


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
    ``weight_masks``: fixed weight masks shaped like the params; a masked entry never
    changes. ``checkpoint_dir``: save the training state after every epoch and resume from
    the newest checkpoint of the same run there (``config.epochs`` may grow between calls;
    anything else must match). ``metadata``: JSON-able extras stored in the checkpoints.
    ``max_epochs_this_call``: stop this call after that many epochs (resume later).
    ``on_epoch_end``: called after each epoch (after its checkpoint is saved).
    """
    config = config if config is not None else TrainConfig()
    run = _prepare(arch, x, y, config, val, test, params, masks, weight_masks)
    state = initial_state(run.tx, run.init)
    history: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    start, before = 0, 0.0
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    if directory is not None:
        identity = _identity(run, val, test, params)
        directory.mkdir(parents=True, exist_ok=True)
        found = resume.resume(directory, identity, state, run.inputs.masks)
        if found is not None:
            state, history, start, before = found
    n_seeds = len(config.seeds)
    unpadded = run.inputs.masks
    if config.sharding == "seeds":
        run, state = _spread_seeds(run, state)
    seconds: list[float] = []
    bar = tqdm(total=config.epochs, initial=start, disable=not progress, unit="epoch",
               desc=f"fit {arch.family} x{len(config.seeds)}", leave=False)
    try:
        for epoch in range(start, config.epochs):
            on = np.asarray(state.active)[:n_seeds]
            if not on.any() or (max_epochs_this_call is not None
                                and len(seconds) >= max_epochs_this_call):
                break
            t0 = time.perf_counter()
            state, row = _epoch(run, state, epoch)
            row = {k: v[:n_seeds] for k, v in row.items()}
            for k in METRICS:
                history[k].append(row[k])
            if directory is not None:
                elapsed = before + sum(seconds) + time.perf_counter() - t0
                resume.save_epoch(directory, epoch + 1, _first_seeds(state, n_seeds), history,
                                  unpadded, arch,
                                  config, identity, {**(metadata or {}), "train_seconds": elapsed})
            seconds.append(time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(_postfix(row, state, on))
            if on_epoch_end is not None:
                on_epoch_end(EpochInfo(epoch, row, np.asarray(state.active), state.params))
    finally:
        bar.close()
    result = _result(run, _first_seeds(state, n_seeds), history, seconds, start, before)
    if verbose:
        print(result.summary())
    return result


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
    x, y = as_data(x, y)
    acc, loss = engine.evaluate_stack(
        arch, params, stack_masks(masks, n_seeds), stack_tree(arch, weight_masks, n_seeds),
        x, y, jnp.arange(x.shape[0], dtype=jnp.int32), batch_size)
    return Metrics(acc, loss) if stacked else Metrics(acc[0], loss[0])


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
