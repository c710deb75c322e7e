"""Plumbing every search shares: directions, layer visiting order, stimulus checks, starting
masks, and the PoZ ranking of a layer's units."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import geometry
from jaxprune.masks import full_masks, validate_masks
from jaxprune.models import Architecture
from jaxprune.models.network import seed_count, seed_slice

DIRECTIONS = ("bottom-up", "top-down")
#: The PoZ search's layer orders: the papers' two, and two beyond one greedy pass
#: (:mod:`jaxprune.search.poz`): ``alternate`` (top-down and bottom-up passes until a pass
#: removes nothing), ``global`` (one PoZ ranking over all layers' units), ``global-alternate``.
POZ_DIRECTIONS = (*DIRECTIONS, "alternate", "global", "global-alternate")


def check_direction(direction: str, allowed: Sequence[str] = DIRECTIONS) -> None:
    if direction not in allowed:
        raise ValueError(f"direction must be one of {tuple(allowed)}, got {direction!r}")


def layers_in_order(arch: Architecture, layers: str | Sequence[str] | None,
                    direction: str = "bottom-up") -> list[str]:
    """The layers to prune in visiting order (default: every layer up to the readout;
    ``"top-down"`` visits the readout first). An unknown name raises ``ValueError`` listing
    the network's layers; so do a layer above the readout, an empty list and repeats."""
    check_direction(direction)
    readout = arch.index(arch.readout_layer)
    if layers is None:
        names = list(arch.layer_names[: readout + 1])
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise ValueError(f"no layers to prune; {arch.family} has {list(arch.layer_names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"layers named twice: {names}")
        for name in names:
            if arch.index(name) > readout:
                raise ValueError(f"layer {name!r} is above the readout {arch.readout_layer!r}")
    return sorted(names, key=arch.index, reverse=direction == "top-down")


def check_stimuli(arch: Architecture, shape: Sequence[int], min_n: int = 3,
                  what: str = "a representational similarity") -> None:
    """Stimuli of ``shape`` must be ``[n, *input_shape]`` (vector networks also take
    flattened images) with ``n >= min_n``."""
    shape, want = tuple(shape), tuple(arch.input_shape)
    vector_ok = len(want) == 1 and len(shape) >= 2 and int(np.prod(shape[1:])) == want[0]
    if len(shape) < 2 or (shape[1:] != want and not vector_ok):
        raise ValueError(f"stimuli have shape {shape}; {arch.family} expects [n, "
                         f"{', '.join(map(str, want))}]")
    if shape[0] < min_n:
        raise ValueError(f"{what} needs at least {min_n} stimuli, got {shape[0]}")


def start_masks(arch: Architecture, masks: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Validated float32 copies of ``masks`` for every layer (all ones where absent)."""
    masks = dict(masks or {})
    validate_masks(arch, masks)
    full = full_masks(arch)
    return {name: np.array(masks.get(name, full[name]), np.float32) for name in full}


def device_masks(masks: Mapping[str, Any], dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Masks as device arrays of the activations' dtype."""
    return {k: jnp.asarray(v, dtype) for k, v in masks.items()}


@partial(jax.jit, static_argnums=1)
def layer_poz(zs: tuple[jax.Array, ...], eps: float) -> tuple[jax.Array, ...]:
    """PoZ ``[S, width]`` of ``relu(z)`` for each pre-activation ``z [S, n, ...]``."""
    def one(z):
        a = jax.nn.relu(z)
        return geometry.poz(a, eps=eps, conv=a.ndim == 4)

    return tuple(jax.vmap(one)(z) for z in zs)


def poz_ranking(values: jax.Array) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed (rows of ``values [S, width]``), units by decreasing PoZ (ties: lower index
    first) and the PoZ values."""
    return [(np.argsort(-v, kind="stable"), v) for v in np.asarray(values)]


def masks_of_seed(masks: Mapping[str, Any] | None, s: int) -> dict[str, Any] | None:
    """Seed ``s``'s unit masks: per-seed ``{layer: [S, width]}`` entries sliced, shared
    ``{layer: [width]}`` ones as they are."""
    if masks is None:
        return None
    return {k: v[s] if np.ndim(v) == 2 else v for k, v in masks.items()}


def stackable(search: Callable) -> Callable:
    """Give a one-network search ``search(arch, params, x, ..., masks=, seed=)`` the library's
    seed-axis convention: with ``stacked=True``, ``params`` are stacked ``[S, ...]`` (masks
    shared ``[width]`` or per seed ``[S, width]``) and the result is a list of S results,
    seed ``s`` numbered ``seed + s`` (``seed`` default 0)."""

    @functools.wraps(search)
    def wrapper(arch, params=None, x=None, *args, stacked: bool = False, **kwargs):
        if not stacked:
            return search(arch, params, x, *args, **kwargs)
        masks, seed = kwargs.pop("masks", None), kwargs.pop("seed", None)
        return [search(arch, seed_slice(params, s), x, *args, masks=masks_of_seed(masks, s),
                       seed=(0 if seed is None else seed) + s, **kwargs)
                for s in range(seed_count(params))]

    return wrapper
