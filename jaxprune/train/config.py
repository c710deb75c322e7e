"""Training configuration and results: :class:`TrainConfig` (hyper-parameters as plain data),
:class:`TrainResult` (what :func:`jaxprune.train.fit` returns), and the optimizer."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import optax

from jaxprune.models.arch import Architecture
from jaxprune.models.network import Params

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
           "test_accuracy")


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
    subset each epoch). ``sharding="seeds"`` lays the seed axis over the local devices
    (:mod:`jaxprune.sharding`; padded with frozen copies of the last seed), with the same
    results.
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
    sharding: Literal["seeds"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.seed_batching not in ("vmap", "loop"):
            raise ValueError(f"seed_batching must be 'vmap' or 'loop', got {self.seed_batching!r}")
        if self.sharding not in (None, "seeds"):
            raise ValueError(f"training shards its seeds only: sharding must be 'seeds' or "
                             f"None, got {self.sharding!r}")
        if self.sharding and self.seed_batching == "loop":
            raise ValueError("sharding='seeds' needs seed_batching='vmap' (one program for "
                             "all seeds)")
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
