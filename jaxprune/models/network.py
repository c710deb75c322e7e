"""The forward pass of every family as pure functions, and its Flax NNX module.

Parameters are a plain nested dict ``{layer: {"kernel", "bias"}, "head": {...}}`` with conv
kernels in HWIO and dense kernels in ``[in, out]`` layout; activations are NHWC. Unit masks
``{layer: float32[width]}`` multiply a layer's post-ReLU output (missing layers are unmasked);
weight masks are a pytree shaped like the params and multiply them.

Forward for layer i: ``h_i = transition(a_{i-1})``, ``a_i = relu(h_i W_i + b_i) * m_i``, where
the transition pools, flattens and (in training) drops out. Masking commutes with the
transition, so the next pre-activation is linear in a layer's mask — the search relies on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprune.models import residual
from jaxprune.models.arch import Architecture, layer_geometry
from jaxprune.models.conv import channel_last, conv2d, max_pool2d
from jaxprune.models.residual import ResidualArchitecture, is_residual

Params = dict[str, dict[str, jax.Array]]
Masks = Mapping[str, jax.Array]

HEAD = "head"


def init_params(arch: Architecture | ResidualArchitecture, key: jax.Array) -> Params:
    """PyTorch-default initialisation: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    if is_residual(arch):
        return residual.init_residual(arch, key)
    geometries, head_geometry = layer_geometry(arch)
    shapes = {}
    for layer, geo in zip(arch.layers, geometries, strict=True):
        if layer.kind == "conv":
            shapes[layer.name] = (layer.kernel, layer.kernel, geo.in_shape[-1], layer.width)
        else:
            shapes[layer.name] = (geo.in_shape[0], layer.width)
    shapes[HEAD] = (head_geometry.in_shape[0], arch.num_classes)
    params = {}
    for name, key_i in zip(shapes, jax.random.split(key, len(shapes)), strict=True):
        shape = shapes[name]
        bound = 1.0 / np.sqrt(np.prod(shape[:-1]))
        k_kernel, k_bias = jax.random.split(key_i)
        params[name] = {
            "kernel": jax.random.uniform(k_kernel, shape, jnp.float32, -bound, bound),
            "bias": jax.random.uniform(k_bias, shape[-1:], jnp.float32, -bound, bound),
        }
    return params


def init_stack(arch: Architecture, seeds) -> Params:
    """Parameters of ``len(seeds)`` networks stacked on a leading axis; seed s gives exactly
    ``init_params(arch, jax.random.key(s))``."""
    seeds = jnp.asarray(seeds, dtype=jnp.uint32)
    return jax.vmap(lambda s: init_params(arch, jax.random.key(s)))(seeds)


def seed_count(params: Params) -> int:
    """S, the length of the leading seed axis of stacked ``params``."""
    return int(jax.tree.leaves(params)[0].shape[0])


def seed_slice(tree, s: int):
    """Network ``s`` of parameters (or masks, or any pytree) stacked on a leading seed axis."""
    return jax.tree.map(lambda a: a[s], tree)


def _linear(kind: str, p: Mapping[str, jax.Array], h: jax.Array, stride: int, padding: int):
    if kind == "conv":
        z = conv2d(h, p["kernel"], stride, padding)
    else:
        z = h @ p["kernel"]
    return z + channel_last(p["bias"], z.ndim)


def linear(arch: Architecture, params: Params, index: int, h: jax.Array) -> jax.Array:
    """Pre-activation of layer ``index`` (``len(arch.layers)`` = the head) from its input."""
    if index == len(arch.layers):
        return _linear("dense", params[HEAD], h, 1, 0)
    layer = arch.layers[index]
    return _linear(layer.kind, params[layer.name], h, layer.stride, layer.padding)


def _adaptive_avg_pool(a: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """torchvision's AdaptiveAvgPool2d: bin i spans [floor(i*H/o), ceil((i+1)*H/o))."""
    (h, w), (oh, ow) = a.shape[-3:-1], out_hw
    if (h, w) == (oh, ow):
        return a

    def bins(size, out):
        return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]

    rows = [jnp.mean(a[..., r0:r1, :, :], axis=-3, keepdims=True) for r0, r1 in bins(h, oh)]
    a = jnp.concatenate(rows, axis=-3)
    cols = [jnp.mean(a[..., :, c0:c1, :], axis=-2, keepdims=True) for c0, c1 in bins(w, ow)]
    return jnp.concatenate(cols, axis=-2)


