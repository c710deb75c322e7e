"""Training with optax: many seeds in one program, early stopping, masked fine-tuning.

S networks (one per seed) are trained together: their parameters and optimizer states are
stacked on a leading axis (the library's seed-axis convention, see :mod:`jaxprune.models`)
and one jit-compiled program updates all of them (``jax.vmap`` over the seeds; per step, or
an epoch as one ``lax.scan``). Every random stream of a seed is derived from the seed alone
(:mod:`jaxprune.streams`), so a seed gives the same network trained alone or in a stack.

Early stopping is per seed: a seed whose validation score has not improved for ``patience``
epochs is frozen inside the stack and keeps its best-validation parameters. Unit masks
(shared ``{layer: [width]}`` or per seed ``{layer: [S, width]}``) and weight masks are held
fixed: a removed unit's output is exactly zero, and the updates of its incoming and outgoing
weights are zeroed, so no pruned entry changes under any optimizer setting. With a
checkpoint folder, :func:`fit` saves the training state after every epoch and resumes from
it (:mod:`jaxprune.train.resume`).

Modules: :mod:`~jaxprune.train.config` (configuration and results),
:mod:`~jaxprune.train.state` (the :class:`TrainState` and stacking),
:mod:`~jaxprune.train.engine` (the jitted programs), :mod:`~jaxprune.train.resume`
(checkpoints of a run), :mod:`~jaxprune.train.trainer` (:func:`fit`, :func:`evaluate`).
"""

from jaxprune.streams import stream_key
from jaxprune.train.config import (
    METRICS,
    EpochInfo,
    Metrics,
    TrainConfig,
    TrainResult,
    make_optimizer,
)
from jaxprune.train.engine import cross_entropy
from jaxprune.train.state import TrainState, is_stacked
from jaxprune.train.trainer import evaluate, fine_tune, fit, use_scan

__all__ = [
    "METRICS",
    "EpochInfo",
    "Metrics",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "cross_entropy",
    "evaluate",
    "fine_tune",
    "fit",
    "is_stacked",
    "make_optimizer",
    "stream_key",
    "use_scan",
]
