"""2-D convolution (NHWC input, HWIO kernel) that stays fast when vmapped over kernels on CPU.

``vmap`` over stacked kernels (S seeds trained or searched together) turns
``lax.conv_general_dilated`` into a convolution with ``feature_group_count = S``. XLA:CPU runs
grouped convolutions, and above all their gradients, many times slower than S separate ones
(a LeNet-5 training step for 8 stacked seeds: 0.73 s vmapped against 0.18 s as 8 convolutions
in the same program). :func:`conv2d` therefore carries its own batching rule: a batch of
inputs with one shared kernel folds into the convolution's batch axis, and a batch of kernels
runs as S convolutions side by side in the same compiled program. Its gradient is defined with
the same rule, so ``jit(vmap(grad(...)))`` never produces a grouped convolution. Output
channels are padded to a multiple of 8 inside the call (faster in XLA:CPU). On other
backends (GPU, TPU) grouped convolutions are fast and :func:`conv2d` is the plain XLA one.

The gradient of a convolution's kernel was the other loss on XLA:CPU (5-8 GFLOP/s for a 64->64
3x3 layer, against 80 GFLOP/s for its forward pass). ``jaxprune.CPU_CONV_FLAG`` (XLA's
YNNPACK fusion of dots, which ``jaxprune train`` adds: :func:`jaxprune.add_cpu_conv_flag`)
runs it 1-11x faster, by layer and CPU; ``benchmarks/conv_grad_cost.py`` compares it with
XLA's default, its other CPU library options and the im2col and per-tap formulations tried.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


Padding = int | tuple[tuple[int, int], tuple[int, int]]


def pad_pairs(padding: Padding) -> list[tuple[int, int]]:
    """``[(top, bottom), (left, right)]`` zero padding from an int (symmetric) or the pairs."""
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    return [tuple(int(v) for v in pair) for pair in padding]


def xla_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """``lax.conv_general_dilated``: ``x [n, h, w, c]`` * ``kernel [kh, kw, c, o]`` ->
    ``[n, h', w', o]`` with a square stride and zero padding (an int: symmetric, or
    ``((top, bottom), (left, right))``)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), pad_pairs(padding), dimension_numbers=_DIMENSIONS
    )


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding):
    """Per-channel convolution ``x [n, h, w, c]`` * ``kernel [kh, kw, c]`` -> ``[n, h', w', c]``:
    ``out[i, j, c] = Σ_{dy, dx} x_pad[s·i + dy, s·j + dx, c] · k[dy, dx, c]``.

    A sum of ``kh·kw`` strided slices times per-channel weights: no grouped convolution (slow
    in XLA:CPU, see the module docstring), and vmap/grad need no custom rule. Equals
    ``lax.conv_general_dilated`` with ``feature_group_count = c`` (tested).
    """
    kh, kw = kernel.shape[:2]
    (t, b), (left, r) = pad_pairs(padding)
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(t, b), (left, r), (0, 0)])
    h, w = xp.shape[-3:-1]
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = None
    for dy in range(kh):
        for dx in range(kw):
            window = xp[..., dy:dy + stride * (oh - 1) + 1:stride,
                        dx:dx + stride * (ow - 1) + 1:stride, :]
            tap = window * channel_last(kernel[dy, dx], x.ndim)
            out = tap if out is None else out + tap
    return out


def xla_max_pool2d(a: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """``lax.reduce_window`` max over ``window x window`` patches of ``a [..., h, w, c]`` with
    a square stride and symmetric ``-inf`` padding -> ``[..., h', w', c]``."""
    lead = (1,) * (a.ndim - 3)
    pads = [(0, 0)] * (a.ndim - 3) + [(padding, padding)] * 2 + [(0, 0)]
    return jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, lead + (window, window, 1),
                                 lead + (stride, stride, 1), pads)


