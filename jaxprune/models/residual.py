"""Residual families as plain data: blocks of convolutions with skip connections.

A :class:`ResidualArchitecture` is a sequence of :class:`Block` s; a block is a sequence of
:class:`Op` s (a convolution, dense or depthwise, with batch norm folded into its kernel and
bias for inference, then ReLU / ReLU6 / nothing), optionally closed by a skip connection
``out = act(main(x) + shortcut(x))``. The last block's output is globally average-pooled into
the readout features, which a dense classifier (``"head"`` in the params) maps to logits.

Unit groups: an op names the ``group`` whose mask multiplies its activation; a group may span
several ops (MBConv: the expansion and the depthwise conv that follows it, per channel) and the
readout group masks the pooled features. A group is prunable only if a compacted network can
remove it: its channels are read by exactly one ordinary convolution (its *consumer*) and never
by a skip connection; channels of the residual stream are therefore not groups. Then the
consumer's pre-activation is linear in the group's mask, as in the chain families.

Params: ``{op: {"kernel", "bias"}, "head": {...}}``; conv kernels HWIO, depthwise ``[k, k, c]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models.arch import LayerNames
from jaxprune.models.conv import (
    channel_last,
    conv2d,
    depthwise_conv2d,
    max_pool2d,
    same_padding,
)

Activation = Literal["relu", "relu6"] | None
HEAD = "head"


@dataclass(frozen=True)
class Op:
    """``a = act(conv(h) + b)``, then ``* mask[group]``, then a max pooling ``pool`` =
    (window, stride, padding). ``padding``: an int (symmetric) or ``"same"`` (TensorFlow:
    output ``ceil(size / stride)``, the odd pixel of padding at the bottom/right)."""

    name: str
    width: int
    kernel: int = 1
    stride: int = 1
    padding: int | str = 0
    depthwise: bool = False
    act: Activation = "relu"
    group: str | None = None
    pool: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Block:
    """Ops in sequence; with ``skip``, ``out = act(last + shortcut(x))`` where ``shortcut`` is
    a conv op (e.g. torchvision's downsample) or, when None, the identity."""

    name: str
    ops: tuple[Op, ...]
    skip: bool = False
    shortcut: Op | None = None
    act: Activation = None


@dataclass(frozen=True)
class Group:
    """A prunable unit group as the generic code sees it (``kind``: its activation's rank)."""

    name: str
    kind: str
    width: int


@dataclass(frozen=True)
class ResidualArchitecture(LayerNames):
    """A residual network: blocks, the readout group (masks the pooled features), classes.
    ``readout_keep``: where the readout is the residual stream (no op carries its group), the
    stream channels a compacted network still pools (None: all)."""

    family: str
    input_shape: tuple[int, int, int]
    blocks: tuple[Block, ...]
    readout: str
    num_classes: int = 1000
    readout_keep: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        names = [op.name for _, _, op in flat_ops(self)]
        names += [b.shortcut.name for b in self.blocks if b.shortcut is not None]
        if len(set(names)) != len(names) or HEAD in names:
            raise ValueError(f"op names of {self.family} must be unique and not {HEAD!r}")
        group_plan(self)  # validates the groups
        geometry(self)  # validates the shapes

    @property
    def layers(self) -> tuple[Group, ...]:
        plan = group_plan(self)
        return tuple(Group(g, "dense" if g == self.readout else "conv", plan[g].width)
                     for g in plan)

    @property
    def readout_layer(self) -> str:
        return self.readout

    def with_widths(self, widths: dict[str, int]) -> ResidualArchitecture:
        """The same family with some groups' widths replaced (each op of the group)."""
        for name in widths:
            self.index(name)
        if self.readout in widths and self.readout not in {
                op.group for _, _, op in flat_ops(self)}:
            raise ValueError(f"the readout of {self.family} is the residual stream: its width "
                             "follows the blocks (masks.compact keeps a subset of it)")

        def resize(op: Op | None) -> Op | None:
            if op is None or op.group not in widths:
                return op
            return dataclasses.replace(op, width=int(widths[op.group]))

        blocks = tuple(dataclasses.replace(b, ops=tuple(resize(op) for op in b.ops),
                                           shortcut=resize(b.shortcut)) for b in self.blocks)
        return dataclasses.replace(self, blocks=blocks)


def is_residual(arch) -> bool:
    """Whether ``arch`` is a :class:`ResidualArchitecture` (else a chain)."""
    return isinstance(arch, ResidualArchitecture)


@cache
def flat_ops(arch: ResidualArchitecture) -> tuple[tuple[int, int, Op], ...]:
    """``(block, position in block, op)`` of every main-path op in forward order."""
    return tuple((b, i, op) for b, block in enumerate(arch.blocks)
                 for i, op in enumerate(block.ops))


@dataclass(frozen=True)
class GroupPlan:
    """Where a group lives: its ops (flat positions), the last one (whose activation the
    consumer reads) and the consumer (flat position; None for a readout without one)."""

    width: int
    ops: tuple[int, ...]
    last: int
    consumer: int | None


def _check_group(arch, name: str, ops: list[int], flat) -> int | None:
    """Raise unless group ``name`` can be removed structurally; its consumer's position."""
    last = ops[-1]
    if ops != list(range(ops[0], last + 1)):
        raise ValueError(f"group {name!r} of {arch.family}: its ops are not consecutive")
    for q in ops:
        b, i, op = flat[q]
        if op.act not in ("relu", "relu6") or op.pool is not None:
            raise ValueError(f"group {name!r}: op {op.name!r} needs a ReLU/ReLU6, no pooling")
        if i == len(arch.blocks[b].ops) - 1 and arch.blocks[b].skip:
            raise ValueError(f"group {name!r}: {op.name!r} feeds a skip connection (the "
                             "residual stream cannot be pruned structurally)")
        if op.depthwise and q == ops[0]:
            raise ValueError(f"group {name!r}: depthwise {op.name!r} reads another group")
        nxt = arch.blocks[b + 1] if b + 1 < len(arch.blocks) else None
        if q != last and i == len(arch.blocks[b].ops) - 1 and nxt is not None and nxt.skip:
            raise ValueError(f"group {name!r}: {op.name!r} feeds the skip connection of "
                             f"{nxt.name!r} (the residual stream cannot be pruned structurally)")
    if name == arch.readout:
        if last != len(flat) - 1:
            raise ValueError(f"readout group {name!r} must mask the last op")
        return None
    consumer = last + 1
    if consumer >= len(flat):
        raise ValueError(f"group {name!r} has no consumer")
    b, i, op = flat[consumer]
    if op.depthwise or (i == 0 and arch.blocks[b].skip):
        raise ValueError(f"group {name!r}: its channels are read by {op.name!r}"
                         f"{' and a skip connection' if i == 0 else ' per channel'}")
    return consumer


@cache
def group_plan(arch: ResidualArchitecture) -> dict[str, GroupPlan]:
    """The prunable unit groups in forward order (the readout last), validated."""
    flat = flat_ops(arch)
    positions: dict[str, list[int]] = {}
    for q, (_, _, op) in enumerate(flat):
        if op.group is not None:
            positions.setdefault(op.group, []).append(q)
    for block in arch.blocks:
        if block.shortcut is not None and block.shortcut.group is not None:
            raise ValueError(f"shortcut {block.shortcut.name!r} cannot carry a group")
    positions.pop(arch.readout, None)
    plan = {}
    for name, ops in positions.items():
        widths = {flat[q][2].width for q in ops}
        if len(widths) != 1:
            raise ValueError(f"group {name!r}: its ops have different widths {widths}")
        plan[name] = GroupPlan(widths.pop(), tuple(ops), ops[-1],
                               _check_group(arch, name, ops, flat))
    readout_ops = [q for q, (_, _, op) in enumerate(flat) if op.group == arch.readout]
    if readout_ops:
        _check_group(arch, arch.readout, readout_ops, flat)
    width = flat[-1][2].width if arch.readout_keep is None else len(arch.readout_keep)
    if readout_ops and arch.readout_keep is not None:
        raise ValueError(f"readout_keep is for a readout on the residual stream, "
                         f"not {arch.readout!r}")
    plan[arch.readout] = GroupPlan(width, tuple(readout_ops), len(flat) - 1, None)
    return plan


def _op_pads(op: Op, h: int, w: int):
    if op.padding == "same":
        return (same_padding(h, op.kernel, op.stride), same_padding(w, op.kernel, op.stride))
    if not isinstance(op.padding, int):
        raise ValueError(f"op {op.name!r}: padding must be an int or 'same', got {op.padding!r}")
    return ((op.padding, op.padding), (op.padding, op.padding))


def _op_out(op: Op, shape: tuple[int, int, int]):
    """(padding pairs, output shape before pooling, output shape after pooling)."""
    h, w, c = shape
    pads = _op_pads(op, h, w)
    if op.depthwise and op.width != c:
        raise ValueError(f"depthwise op {op.name!r} has width {op.width}, its input {c}")
    oh, ow = ((s + sum(p) - op.kernel) // op.stride + 1 for s, p in zip((h, w), pads,
                                                                          strict=True))
    out = (oh, ow, op.width)
    if op.pool is not None:
        k, s, p = op.pool
        out = ((oh + 2 * p - k) // s + 1, (ow + 2 * p - k) // s + 1, op.width)
    if min(out[:2]) < 1:
        raise ValueError(f"input is too small for op {op.name!r}")
    return pads, (oh, ow, op.width), out


@dataclass(frozen=True)
class OpGeometry:
    """Input shape (HWC), padding pairs, conv output shape, shape after pooling."""

    in_shape: tuple[int, int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    conv_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@cache
def geometry(arch: ResidualArchitecture) -> dict[str, OpGeometry]:
    """Shapes around every op (main path and shortcuts), by op name; checks the skips."""
    shape = tuple(arch.input_shape)
    out = {}
    for block in arch.blocks:
        block_in = shape
        for op in block.ops:
            pads, conv, after = _op_out(op, shape)
            out[op.name] = OpGeometry(shape, pads, conv, after)
            shape = after
        if block.skip:
            short = block_in
            if block.shortcut is not None:
                pads, _, short = _op_out(block.shortcut, block_in)
                out[block.shortcut.name] = OpGeometry(block_in, pads, short, short)
            if short != shape:
                raise ValueError(f"block {block.name!r}: skip shape {short} != {shape}")
    return out


# ----------------------------------------------------------------------------- forward pass


def activation(kind: Activation, z: jax.Array) -> jax.Array:
    """``relu``: max(z, 0); ``relu6``: min(max(z, 0), 6); None: z."""
    if kind == "relu":
        return jax.nn.relu(z)
    if kind == "relu6":
        return jnp.clip(z, 0.0, 6.0)
    return z


def op_preact(arch: ResidualArchitecture, params, op: Op, h: jax.Array) -> jax.Array:
    """``conv(h) + b`` of one op (dense or depthwise kernel, its padding pairs)."""
    p, pads = params[op.name], geometry(arch)[op.name].pads
    if op.depthwise:
        z = depthwise_conv2d(h, p["kernel"], op.stride, pads)
    else:
        z = conv2d(h, p["kernel"], op.stride, pads)
    return z + channel_last(p["bias"], z.ndim)


def _finish(arch, params, masks, q: int, y: jax.Array, block_in: jax.Array) -> jax.Array:
    """Output of flat op ``q`` from its pre-activation ``y``: its activation; for a block's
    last op the skip add and the block activation; the group mask; the pooling."""
    b, i, op = flat_ops(arch)[q]
    block = arch.blocks[b]
    a = activation(op.act, y)
    if i == len(block.ops) - 1:
        if block.skip:
            short = block.shortcut
            a = a + (block_in if short is None else
                     activation(short.act, op_preact(arch, params, short, block_in)))
        a = activation(block.act, a)
    if op.group is not None and op.group in masks:
        a = a * channel_last(masks[op.group], a.ndim)
    if op.pool is not None:
        a = max_pool2d(a, *op.pool)
    return a


@cache
def _last_ops(arch: ResidualArchitecture) -> dict[int, str]:
    """Flat position of each non-readout group's last op -> the group."""
    return {p.last: g for g, p in group_plan(arch).items() if g != arch.readout}


def group_state(kind: Activation, y: jax.Array) -> jax.Array:
    """``z`` with ``relu(z) = act(y)``: the search's "pre-activation" of a group
    (ReLU6: ``min(y, 6)``, since relu6(y) = relu(min(y, 6)))."""
    return jnp.minimum(y, 6.0) if kind == "relu6" else y


def walk(arch, params, masks, q0: int, y: jax.Array, block_in: jax.Array, *,
         stop: int | None = None, states: dict | None = None, acts: dict | None = None):
    """Run the main path from flat op ``q0`` (``y``: its pre-activation, ``block_in``: its
    block's input) to the end: ``(last output, block input)``; or, with ``stop``, until the
    pre-activation of op ``stop``: ``(that pre-activation, its block's input)``. Fills
    ``states`` (group -> :func:`group_state`) and ``acts`` (group -> masked activation)."""
    flat, last_ops = flat_ops(arch), _last_ops(arch)
    h = None
    for q in range(q0, len(flat)):
        _, i, op = flat[q]
        if q > q0:
            if i == 0:
                block_in = h
            y = op_preact(arch, params, op, h)
        if q == stop:
            return y, block_in
        if states is not None and q in last_ops:
            states[last_ops[q]] = group_state(op.act, y)
        h = _finish(arch, params, masks, q, y, block_in)
        if acts is not None and op.group is not None:
            acts[op.group] = h
    return h, block_in


def pooled(arch: ResidualArchitecture, masks, h: jax.Array) -> jax.Array:
    """Readout features ``[n, c]``: the global average of ``h [n, h, w, c]``, masked."""
    feats = jnp.mean(h, axis=(-3, -2))
    if arch.readout_keep is not None:
        feats = feats[..., np.asarray(arch.readout_keep)]
    mask = masks.get(arch.readout)
    return feats if mask is None else feats * channel_last(mask, feats.ndim)


def apply_residual(arch: ResidualArchitecture, params, masks, x: jax.Array):
    """``(logits [n, classes], {group: masked activation})``; the readout group's activation
    is the pooled features ``[n, c]``."""
    masks = masks or {}
    first = flat_ops(arch)[0][2]
    acts: dict[str, jax.Array] = {}
    h, _ = walk(arch, params, masks, 0, op_preact(arch, params, first, x), x, acts=acts)
    feats = acts[arch.readout] = pooled(arch, masks, h)
    head = params[HEAD]
    return feats @ head["kernel"] + channel_last(head["bias"], 2), acts


# ----------------------------------------------------------------------------- search maths


def preactivations(arch: ResidualArchitecture, params, masks, x: jax.Array, start: int = 0):
    """Per group (in order, from ``start``) the state ``z`` with ``relu(z)`` = the group's
    activation under ``masks`` before its own mask (see :func:`group_state`); the readout's is
    the pooled features. Computed from the input."""
    first = flat_ops(arch)[0][2]
    states: dict[str, jax.Array] = {}
    h, _ = walk(arch, params, masks, 0, op_preact(arch, params, first, x), x, states=states)
    states[arch.readout] = pooled(arch, masks, h)
    return [states[g] for g in arch.layer_names][start:]


def consumer_state(arch: ResidualArchitecture, params, masks, x: jax.Array, index: int):
    """``(y, block_in)``: pre-activation (bias included) of group ``index``'s consumer under
    ``masks``, linear in that group's mask, and the input of the consumer's block."""
    consumer = group_plan(arch)[arch.layer_names[index]].consumer
    first = flat_ops(arch)[0][2]
    return walk(arch, params, masks, 0, op_preact(arch, params, first, x), x, stop=consumer)


def readout_after(arch: ResidualArchitecture, params, masks, index: int, y: jax.Array,
                  block_in: jax.Array) -> jax.Array:
    """Readout features ``[n, d]`` from the pre-activation ``y`` of group ``index``'s consumer
    (``block_in``: the input of the consumer's block, for its skip connection)."""
    consumer = group_plan(arch)[arch.layer_names[index]].consumer
    h, _ = walk(arch, params, masks, consumer, y, block_in)
    return pooled(arch, masks, h)


def unit_contribution(arch: ResidualArchitecture, params, index: int, a: jax.Array,
                      unit: jax.Array) -> jax.Array:
    """``C_u``: the part of the consumer's pre-activation (bias excluded) due to unit ``u`` of
    group ``index`` alone, from the group's activation ``a``."""
    op = flat_ops(arch)[group_plan(arch)[arch.layer_names[index]].consumer][2]
    channel = jnp.take(a, unit, axis=-1)[..., None]
    kernel = jax.lax.dynamic_slice_in_dim(params[op.name]["kernel"], unit, 1, axis=2)
    pads = geometry(arch)[op.name].pads
    if op.kernel == 1 and op.stride == 1 and pads == ((0, 0), (0, 0)):
        return channel * kernel.reshape((1,) * (channel.ndim - 1) + (-1,))
    return conv2d(channel, kernel, op.stride, pads)



# ----------------------------------------------------------------------------- sizes, compaction


def _kept_io(arch: ResidualArchitecture, kept: dict[str, int]):
    """``(op, kept inputs, kept outputs)`` of every conv op and the head, in forward order."""
    rows, prev = [], arch.input_shape[-1]
    for block in arch.blocks:
        block_in = prev
        for op in block.ops:
            out = kept[op.group] if op.group is not None else op.width
            rows.append((op, out if op.depthwise else prev, out))
            prev = out
        if block.shortcut is not None:
            rows.append((block.shortcut, block_in, block.shortcut.width))
    rows.append((None, kept[arch.readout], arch.num_classes))
    return rows


def sizes(arch: ResidualArchitecture, kept: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Per op (and ``"head"``): ``(parameters, flops)`` with ``kept`` units per group; a
    multiply-add counts 2 flops; depthwise ops have ``k·k·c`` weights."""
    geo = geometry(arch)
    out = {}
    for op, k_in, k_out in _kept_io(arch, kept):
        if op is None:
            out[HEAD] = (k_in * k_out + k_out, 2 * k_in * k_out)
            continue
        taps = op.kernel * op.kernel * (1 if op.depthwise else k_in)
        positions = geo[op.name].conv_shape[0] * geo[op.name].conv_shape[1]
        out[op.name] = (taps * k_out + k_out, 2 * positions * taps * k_out)
    return out


def batch_norm_parameters(arch: ResidualArchitecture) -> int:
    """Parameters as PyTorch counts them before folding: one more per conv output channel
    (batch norm's scale and shift instead of one folded bias)."""
    return sum(op.width for op, _, _ in _kept_io(arch, arch.widths) if op is not None)


def compact_residual(arch: ResidualArchitecture, params, keep: dict[str, np.ndarray]):
    """:func:`jaxprune.masks.compact` for residual families: each group's ops keep their
    kept output channels, their consumers (and the classifier) the matching inputs."""
    small, prev = {}, None
    for op, _, _ in _kept_io(arch, {g: len(k) for g, k in keep.items()}):
        name = HEAD if op is None else op.name
        kernel, bias = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
        if op is None:
            kernel = kernel[keep[arch.readout]]
        else:
            out = keep.get(op.group) if op.group is not None else None
            if prev is not None and not op.depthwise and not _is_shortcut(arch, op):
                kernel = kernel[:, :, prev, :]
            if out is not None:
                kernel, bias = kernel[..., out], bias[out]
            if not _is_shortcut(arch, op):
                prev = out
        small[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    if arch.readout in {op.group for _, _, op in flat_ops(arch)}:
        return arch.with_widths({g: len(k) for g, k in keep.items()}), small
    # the readout is the residual stream: the blocks stay, the pooling keeps fewer channels
    stream = np.arange(arch.widths[arch.readout]) if arch.readout_keep is None else np.asarray(
        arch.readout_keep)
    small_arch = dataclasses.replace(
        arch.with_widths({g: len(k) for g, k in keep.items() if g != arch.readout}),
        readout_keep=tuple(int(i) for i in stream[keep[arch.readout]]))
    return small_arch, small


def _is_shortcut(arch: ResidualArchitecture, op: Op) -> bool:
    return any(b.shortcut is op for b in arch.blocks)


def init_residual(arch: ResidualArchitecture, key: jax.Array):
    """PyTorch-default initialisation: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` per op."""
    shapes = {}
    for op, k_in, k_out in _kept_io(arch, arch.widths):
        if op is None:
            shapes[HEAD] = (k_in, k_out)
        elif op.depthwise:
            shapes[op.name] = (op.kernel, op.kernel, k_out)
        else:
            shapes[op.name] = (op.kernel, op.kernel, k_in, k_out)
    params = {}
    for (name, shape), k in zip(shapes.items(), jax.random.split(key, len(shapes)),
                                strict=True):
        fan_in = int(np.prod(shape[:-1])) if len(shape) != 3 else shape[0] * shape[1]
        bound = 1.0 / np.sqrt(fan_in)
        k1, k2 = jax.random.split(k)
        params[name] = {
            "kernel": jax.random.uniform(k1, shape, jnp.float32, -bound, bound),
            "bias": jax.random.uniform(k2, shape[-1:], jnp.float32, -bound, bound),
        }
    return params


def candidate_bytes_residual(arch: ResidualArchitecture, index: int, n: int) -> float:
    """:func:`jaxprune.search.poz.candidate_bytes` for residual families: float32 outputs of
    the consumer and of every op after it (shortcuts included) on ``n`` stimuli, and the fit's
    d×d Gram matrix."""
    name = arch.layer_names[index]
    d = arch.widths[arch.readout]
    geo = geometry(arch)

    def size(op) -> int:
        return int(np.prod(geo[op.name].conv_shape))

    held = n * d
    if name != arch.readout:
        flat, consumer = flat_ops(arch), group_plan(arch)[name].consumer
        held = sum(size(op) for _, _, op in flat[consumer:]) * n
        held += n * sum(size(b.shortcut) for b in arch.blocks[flat[consumer][0]:]
                        if b.shortcut is not None)
    return 4.0 * (held + d * d)


def candidate_flops_residual(arch: ResidualArchitecture, index: int, n: int) -> float:
    """:func:`jaxprune.search.poz.candidate_flops` for residual families: the removed unit's
    share of its consumer, every op after the consumer (shortcuts included) and the fit."""
    name = arch.layer_names[index]
    d = arch.widths[arch.readout]
    cost = 4.0 * d * d
    if name != arch.readout:
        flops = {k: f for k, (_, f) in sizes(arch, arch.widths).items()}
        flat, consumer = flat_ops(arch), group_plan(arch)[name].consumer
        cost += flops[flat[consumer][2].name] / arch.widths[name]
        cost += sum(flops[op.name] for _, _, op in flat[consumer + 1:])
        cost += sum(flops[b.shortcut.name] for b in arch.blocks[flat[consumer][0]:]
                    if b.shortcut is not None)
    return n * cost
