"""The result type every pruning search returns (PoZ, CKA, L1, random), and its JSON form."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.outputs import write_atomic


@dataclass
class LayerTrace:
    """What a search did in one layer.

    ``order``: unit indices in the order they were considered for removal; ``scores[k]``: the
    score (fit, CKA ...) of the network with ``order[:k+1]`` removed, for every candidate that
    was evaluated; ``removed``: how many of ``order`` were finally removed; ``seconds``: the
    wall time of the visit (for stacked seeds, of the visit of all seeds of the batch), where
    the search records it.
    """

    layer: str
    order: list[int]
    scores: list[float]
    removed: int
    note: str = ""
    seconds: float | None = None


@dataclass
class PruneResult:
    """A pruned network: masks, kept units, compression rate, the trace of every layer."""

    method: str
    masks: dict[str, np.ndarray]
    widths: dict[str, int]
    compression_rate: float
    trace: list[LayerTrace] = field(default_factory=list)
    direction: str | None = None
    threshold: float | None = None
    baseline_score: float | None = None
    final_score: float | None = None
    seed: int | None = None
    wall_time_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> dict[str, int]:
        """Units kept per layer."""
        return {name: int(np.sum(m)) for name, m in self.masks.items()}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["masks"] = {k: np.asarray(v).astype(int).tolist() for k, v in self.masks.items()}
        out["kept"] = self.kept
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneResult:
        data = dict(data)
        data.pop("kept", None)
        data["masks"] = {k: np.asarray(v, np.float32) for k, v in data["masks"].items()}
        data["trace"] = [LayerTrace(**t) for t in data.get("trace", [])]
        return cls(**data)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` (dataclasses and arrays allowed) as indented JSON, atomically."""
    text = json.dumps(to_jsonable(payload), indent=2)
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data from results, dataclasses, NumPy/JAX arrays and scalars."""
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__") and not isinstance(obj, str):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj
