"""The registered families, as functions returning an :class:`Architecture`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jaxprune.data.images import IMAGENET_MEAN, IMAGENET_STD
from jaxprune.models.arch import Architecture, Layer
from jaxprune.models.residual import Block, Op, ResidualArchitecture


def lenet5_cifar(
    widths: Sequence[int] = (6, 16, 120, 84),
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
) -> Architecture:
    """LeNet-5 for CIFAR: conv 3->6 5x5, pool 2; conv 6->16 5x5, pool 2; fc 400->120;
    fc 120->84; fc 84->10 (62,006 parameters at the default widths)."""
    c1, c2, f1, f2 = widths
    return Architecture(
        "lenet5_cifar",
        tuple(input_shape),
        (
            Layer("conv1", "conv", c1, kernel=5, pool=(2, 2)),
            Layer("conv2", "conv", c2, kernel=5, pool=(2, 2)),
            Layer("fc1", "dense", f1),
            Layer("fc2", "dense", f2),
        ),
        num_classes,
    )


def lenet5_mnist(
    widths: Sequence[int] = (64, 64, 256, 256),
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
) -> Architecture:
    """The wide LeNet used for MNIST: conv 1->64 3x3 pad 1; conv 64->64 3x3 pad 1, pool 2;
    fc 12544->256; fc 256->256; fc 256->10."""
    c1, c2, f1, f2 = widths
    return Architecture(
        "lenet5_mnist",
        tuple(input_shape),
        (
            Layer("conv1", "conv", c1, kernel=3, padding=1),
            Layer("conv2", "conv", c2, kernel=3, padding=1, pool=(2, 2)),
            Layer("fc1", "dense", f1),
            Layer("fc2", "dense", f2),
        ),
        num_classes,
    )


def mlp(
    widths: Sequence[int] = (512, 512),
    input_dim: int = 784,
    dropout: float = 0.5,
    num_classes: int = 10,
) -> Architecture:
    """Multilayer perceptron ``input -> widths... -> classes`` with ReLU and dropout after
    every hidden layer (default 784-512-512-10, dropout 0.5); depth = ``len(widths)``."""
    layers = tuple(
        Layer(f"fc{i + 1}", "dense", w, dropout=dropout if i else 0.0)
        for i, w in enumerate(widths)
    )
    return Architecture("mlp", (input_dim,), layers, num_classes, head_dropout=dropout)


VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
               512, 512, 512, "M")


def vgg16(
    widths: Sequence[int] | None = None,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
) -> Architecture:
    """VGG-16 in torchvision's layout: 13 conv 3x3 (pad 1) in 5 blocks with max-pooling,
    adaptive average pooling to 7x7, fc 25088->4096->4096->classes with dropout 0.5."""
    default = [c for c in VGG16_CONVS if c != "M"] + [4096, 4096]
    widths = list(widths) if widths is not None else default
    layers, i = [], 0
    for j, c in enumerate(VGG16_CONVS):
        if c == "M":
            continue
        pooled = j + 1 < len(VGG16_CONVS) and VGG16_CONVS[j + 1] == "M"
        last = i == 12
        layers.append(
            Layer(f"conv{i + 1}", "conv", widths[i], kernel=3, padding=1,
                  pool=(2, 2) if pooled else None, adaptive_pool=(7, 7) if last else None)
        )
        i += 1
    layers.append(Layer("fc1", "dense", widths[13]))
    layers.append(Layer("fc2", "dense", widths[14], dropout=0.5))
    return Architecture("vgg16", tuple(input_shape), tuple(layers), num_classes, head_dropout=0.5)


def alexnet(
    widths: Sequence[int] = (64, 192, 384, 256, 256, 4096, 4096),
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
) -> Architecture:
    """AlexNet in torchvision's layout: conv 11x11/4 (pad 2), pool 3/2; conv 5x5 (pad 2),
    pool 3/2; three conv 3x3 (pad 1), pool 3/2; adaptive average pooling to 6x6;
    dropout, fc 9216->4096; dropout, fc 4096->4096; fc 4096->classes."""
    c1, c2, c3, c4, c5, f1, f2 = widths
    return Architecture(
        "alexnet",
        tuple(input_shape),
        (
            Layer("conv1", "conv", c1, kernel=11, stride=4, padding=2, pool=(3, 2)),
            Layer("conv2", "conv", c2, kernel=5, padding=2, pool=(3, 2)),
            Layer("conv3", "conv", c3, kernel=3, padding=1),
            Layer("conv4", "conv", c4, kernel=3, padding=1),
            Layer("conv5", "conv", c5, kernel=3, padding=1, pool=(3, 2), adaptive_pool=(6, 6)),
            Layer("fc1", "dense", f1, dropout=0.5),
            Layer("fc2", "dense", f2, dropout=0.5),
        ),
        num_classes,
    )


# EfficientNet-Lite0 stages: (kernel, stride, expansion, output channels, repeats).
LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


def _mbconv(b: int, c_in: int, kernel: int, stride: int, expand: int, c_out: int,
            group: str) -> Block:
    """MBConv without squeeze-excitation: [expand 1x1, ReLU6] -> depthwise kxk/s, ReLU6 ->
    project 1x1 (no activation); skip where stride 1 and widths match. The expanded channels
    are one group (``group``; without expansion, the group of the block's input)."""
    ops = []
    if expand != 1:
        ops.append(Op(f"block{b}.expand", c_in * expand, act="relu6", group=group))
    ops.append(Op(f"block{b}.depthwise", c_in * expand, kernel, stride, "same",
                  depthwise=True, act="relu6", group=group))
    ops.append(Op(f"block{b}.project", c_out, act=None))
    return Block(f"block{b}", tuple(ops), skip=stride == 1 and c_in == c_out)


def efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
    stages: Sequence[tuple[int, int, int, int, int]] = LITE0_STAGES,
    stem: int = 32,
    head: int = 1280,
) -> ResidualArchitecture:
    """EfficientNet-Lite0: stem conv 3x3/2 (32, ReLU6), 16 MBConv blocks without
    squeeze-excitation (``stages``), head conv 1x1 (1280, ReLU6), global average pooling,
    fc 1280->classes; batch norm folded, TF "same" padding. Prunable groups: ``stem`` (also
    block 0's depthwise channels: block 0 has no expansion), ``block1..15`` (expanded
    channels), ``conv_head`` (the pooled readout)."""
    blocks = [Block("stem", (Op("stem", stem, 3, 2, "same", act="relu6", group="stem"),))]
    c_in, b = stem, 0
    for kernel, stride, expand, c_out, repeats in stages:
        for r in range(repeats):
            if expand == 1 and b:
                raise ValueError(f"block {b} has no expansion: its depthwise conv would read "
                                 "the residual stream (only block 0 may, from the stem)")
            group = f"block{b}" if expand != 1 else "stem"
            blocks.append(_mbconv(b, c_in, kernel, stride if r == 0 else 1, expand, c_out,
                                  group))
            c_in, b = c_out, b + 1
    blocks.append(Block("head", (Op("conv_head", head, act="relu6", group="conv_head"),)))
    return ResidualArchitecture("efficientnet_lite0", tuple(input_shape), tuple(blocks),
                                "conv_head", num_classes)


