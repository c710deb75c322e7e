"""Percentage of Zeros (PoZ) per unit."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.geometry._core import Array, as_float, finite, is_traced, report


def poz(acts: Any, eps: float = 0.0, *, conv: bool | None = None) -> Array:
    """Percentage of Zeros per unit: the fraction of entries with ``acts <= eps``.

    - dense (``conv=False``): ``acts [..., n, d] → [..., d]``, the fraction over the n stimuli;
    - conv (``conv=True``): ``acts [..., n, h, w, c] → [..., c]`` (NHWC), the fraction over the
      stimuli *and* the spatial positions.

    ``conv=None`` infers the layout from the rank: 2-D input is dense, 4-D input is conv; any
    other rank is ambiguous with leading batch axes and needs ``conv`` given explicitly.
    With ``eps = 0`` an entry counts when it is exactly zero (post-ReLU activations are ``>= 0``;
    a negative, pre-ReLU value counts too, as it would be zero after the ReLU). Returns float32
    in [0, 1]. NaN/Inf input raises ``ValueError`` in eager calls.
    """
    acts = as_float(acts)
    if conv is None:
        if acts.ndim not in (2, 4):
            raise ValueError(
                f"poz cannot tell dense from conv for a {acts.ndim}-D input {acts.shape}; "
                "pass conv=False ([..., n, d]) or conv=True ([..., n, h, w, c])"
            )
        conv = acts.ndim == 4
    core = 4 if conv else 2
    if acts.ndim < core:
        layout = "[..., n, h, w, c]" if conv else "[..., n, d]"
        raise ValueError(f"poz(conv={conv}) expects {layout}; got shape {acts.shape}")
    if acts.shape[-core] < 1:
        raise ValueError(f"poz needs at least one stimulus; got shape {acts.shape}")
    out, info = _poz(acts, eps, core)
    if not is_traced(acts):
        report(info)
    return out


@partial(jax.jit, static_argnames="core")
def _poz(acts: Array, eps: float, core: int) -> tuple[Array, dict[str, Array]]:
    axes = tuple(range(-core, -1))
    return jnp.mean((acts <= eps).astype(jnp.float32), axis=axes), finite(acts=acts)