def max_pool2d(a: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """:func:`xla_max_pool2d`, whose gradient, for non-overlapping windows (``window ==
    stride``, no padding), is computed as a selection instead of XLA's select-and-scatter:
    ``g`` goes to the first maximum (row-major) of each window, as select-and-scatter gives it,
    found by ``argmax`` over the window's patch (trailing rows and columns that fill no window
    get none, as "VALID" drops them). Elementwise ops, which XLA:CPU runs much faster (a
    stacked LeNet5 training step 1.8x); the forward pass stays ``reduce_window``, faster in
    a search. Tested against :func:`xla_max_pool2d`, ties included."""
    if window != stride or padding:
        return xla_max_pool2d(a, window, stride, padding)
    return _nonoverlapping_max_pool(a, window)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _nonoverlapping_max_pool(a: jax.Array, window: int) -> jax.Array:
    return xla_max_pool2d(a, window, window)


def _pool_forward(a, window):
    return xla_max_pool2d(a, window, window), a


def _pool_backward(window, a, g):
    """``g [..., h', w', c]`` placed at each window's first maximum of ``a [..., h, w, c]``."""
    *lead, h, w, c = a.shape
    oh, ow = g.shape[-3:-1]
    patches = a[..., :oh * window, :ow * window, :].reshape(*lead, oh, window, ow, window, c)
    patches = jnp.moveaxis(patches, (-4, -2), (-2, -1)).reshape(*lead, oh, ow, c, window ** 2)
    best = jnp.argmax(patches, axis=-1, keepdims=True)  # int64 under jax_enable_x64
    first = best == jax.lax.broadcasted_iota(best.dtype, patches.shape, patches.ndim - 1)
    grad = jnp.where(first, g[..., None], 0).reshape(*lead, oh, ow, c, window, window)
    grad = jnp.moveaxis(grad, (-2, -1), (-4, -2)).reshape(*lead, oh * window, ow * window, c)
    pads = [(0, 0)] * len(lead) + [(0, h - oh * window), (0, w - ow * window), (0, 0)]
    return (jnp.pad(grad, pads),)


_nonoverlapping_max_pool.defvjp(_pool_forward, _pool_backward)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one axis: out = ceil(size / stride), total
    ``max((out - 1)·stride + kernel - size, 0)``, the extra pixel (odd total) at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _stack_over(fn: Callable, axis_size: int, args, batched) -> jax.Array:
    """``stack([fn(*args[s]) for s in range(axis_size)])`` with unbatched arguments shared."""
    outs = [fn(*(a[s] if b else a for a, b in zip(args, batched, strict=True)))
            for s in range(axis_size)]
    return jnp.stack(outs)


def _fold_into_batch(fn: Callable, axis_size: int, *xs: jax.Array) -> jax.Array:
    """``fn`` of arrays ``[S, n, ...]`` with their S axis folded into the batch axis n."""
    out = fn(*(x.reshape((-1,) + x.shape[2:]) for x in xs))
    return out.reshape((axis_size, -1) + out.shape[1:])


def _with_rule(fn: Callable, fold: bool) -> Callable:
    """``fn(activation, kernel, *rest)`` under :func:`custom_vmap`: where only ``activation``
    (and ``rest``) are batched and ``fold``, the batch folds into the conv's batch axis;
    otherwise the batch runs as separate convolutions in one program."""
    wrapped = custom_vmap(fn)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        activation_batched, kernel_batched = in_batched[:2]
        if fold and activation_batched and not kernel_batched and all(in_batched[2:]):
            kernel = args[1]
            return _fold_into_batch(lambda a, *rest: wrapped(a, kernel, *rest), axis_size,
                                    args[0], *args[2:]), True
        return _stack_over(wrapped, axis_size, args, in_batched), True

    return wrapped


@cache
def _conv2d_cpu(stride: int, padding: Padding) -> Callable:
    def forward(x, kernel):
        # XLA:CPU is up to 1.7x faster when the output channels are a multiple of 8 (LeNet-5's
        # conv1 has 6); the padded channels are zero and sliced away.
        out_channels = kernel.shape[-1]
        extra = -out_channels % 8
        if extra:
            kernel = jnp.pad(kernel, [(0, 0)] * 3 + [(0, extra)])
        return xla_conv2d(x, kernel, stride, padding)[..., :out_channels]

    def input_grad(kernel, x_like, g):
        return jax.vjp(lambda x_: forward(x_, kernel), x_like)[1](g)[0]

    def kernel_grad(x, kernel, g):
        return jax.vjp(lambda k_: forward(x, k_), kernel)[1](g)[0]

    forward_rule = _with_rule(forward, fold=True)
    # (activation, kernel, rest) order: the gradient signal g is the activation that folds
    input_grad_rule = _with_rule(lambda g, kernel, x: input_grad(kernel, x, g), fold=True)
    kernel_grad_rule = _with_rule(kernel_grad, fold=False)

    @jax.custom_vjp
    def conv(x, kernel):
        return forward_rule(x, kernel)

    def conv_fwd(x, kernel):
        return forward_rule(x, kernel), (x, kernel)

    def conv_bwd(residuals, g):
        x, kernel = residuals
        return input_grad_rule(g, kernel, x), kernel_grad_rule(x, kernel, g)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv


def channel_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector ``[c]`` shaped to broadcast against ``[..., c]`` of rank ndim."""
    return v.reshape((1,) * (ndim - 1) + v.shape[-1:])


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """``x [n, h, w, c]`` * ``kernel [kh, kw, c, o]`` -> ``[n, h', w', o]``; equal to
    :func:`xla_conv2d`, with the CPU batching rule described in the module docstring."""
    if jax.default_backend() != "cpu":
        return xla_conv2d(x, kernel, stride, padding)
    return _conv2d_cpu(stride, padding)(x, kernel)
