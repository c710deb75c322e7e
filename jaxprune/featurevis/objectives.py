"""Objectives of activation maximisation, composable by sum, difference and scaling.

An :class:`Objective` maps the activations of a batch of ``k`` images (``{layer: [k, ...]}``,
the layers it names in ``layers``) to one value per image ``[k]``; the optimiser maximises
their sum. Unit indices and directions may be traced values, so one objective constructor
serves every unit of a vmapped optimisation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Acts = Mapping[str, jax.Array]


def _spatial_mean(a: jax.Array) -> jax.Array:
    """``[k, (h, w,) c] -> [k, c]``: the mean over positions (identity for dense layers)."""
    return jnp.mean(a, axis=tuple(range(1, a.ndim - 1))) if a.ndim > 2 else a


@dataclass(frozen=True)
class Objective:
    """``fn(acts) -> [k]`` per-image values; ``layers``: the layers ``fn`` reads."""

    fn: Callable[[Acts], jax.Array]
    layers: frozenset[str]
    name: str = "objective"

    def __call__(self, acts: Acts) -> jax.Array:
        return self.fn(acts)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda a: self.fn(a) + other.fn(a), self.layers | other.layers,
                         f"({self.name} + {other.name})")

    def __sub__(self, other: Objective) -> Objective:
        return Objective(lambda a: self.fn(a) - other.fn(a), self.layers | other.layers,
                         f"({self.name} - {other.name})")

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda a: weight * self.fn(a), self.layers, f"{weight}·{self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0


def channel(layer: str, unit: int | jax.Array) -> Objective:
    """A conv channel's activation averaged over positions (a dense layer: the unit itself)."""
    return Objective(lambda a: jnp.take(_spatial_mean(a[layer]), unit, axis=-1),
                     frozenset({layer}), f"{layer}:{unit}")


def dense_unit(layer: str, unit: int | jax.Array) -> Objective:
    """One unit of a dense layer (activations ``[k, width]``)."""
    def fn(a: Acts) -> jax.Array:
        x = a[layer]
        if x.ndim != 2:
            raise ValueError(f"dense_unit({layer!r}) needs [k, width] activations, got "
                             f"{x.shape}; use channel() for a conv layer")
        return jnp.take(x, unit, axis=-1)

    return Objective(fn, frozenset({layer}), f"{layer}[{unit}]")


def direction(layer: str, vector: jax.Array) -> Objective:
    """The projection of a layer's (position-averaged) activation on ``vector [width]``."""
    return Objective(lambda a: _spatial_mean(a[layer]) @ vector.astype(jnp.float32),
                     frozenset({layer}), f"{layer}·v")


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix of ``layer`` to the other
    images' (Lucid's diversity term): larger when the ``k`` images of a batch differ in style.
    Zero for a single image."""
    def fn(a: Acts) -> jax.Array:
        x = a[layer]
        k = x.shape[0]
        if k < 2:
            return jnp.zeros((k,), jnp.float32)
        flat = x.reshape(k, -1, x.shape[-1])
        gram = jnp.einsum("kpc,kpd->kcd", flat, flat).reshape(k, -1) / flat.shape[1]
        gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
        sim = gram @ gram.T
        off = (jnp.sum(sim, axis=1) - jnp.diagonal(sim)) / (k - 1)
        return -off

    return Objective(fn, frozenset({layer}), f"diversity({layer})")
