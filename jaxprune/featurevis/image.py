"""Image parameterisation for feature visualisation: a decorrelated Fourier basis.

An image ``[k, h, w, c]`` is parameterised by its 2-D real Fourier spectrum ``[k, 2, c, h,
w//2+1]`` (real and imaginary parts), each frequency scaled by ``1 / f^decay_power`` so that a
step of gradient descent changes low frequencies as much as high ones (Olah et al., Distill
2017; Lucid's ``fft_image``). Three-channel images are then mixed by the square root of
ImageNet's colour correlation (colour decorrelation) and squashed by a sigmoid into valid
pixels ``(0, 1)``. :func:`pixels_to_spectrum` inverts the whole map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Square root of the colour correlation of ImageNet pixels (Lucid's
#: ``color_correlation_svd_sqrt``), columns normalised by the largest column norm.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_MIX = (_COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))).astype(np.float32)
#: Lucid's constant that brings the inverse FFT of the initial spectrum to a usable range.
FFT_SCALE = 4.0


def frequencies(h: int, w: int) -> np.ndarray:
    """``|f|`` of every bin of a ``h × w`` real 2-D FFT, ``[h, w//2 + 1]`` (cycles per pixel)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """Per-bin scale ``sqrt(h·w) / max(|f|, 1/max(h, w))^decay_power``, float32."""
    scale = 1.0 / np.maximum(frequencies(h, w), 1.0 / max(h, w)) ** decay_power
    return (scale * np.sqrt(h * w)).astype(np.float32)


def init_spectrum(key: jax.Array, shape: tuple[int, int, int, int], sd: float = 0.01
                  ) -> jax.Array:
    """Random spectrum parameters ``[k, 2, c, h, w//2+1]`` ~ N(0, sd²) for images ``shape =
    (k, h, w, c)``."""
    k, h, w, c = shape
    return sd * jax.random.normal(key, (k, 2, c, h, w // 2 + 1), jnp.float32)


def _idft_matrices(h: int, w: int) -> tuple[np.ndarray, ...]:
    """Real matrices of the inverse 2-D real DFT (numpy's ``irfft2`` convention: the
    imaginary parts of the zero and Nyquist columns are ignored), float32."""
    ky, y = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
    rows = 2 * np.pi * ky * y / h  # [k_y, y]
    kx, x = np.meshgrid(np.arange(w // 2 + 1), np.arange(w), indexing="ij")
    cols = 2 * np.pi * kx * x / w  # [k_x, x]
    weight = np.full((w // 2 + 1, 1), 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    mats = (np.cos(rows) / h, np.sin(rows) / h, weight * np.cos(cols) / w,
            weight * np.sin(cols) / w)
    return tuple(m.astype(np.float32) for m in mats)


def spectrum_to_raw(spectrum: jax.Array, decay_power: float = 1.0) -> jax.Array:
    """The unbounded image ``[k, h, w, c]`` of spectrum parameters (before colour mixing):
    the inverse real FFT of the scaled spectrum, as real matrix products (equal to
    ``jnp.fft.irfft2``, and much faster to compile under ``vmap`` and ``grad`` on CPU)."""
    h = spectrum.shape[-2]
    w = _width(spectrum)
    scale = jnp.asarray(spectrum_scale(h, w, decay_power))[None, None]
    re, im = spectrum[:, 0] * scale, spectrum[:, 1] * scale  # [k, c, k_y, k_x]
    cy, sy, cx, sx = (jnp.asarray(m) for m in _idft_matrices(h, w))
    yr = jnp.einsum("yu,kcuv->kcyv", cy, re) - jnp.einsum("yu,kcuv->kcyv", sy, im)
    yi = jnp.einsum("yu,kcuv->kcyv", sy, re) + jnp.einsum("yu,kcuv->kcyv", cy, im)
    img = jnp.einsum("kcyv,vx->kyxc", yr, cx) - jnp.einsum("kcyv,vx->kyxc", yi, sx)
    return img / FFT_SCALE


def _width(spectrum: jax.Array) -> int:
    """Even image widths only: ``w = 2 · (w//2 + 1 − 1)`` (an odd width is not recoverable
    from the half spectrum's shape)."""
    return 2 * (spectrum.shape[-1] - 1)


def to_pixels(spectrum: jax.Array, decay_power: float = 1.0, decorrelate: bool = True
              ) -> jax.Array:
    """Pixels in ``(0, 1)``, ``[k, h, w, c]``: inverse FFT, colour mixing (3 channels, when
    ``decorrelate``), sigmoid."""
    raw = spectrum_to_raw(spectrum, decay_power)
    if decorrelate and raw.shape[-1] == 3:
        raw = raw @ jnp.asarray(COLOR_MIX.T)
    return jax.nn.sigmoid(raw)


def pixels_to_spectrum(pixels: jax.Array, decay_power: float = 1.0, decorrelate: bool = True,
                       eps: float = 1e-6) -> jax.Array:
    """The inverse of :func:`to_pixels` (pixels clipped to ``[eps, 1 − eps]``): spectrum
    parameters whose image is ``pixels``, e.g. to start from a photograph."""
    k, h, w, c = pixels.shape
    if w % 2:
        raise ValueError(f"the Fourier parameterisation needs an even image width, got {w}")
    p = jnp.clip(jnp.asarray(pixels, jnp.float32), eps, 1.0 - eps)
    raw = jnp.log(p) - jnp.log1p(-p)
    if decorrelate and c == 3:
        raw = raw @ jnp.asarray(np.linalg.inv(COLOR_MIX.T).astype(np.float32))
    z = jnp.fft.rfft2(jnp.transpose(raw, (0, 3, 1, 2)) * FFT_SCALE, axes=(-2, -1))
    scale = jnp.asarray(spectrum_scale(h, w, decay_power))[None, None]
    return jnp.stack([jnp.real(z) / scale, jnp.imag(z) / scale], axis=1)