def _resnet_block(name: str, c_in: int, mid: int, stride: int, bottleneck: bool) -> Block:
    """torchvision's BasicBlock (3x3, 3x3) or Bottleneck (1x1, 3x3/s, 1x1 to 4·mid), ReLU
    after the add, a 1x1/s conv shortcut (``downsample``) where the shape changes."""
    if bottleneck:
        ops = (Op(f"{name}.conv1", mid, group=f"{name}.conv1"),
               Op(f"{name}.conv2", mid, 3, stride, 1, group=f"{name}.conv2"),
               Op(f"{name}.conv3", 4 * mid, act=None))
    else:
        ops = (Op(f"{name}.conv1", mid, 3, stride, 1, group=f"{name}.conv1"),
               Op(f"{name}.conv2", mid, 3, 1, 1, act=None))
    c_out = ops[-1].width
    short = None
    if stride != 1 or c_in != c_out:
        short = Op(f"{name}.downsample", c_out, 1, stride, act=None)
    return Block(name, ops, skip=True, shortcut=short, act="relu")


def resnet(depths: Sequence[int], bottleneck: bool, family: str,
           input_shape: tuple[int, int, int] = (224, 224, 3), num_classes: int = 1000,
           widths: Sequence[int] = (64, 128, 256, 512)) -> ResidualArchitecture:
    """torchvision ResNet: conv 7x7/2 (``widths[0]``) + ReLU + max pool 3/2, stages of blocks
    (``widths`` inner channels; stride 2 from stage 2), global average pooling, fc.
    Prunable groups: every block's inner channels and ``pool`` (the pooled readout)."""
    blocks = [Block("stem", (Op("conv1", widths[0], 7, 2, 3, pool=(3, 2, 1)),))]
    c_in = widths[0]
    for stage, (depth, mid) in enumerate(zip(depths, widths, strict=True)):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(_resnet_block(f"layer{stage + 1}.{i}", c_in, mid, stride, bottleneck))
            c_in = blocks[-1].ops[-1].width
    return ResidualArchitecture(family, tuple(input_shape), tuple(blocks), "pool", num_classes)


