"""Which layer and which units to visualise: layer names, unit lists, PoZ-ranked selections,
kept/pruned status from a search result, and the network as a function of pixels."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models import apply, is_residual

#: The classifier output, visualisable as dense units (class logits) of every family.
LOGITS = "logits"
SELECTIONS = ("lowest-poz", "highest-poz", "never-fire", "kept", "pruned", "all")
_ITEM = re.compile(r"^(?:(?P<int>\d+)|(?P<lo>\d+)-(?P<hi>\d+)|(?P<sel>[a-z-]+)(?::(?P<k>\d+))?)$")


def valid_layers(arch) -> list[str]:
    """The layers one can visualise: every prunable unit group, then the logits."""
    return [*arch.layer_names, LOGITS]


def resolve_layer(arch, name: str) -> str:
    """The unit group (or :data:`LOGITS`) a layer name means. Aliases: ``head`` is the logits
    of chain networks and, in residual families, a block name stands for the one group its
    ops carry (EfficientNet-Lite0: ``head`` → ``conv_head``)."""
    if name in arch.layer_names or name == LOGITS:
        return name
    if is_residual(arch):
        for block in arch.blocks:
            groups = {op.group for op in block.ops if op.group is not None}
            if block.name == name and len(groups) == 1:
                return groups.pop()
    elif name == "head":
        return LOGITS
    alias = " ('head' is the logits)" if not is_residual(arch) else (
        " (or a block with one group, e.g. 'head' for the last block's group)")
    raise ValueError(f"{arch.family} has no layer {name!r}; valid layers: "
                     f"{', '.join(valid_layers(arch))}{alias}")


def layer_width(arch, layer: str) -> int:
    """Number of units of a resolved layer."""
    return arch.num_classes if layer == LOGITS else arch.widths[layer]


#: Suffix of a layer name that asks for its pre-activation (before the ReLU / ReLU6).
PRE = ":pre"


def activations(arch, params, x: jax.Array, layers) -> dict[str, jax.Array]:
    """``{layer: activation}`` of the (unmasked) network for inputs ``x``; :data:`LOGITS` is
    the classifier output. Group activations are post-ReLU as the searches see them;
    ``"<layer>:pre"`` is the layer's pre-activation (:func:`preactivation`)."""
    layers = list(layers)
    out = {la: preactivation(arch, params, x, la[:-len(PRE)]) for la in layers
           if la.endswith(PRE)}
    post = [la for la in layers if not la.endswith(PRE)]
    if post:
        logits, acts = apply(arch, params, None, x)
        out.update({la: logits if la == LOGITS else acts[la] for la in post})
    return out


def has_preactivation(arch, layer: str) -> bool:
    """Whether :func:`preactivation` is defined for ``layer`` (not for the logits, nor for a
    readout on the residual stream, whose activation follows a skip connection)."""
    if layer == LOGITS:
        return False
    if not is_residual(arch):
        return True
    return layer != arch.readout or any(op.group == layer for op in arch.blocks[-1].ops)


def preactivation(arch, params, x: jax.Array, layer: str) -> jax.Array:
    """The input of a layer's ReLU (ReLU6), ``[n, (h, w,) width]``; feature visualisation
    maximises it, as Lucid's ``pre_relu`` objectives, so that a unit silent on the starting
    image still has a gradient. A residual group of one op: that op's pre-activation
    (``conv_head``: the head conv's, before pooling). A group of several ops (an MBConv
    group: the expansion, then the depthwise conv of the same channel, each with its ReLU6):
    the sum of every op's position-averaged pre-activation, ``[n, 1, 1, width]`` — the
    depthwise conv's alone has no gradient where the expansion channel is silent."""
    from jaxprune.models import linear, transition
    from jaxprune.models import residual as res

    if not has_preactivation(arch, layer):
        raise ValueError(f"{layer!r} has no pre-activation of its own")
    if is_residual(arch):
        ops = res.group_plan(arch)[layer].ops or (res.group_plan(arch)[layer].last,)
        first = res.flat_ops(arch)[0][2]
        y0 = res.op_preact(arch, params, first, x)
        pre = [res.walk(arch, params, {}, 0, y0, x, stop=q)[0] for q in ops]
        if len(pre) == 1:
            return pre[0]
        return sum(jnp.mean(y, axis=(1, 2), keepdims=True) for y in pre)
    target = arch.index(layer)
    z = linear(arch, params, 0, transition(arch, 0, x))
    for j in range(1, target + 1):
        z = linear(arch, params, j, transition(arch, j, jax.nn.relu(z)))
    return z


@dataclass(frozen=True)
class UnitItem:
    """One item of a unit list: explicit indices, or a selection of ``count`` units."""

    kind: str  # "index" or one of SELECTIONS
    indices: tuple[int, ...] = ()
    count: int | None = None


def parse_units(text: str) -> list[UnitItem]:
    """``"3,17,42"``, ``"0-9"``, ``"all"``, ``"lowest-poz:8,highest-poz:8"``, ``"never-fire:4"``,
    ``"kept:4,pruned:4"`` (needs a search result) → items; a malformed item is a
    ``ValueError`` naming it and the accepted forms."""
    items = []
    for raw in text.split(","):
        part = raw.strip()
        m = _ITEM.match(part)
        if m is None or (m["sel"] and m["sel"] not in SELECTIONS) or (
                m["sel"] and m["sel"] != "all" and m["k"] is None):
            raise ValueError(
                f"--units item {part!r} is not understood; use unit indices (3,17,42), a range "
                f"(0-9), 'all', or SELECTION:K with SELECTION one of "
                f"{', '.join(s for s in SELECTIONS if s != 'all')} (e.g. lowest-poz:8)")
        if m["int"] is not None:
            items.append(UnitItem("index", (int(m["int"]),)))
        elif m["lo"] is not None:
            lo, hi = int(m["lo"]), int(m["hi"])
            if hi < lo:
                raise ValueError(f"--units range {part!r} is empty; write LOW-HIGH with LOW ≤ HIGH")
            items.append(UnitItem("index", tuple(range(lo, hi + 1))))
        else:
            k = None if m["k"] is None else int(m["k"])
            if k is not None and k < 1:
                raise ValueError(f"--units {part!r}: the count must be at least 1")
            items.append(UnitItem(m["sel"], (), k))
    return items


def check_indices(items: list[UnitItem], width: int, layer: str) -> None:
    """Explicit indices must lie in ``0..width-1`` (checked before any work)."""
    for item in items:
        bad = [i for i in item.indices if not 0 <= i < width]
        if bad:
            raise ValueError(f"unit {bad[0]} is out of range for layer {layer!r}: it has "
                             f"{width} units, 0..{width - 1}")


def needs(items: list[UnitItem]) -> set[str]:
    """What the selections need: ``"poz"`` (images) and/or ``"search"`` (a search result)."""
    kinds = {item.kind for item in items}
    out = {"poz"} if kinds & {"lowest-poz", "highest-poz", "never-fire"} else set()
    return out | ({"search"} if kinds & {"kept", "pruned"} else set())


def select_units(items: list[UnitItem], width: int, poz: np.ndarray | None = None,
                 kept: np.ndarray | None = None) -> list[int]:
    """Unit indices in list order without repeats. PoZ selections rank by PoZ (ties: lower
    index first); ``never-fire`` takes units with PoZ 1 (no positive activation on any image
    or position), ``kept``/``pruned`` units by the search mask ``kept`` in index order (both
    at most ``count``)."""
    out: list[int] = []
    for item in items:
        if item.kind == "index":
            chosen = list(item.indices)
        elif item.kind == "all":
            chosen = list(range(width))
        elif item.kind in ("kept", "pruned"):
            chosen = np.flatnonzero(kept > 0 if item.kind == "kept" else kept <= 0)
            chosen = list(chosen[:item.count])
        else:
            order = np.argsort(poz, kind="stable")
            if item.kind == "highest-poz":
                order = np.argsort(-poz, kind="stable")
            elif item.kind == "never-fire":
                order = np.flatnonzero(poz >= 1.0)
            chosen = list(order[:item.count])
        out += [int(u) for u in chosen if int(u) not in out]
    return out


def unit_poz(acts: jax.Array) -> np.ndarray:
    """PoZ of every unit (over images and, for conv maps, positions), as the searches rank."""
    from jaxprune.geometry import poz

    return np.asarray(poz(acts, conv=acts.ndim == 4))


def load_search_masks(path: str | Path, direction: str | None = None, seed: int = 0
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Unit masks of one network of a search result JSON (``jaxprune prune --json``, a
    ``poz_search_directions`` / resume file, or one :class:`PruneResult` dict), and what was
    picked (direction, seed). Unreadable files and ambiguous directions are ``ValueError``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--search {path}: not a readable JSON file ({e})") from None
    data = data.get("search", data) if isinstance(data, dict) else data
    if isinstance(data, dict) and "masks" in data:
        return _masks_of(data, path), {"direction": data.get("direction"), "seed": data.get("seed")}
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        raise ValueError(f"--search {path}: no search results (expected the JSON of "
                         "'jaxprune prune --json' or a PruneResult with 'masks')")
    if direction is None:
        if len(results) > 1:
            raise ValueError(f"--search {path} holds the directions {', '.join(results)}; "
                             "choose one with --search-direction")
        direction = next(iter(results))
    if direction not in results:
        raise ValueError(f"--search {path} has no {direction!r} results (it has "
                         f"{', '.join(results)})")
    runs = results[direction]
    if not 0 <= seed < len(runs):
        raise ValueError(f"--search {path}: no seed {seed} (it has {len(runs)})")
    return _masks_of(runs[seed], path), {"direction": direction, "seed": seed}


def _masks_of(result: dict, path) -> dict[str, np.ndarray]:
    try:
        return {k: np.asarray(v, np.float32) for k, v in result["masks"].items()}
    except (KeyError, AttributeError, TypeError, ValueError):
        raise ValueError(f"--search {path}: its result has no readable 'masks'") from None


def search_status(masks: dict[str, np.ndarray], layer: str, width: int, path) -> np.ndarray:
    """The kept (1) / pruned (0) mask of ``layer`` from a search's masks, checked."""
    if layer not in masks:
        raise ValueError(f"--search {path} has no mask for layer {layer!r} (it has masks for "
                         f"{', '.join(masks) or 'no layer'}); is it a search of this network?")
    mask = masks[layer]
    if mask.shape != (width,):
        raise ValueError(f"--search {path}: the mask of {layer!r} has {mask.size} units, the "
                         f"network's layer has {width}; is it a search of this network?")
    return mask


def pixel_input(arch, mean, std):
    """``pixels [k, h, w, c] in [0, 1] -> network input``: per-channel ``(p − mean) / std``
    (None: unchanged), flattened for a vector network."""
    m = None if mean is None else jnp.asarray(mean, jnp.float32).reshape(1, 1, 1, -1)
    s = None if std is None else jnp.asarray(std, jnp.float32).reshape(1, 1, 1, -1)

    def to_input(pixels: jax.Array) -> jax.Array:
        x = pixels if m is None else (pixels - m) / s
        if len(arch.input_shape) == 1:
            x = x.reshape(x.shape[0], -1)
        return x

    return to_input