def _dropout(h: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if rate <= 0.0:
        return h
    if key is None:
        raise ValueError("training with dropout needs a random key")
    keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
    return jnp.where(keep, h / (1.0 - rate), jnp.zeros_like(h))


def pool(arch: Architecture, index: int, a: jax.Array) -> jax.Array:
    """The pooling of the layer before layer ``index`` applied to its masked activation
    (identity for ``index == 0`` or no pooling). Per channel, so it commutes with unit masks."""
    if index > 0:
        prev = arch.layers[index - 1]
        if prev.pool is not None:
            a = max_pool2d(a, *prev.pool)
        if prev.adaptive_pool is not None:
            a = _adaptive_avg_pool(a, prev.adaptive_pool)
    return a


def transition(
    arch: Architecture,
    index: int,
    a: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> jax.Array:
    """Input of layer ``index`` (``len(arch.layers)`` = the head) from the masked activation of
    the layer before it (or from the network input when ``index == 0``): pooling of the layer
    before, flattening where a dense layer follows images, dropout in training."""
    layers = arch.layers
    a = pool(arch, index, a)
    is_head = index == len(layers)
    if (is_head or layers[index].kind == "dense") and a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if train:
        rate = arch.head_dropout if is_head else layers[index].dropout
        a = _dropout(a, rate, key)
    return a


def _masked_relu(z: jax.Array, mask: jax.Array | None) -> jax.Array:
    a = jax.nn.relu(z)
    return a if mask is None else a * channel_last(mask, a.ndim)


def forward_from(
    arch: Architecture,
    params: Params,
    masks: Masks | None,
    index: int,
    z: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits and masked post-ReLU activations of layers ``index..`` from the pre-activation
    ``z`` of layer ``index``."""
    masks = masks or {}
    keys = [None] * (len(arch.layers) + 1) if key is None else list(
        jax.random.split(key, len(arch.layers) + 1)
    )
    acts = {}
    a = z
    for i in range(index, len(arch.layers)):
        if i > index:
            h = transition(arch, i, a, train=train, key=keys[i])
            z = linear(arch, params, i, h)
        name = arch.layers[i].name
        a = acts[name] = _masked_relu(z, masks.get(name))
    n = len(arch.layers)
    logits = linear(arch, params, n, transition(arch, n, a, train=train, key=keys[n]))
    return logits, acts


def apply(
    arch: Architecture,
    params: Params,
    masks: Masks | None,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
    weight_masks: Params | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(logits [n, classes], {layer: masked post-ReLU activation [n, ..., width]})``.

    ``x`` is ``[n, *arch.input_shape]`` (a vector network also accepts images, flattened).
    ``key`` drives dropout when ``train``. Pure: jit it, vmap it over stacked params or masks.
    """
    if weight_masks is not None:
        params = jax.tree.map(lambda p, m: p * m, params, weight_masks)
    if is_residual(arch):  # batch norm is folded: training and inference are the same map
        return residual.apply_residual(arch, params, masks, x)
    k0 = None if key is None else jax.random.fold_in(key, 0)
    z = linear(arch, params, 0, transition(arch, 0, x, train=train, key=k0))
    return forward_from(arch, params, masks, 0, z, train=train, key=key)


# ----------------------------------------------------------------------------- search maths
# What the PoZ engine (jaxprune.search.poz) needs: per prunable layer / unit group ``j`` a
# "pre-activation" ``z_j`` with ``relu(z_j)`` = its activation before its own mask, and the
# pre-activation of its consumer (the next linear map), linear in its mask.


@partial(jax.jit, static_argnums=0, static_argnames="flat")
def activations(arch: Architecture, params: Params, masks, x: jax.Array,
                flat: bool = True) -> dict[str, jax.Array]:
    """Masked post-ReLU activations of every layer, ``[n, ..., width]`` or (``flat``)
    flattened to ``[n, features]``."""
    _, acts = apply(arch, params, masks, x)
    return {k: v.reshape(v.shape[0], -1) if flat else v for k, v in acts.items()}


@partial(jax.jit, static_argnums=(0, 4))
def preactivation(arch: Architecture, params: Params, masks, x: jax.Array, index: int):
    """Pre-activation ``[n, ..., width]`` of layer ``index`` of a chain network under
    ``masks``."""
    h = x if index == 0 else apply(arch, params, masks, x)[1][arch.layers[index - 1].name]
    return linear(arch, params, index, transition(arch, index, h))


def preactivations(arch, params: Params, masks, x: jax.Array, start: int = 0,
                   z=None) -> list[jax.Array]:
    """Pre-activations ``z_j`` of layers ``start..readout`` under ``masks`` (from the input, or
    from ``z`` = the pre-activation of layer ``start``; residual families: always from the
    input, see :func:`jaxprune.models.residual.preactivations`)."""
    if is_residual(arch):
        return residual.preactivations(arch, params, masks, x, start)
    readout = arch.index(arch.readout_layer)
    if z is None:
        z = linear(arch, params, 0, transition(arch, 0, x))
        start = 0
    out = [z]
    for j in range(start + 1, readout + 1):
        a = jax.nn.relu(out[-1]) * channel_last(masks[arch.layers[j - 1].name], out[-1].ndim)
        out.append(linear(arch, params, j, transition(arch, j, a)))
    return out


def readout_from(arch: Architecture, params: Params, masks, index: int,
                 z: jax.Array) -> jax.Array:
    """Readout features ``[n, d]`` from the pre-activation of layer ``index`` (chains)."""
    readout = arch.index(arch.readout_layer)
    a = z
    for j in range(index, readout + 1):
        if j > index:
            z = linear(arch, params, j, transition(arch, j, a))
        a = jax.nn.relu(z) * channel_last(masks[arch.layers[j].name], z.ndim)
    return a.reshape(a.shape[0], -1)


def readout_after(arch, params: Params, masks, index: int, z: jax.Array,
                  context=None) -> jax.Array:
    """Readout features from the pre-activation ``z`` of the consumer of layer ``index``
    (chains: layer ``index + 1``; residual families: ``context`` is the input of the
    consumer's block, from :func:`consumer_state`)."""
    if is_residual(arch):
        return residual.readout_after(arch, params, masks, index, z, context)
    return readout_from(arch, params, masks, index + 1, z)


def consumer_state(arch: ResidualArchitecture, params: Params, masks, x: jax.Array,
                   index: int):
    """Residual families: ``(consumer pre-activation, its block's input)`` of group
    ``index`` under ``masks``."""
    return residual.consumer_state(arch, params, masks, x, index)


def unit_contribution(
    arch, params: Params, index: int, a: jax.Array, unit: jax.Array
) -> jax.Array:
    """``C_u``: the part of layer ``index + 1``'s pre-activation (bias excluded) due to unit
    ``u`` of layer ``index`` alone, from its activation ``a``; shape of that pre-activation
    (residual families: of group ``index``'s consumer)."""
    if is_residual(arch):
        return residual.unit_contribution(arch, params, index, a, unit)
    nxt = index + 1
    t = pool(arch, nxt, a)
    channel = jnp.take(t, unit, axis=-1)[..., None]  # [n, (h, w,) 1]
    kernel = params[arch.layers[nxt].name]["kernel"] if nxt < len(arch.layers) else None
    if arch.layers[nxt].kind == "conv":
        k = jax.lax.dynamic_slice_in_dim(kernel, unit, 1, axis=2)
        layer = arch.layers[nxt]
        return conv2d(channel, k, layer.stride, layer.padding)
    n_in = kernel.shape[0]
    width = t.shape[-1]
    rows = kernel.reshape(n_in // width, width, -1)  # [spatial, channels, out]: HWC flattening
    w_u = jnp.take(rows, unit, axis=1)  # [spatial, out]
    return channel.reshape(channel.shape[0], -1) @ w_u


def running_sum(c: jax.Array) -> jax.Array:
    """``cumsum(c, axis=0)`` as a sequential scan: XLA:CPU lowers ``jnp.cumsum`` to a
    quadratic reduce-window, 5x slower here for a chunk of 32 contributions."""
    def step(total, term):
        total = total + term
        return total, total

    return jax.lax.scan(step, jnp.zeros_like(c[0]), c)[1]


class Network(nnx.Module):
    """A Flax NNX module for an :class:`Architecture`; ``model(x, masks)`` returns
    ``(logits, activations)``. ``nnx.split(model, nnx.Param)`` or :meth:`param_dict` gives
    the parameters the pure :func:`apply` takes."""

    def __init__(
        self,
        arch: Architecture,
        *,
        rngs: nnx.Rngs | None = None,
        params: Params | None = None,
    ):
        if params is None:
            rngs = rngs if rngs is not None else nnx.Rngs(0)
            params = init_params(arch, rngs.params())
        self.arch = arch
        self.params = nnx.Dict(
            {
                name: nnx.Dict({k: nnx.Param(jnp.asarray(v)) for k, v in p.items()})
                for name, p in params.items()
            }
        )

    def param_dict(self) -> Params:
        """The parameters as a plain nested dict of arrays."""
        return {name: {k: v[...] for k, v in p.items()} for name, p in self.params.items()}

    @property
    def layers(self):
        return self.arch.layers

    @property
    def readout(self) -> str:
        return self.arch.readout_layer

    def __call__(
        self,
        x: jax.Array,
        masks: Masks | None = None,
        *,
        train: bool = False,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return apply(self.arch, self.param_dict(), masks, x, train=train, key=key)