def resnet18(depths: Sequence[int] = (2, 2, 2, 2), **config) -> ResidualArchitecture:
    """ResNet-18 in torchvision's layout (basic blocks 2-2-2-2; 11,689,512 parameters with
    batch norm's scale and shift counted apart, as torchvision does)."""
    return resnet(depths, False, "resnet18", **config)


def resnet50(depths: Sequence[int] = (3, 4, 6, 3), **config) -> ResidualArchitecture:
    """ResNet-50 in torchvision's layout (bottleneck blocks 3-4-6-3; 25,557,032 parameters
    counted as torchvision does)."""
    return resnet(depths, True, "resnet50", **config)


REGISTRY: dict[str, Callable[..., Architecture | ResidualArchitecture]] = {
    "lenet5_cifar": lenet5_cifar,
    "lenet5_mnist": lenet5_mnist,
    "mlp": mlp,
    "vgg16": vgg16,
    "alexnet": alexnet,
    "efficientnet_lite0": efficientnet_lite0,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def architecture(name: str, **config) -> Architecture | ResidualArchitecture:
    """The architecture registered as ``name``, with keyword overrides (widths, input...)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown network {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**config)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a family's input: RGB, the shorter side resized (bilinear) to
    ``round(size·256/224)``, a centred ``size×size`` crop, then ``(pixel/255 − mean) / std``
    per channel. ``mean``/``std`` None: the statistics of the data the network was trained on
    (families trained in this library)."""

    size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    note: str = ""


PREPROCESSING: dict[str, Preprocessing] = {
    "efficientnet_lite0": Preprocessing(224, (127 / 255,) * 3, (128 / 255,) * 3,
                                        "(pixel - 127) / 128, as the TF-Lite models"),
    **{name: Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "torchvision ImageNet")
       for name in ("vgg16", "alexnet", "resnet18", "resnet50")},
    "lenet5_cifar": Preprocessing(32, None, None, "training data's mean/std"),
    "lenet5_mnist": Preprocessing(28, None, None, "grayscale; training data's mean/std"),
    "mlp": Preprocessing(28, None, None, "flattened; training data's mean/std"),
}


def preprocessing(model: str | Architecture | ResidualArchitecture) -> Preprocessing:
    """The input size and preprocessing of a registered network (by name or architecture; an
    architecture's own input size wins, e.g. a reduced one)."""
    name = model if isinstance(model, str) else model.family
    if name not in PREPROCESSING:
        raise ValueError(f"unknown network {name!r}; available: {', '.join(sorted(REGISTRY))}")
    prep = PREPROCESSING[name]
    if not isinstance(model, str) and len(model.input_shape) == 3:
        prep = dataclasses.replace(prep, size=int(model.input_shape[0]))
    return prep
