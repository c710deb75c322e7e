"""The registered families, as functions returning an :class:`Architecture`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxprune.models.arch import Architecture, Layer


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


REGISTRY: dict[str, Callable[..., Architecture]] = {
    "lenet5_cifar": lenet5_cifar,
    "lenet5_mnist": lenet5_mnist,
    "mlp": mlp,
    "vgg16": vgg16,
    "alexnet": alexnet,
}


def architecture(name: str, **config) -> Architecture:
    """The architecture registered as ``name``, with keyword overrides (widths, input...)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown network {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**config)
