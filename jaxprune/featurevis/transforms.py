"""Robustness transforms for feature visualisation, with explicit PRNG keys.

Each optimisation step shows the network a randomly moved view of the image: padded by
``pad`` pixels of ``pad_value``, then translated (``jitter``, and a second, smaller
``final_jitter``), scaled and rotated about the centre, sampled bilinearly back to the output
size. The identity view (no shift, scale 1, angle 0) returns the image unchanged, so the
transforms move the image without otherwise degrading it (Lucid's ``standard_transforms``:
pad 12, jitter 8, scales 0.90–1.10, rotations −10°…10°, jitter 4)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Transforms:
    """Random view options; ``scales`` and ``angles`` (degrees) are drawn uniformly from the
    listed values, the shifts uniformly from the integers in ``[-jitter//2, jitter//2]``."""

    pad: int = 12
    pad_value: float = 0.5
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11))
    final_jitter: int = 4

    @classmethod
    def none(cls) -> Transforms:
        """No transform at all (the view is the image)."""
        return cls(pad=0, jitter=0, scales=(1.0,), angles=(0.0,), final_jitter=0)


def _pick(u: jax.Array, values: tuple[float, ...]) -> jax.Array:
    """The value of ``values`` that a uniform ``u`` in [0, 1) selects (each equally likely)."""
    i = jnp.minimum(jnp.floor(u * len(values)), len(values) - 1.0).astype(jnp.int32)
    return jnp.asarray(values, jnp.float32)[i]


def _shift(u: jax.Array, jitter: int) -> jax.Array:
    half = jitter // 2
    return _pick(u, tuple(float(v) for v in range(-half, half + 1)))


#: Uniform numbers one random view consumes.
VIEW_DRAWS = 6


def view_params(u: jax.Array, t: Transforms) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(shift [2] in pixels, scale, angle in radians)`` of the view that the uniforms
    ``u [VIEW_DRAWS]`` in [0, 1) select."""
    shift = _shift(u[:2], t.jitter) + _shift(u[2:4], t.final_jitter)
    return shift, _pick(u[4], t.scales), _pick(u[5], t.angles) * (np.pi / 180.0)


def affine_view(image: jax.Array, shift: jax.Array, scale: jax.Array, angle: jax.Array,
                out_size: int, pad: int = 0, pad_value: float = 0.5) -> jax.Array:
    """The ``out_size × out_size`` view of ``image [h, w, c]`` (padded by ``pad``) centred at
    the padded image's centre + ``shift``, zoomed by ``scale`` and rotated by ``angle``,
    bilinear (beyond the padding: its value)."""
    if pad:
        image = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    h, w = image.shape[:2]
    grid = jnp.arange(out_size, dtype=jnp.float32) - (out_size - 1) / 2.0
    yy, xx = jnp.meshgrid(grid, grid, indexing="ij")
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = (cos * yy - sin * xx) / scale + (h - 1) / 2.0 + shift[0]
    src_x = (sin * yy + cos * xx) / scale + (w - 1) / 2.0 + shift[1]

    return bilinear(image, src_y, src_x)


def bilinear(image: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """``image [h, w, c]`` sampled at real coordinates ``y, x [m, n]`` (row, column), bilinear,
    coordinates outside clamped to the border: ``[m, n, c]``."""
    h, w = image.shape[:2]
    y = jnp.clip(y, 0.0, h - 1.0)
    x = jnp.clip(x, 0.0, w - 1.0)
    y0 = jnp.clip(jnp.floor(y), 0.0, h - 2.0) if h > 1 else jnp.zeros_like(y)
    x0 = jnp.clip(jnp.floor(x), 0.0, w - 2.0) if w > 1 else jnp.zeros_like(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    flat = image.reshape(h * w, -1)
    iy, ix = y0.astype(jnp.int32), x0.astype(jnp.int32)

    def at(dy: int, dx: int) -> jax.Array:
        return flat.at[(iy + dy) * w + (ix + dx)].get(mode="promise_in_bounds")

    top = at(0, 0) * (1.0 - wx) + at(0, 1) * wx
    bottom = at(1, 0) * (1.0 - wx) + at(1, 1) * wx
    return top * (1.0 - wy) + bottom * wy


def views(u: jax.Array, images: jax.Array, t: Transforms, out_size: int) -> jax.Array:
    """The views that uniforms ``u [k, VIEW_DRAWS]`` select, one per image of ``images [k, h,
    w, c]``: ``[k, out_size, out_size, c]``."""
    def one(ui: jax.Array, im: jax.Array) -> jax.Array:
        shift, scale, angle = view_params(ui, t)
        return affine_view(im, shift, scale, angle, out_size, t.pad, t.pad_value)

    return jax.vmap(one)(u, images)


def random_views(key: jax.Array, images: jax.Array, t: Transforms, out_size: int) -> jax.Array:
    """One random view per image of ``images [k, h, w, c]`` drawn with ``key``. (The optimiser
    draws the uniforms of all its steps at once: random-number kernels compile slowly on
    CPU.)"""
    u = jax.random.uniform(key, (images.shape[0], VIEW_DRAWS), jnp.float32)
    return views(u, images, t, out_size)
