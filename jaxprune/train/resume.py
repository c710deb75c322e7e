"""Checkpoints of a training run: one step per finished epoch in an orbax
``CheckpointManager`` folder (see :mod:`jaxprune.checkpoint`), the newest two kept.

The random streams are functions of (seed, epoch, step) (:mod:`jaxprune.streams`), so the
epoch count is all the RNG and data-order state there is, and a resumed run ends with the
same parameters as an uninterrupted one. A folder holding another run's checkpoints is an
error; a damaged newest step falls back to the previous one with a warning."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import checkpoint as ckpt
from jaxprune.models.arch import Architecture
from jaxprune.train.config import METRICS, TrainConfig
from jaxprune.train.state import TrainState

CHECKPOINTS_KEPT = 2


def _difference(saved: Mapping[str, Any] | None, identity: Mapping[str, Any]) -> list[str]:
    saved = saved or {}
    return sorted(k for k in set(identity) | set(saved) if saved.get(k) != identity.get(k))


def resume(directory: Path, identity: dict, template: TrainState, masks
           ) -> tuple[TrainState, dict[str, list[np.ndarray]], int, float] | None:
    """The state, history, epochs completed and wall time so far of the newest readable
    checkpoint of this run in ``directory`` (None if there is none)."""
    for step in ckpt.steps(directory):
        try:
            meta = ckpt.read_metadata(directory, step)
        except ckpt.CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=3)
            continue
        diff = _difference(meta.get("run"), identity)
        if diff:
            raise ValueError(f"{directory} holds checkpoints of a different run (differs in "
                             f"{diff}); use another checkpoint directory or delete it")
        epochs = int(meta["epochs_completed"])
        n = template.active.shape[0]
        history = {k: jax.ShapeDtypeStruct((epochs, n), jnp.float32) for k in METRICS}
        abstract = {"train": ckpt.abstract_tree(template._replace(params=None)),
                    "history": history}
        try:
            restored = ckpt.restore(directory, ckpt.abstract_tree(template.params), step=step,
                                    abstract_masks=ckpt.abstract_tree(masks) if masks else None,
                                    abstract_state=abstract)
        except ckpt.CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=3)
            continue
        state = jax.tree.map(jnp.asarray, restored.state["train"]._replace(
            params=restored.params))
        hist = {k: list(np.asarray(restored.state["history"][k])) for k in METRICS}
        return state, hist, epochs, float(meta.get("train_seconds", 0.0))
    return None


def save_epoch(directory: Path, epochs: int, state: TrainState,
               history: dict[str, list[np.ndarray]], masks, arch: Architecture,
               config: TrainConfig, identity: dict, metadata: Mapping[str, Any]) -> None:
    """Step ``epochs`` (epochs completed) of the run's checkpoint folder."""
    hist = {k: np.stack(v) for k, v in history.items()}
    ckpt.save(
        directory, state.params, masks or None,
        {**metadata, "run": identity, "seeds": list(config.seeds),
         "train_config": config.to_dict(), "epochs_completed": epochs,
         "rng": "every stream is derived from (seed, epoch, step); see jaxprune.streams"},
        arch=arch, state={"train": state._replace(params=None), "history": hist},
        step=epochs, keep=CHECKPOINTS_KEPT)
