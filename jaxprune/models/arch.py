"""Architectures as plain data: a network is a sequence of prunable layers and a head.

Every prunable layer is ``linear -> ReLU -> unit mask``; what happens between two layers
(max-pooling, adaptive average pooling, flattening, dropout) is declared on the layers, so
one generic forward pass (``jaxprune.models.network``) serves every family, and a pruned
network is the same family with smaller widths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

LayerKind = Literal["conv", "dense"]


@dataclass(frozen=True)
class Layer:
    """One prunable layer: ``a = relu(linear(h)) * mask``.

    ``kernel``/``stride``/``padding`` apply to conv layers. ``pool`` = (window, stride) is a
    max-pooling applied to this layer's masked output; ``adaptive_pool`` = (h, w) an adaptive
    average pooling after it (torchvision's ``AdaptiveAvgPool2d``). ``dropout`` is the rate of
    dropout applied to this layer's *input* during training.
    """

    name: str
    kind: LayerKind
    width: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: tuple[int, int] | None = None
    adaptive_pool: tuple[int, int] | None = None
    dropout: float = 0.0


class LayerNames:
    """Look-ups over ``self.layers`` (items with ``name`` and ``width``) that every family
    shares: chains' layers, residual families' unit groups."""

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def widths(self) -> dict[str, int]:
        return {layer.name: layer.width for layer in self.layers}

    def index(self, name: str) -> int:
        """Position of a layer by name; an unknown name lists the layers there are."""
        try:
            return self.layer_names.index(name)
        except ValueError:
            raise ValueError(
                f"{self.family} has no layer {name!r}; its layers are {list(self.layer_names)}"
            ) from None


@dataclass(frozen=True)
class Architecture(LayerNames):
    """A network family member: input shape (HWC for images, (d,) for vectors), layers, head."""

    family: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    num_classes: int = 10
    head_dropout: float = 0.0
    readout: str | None = None  # defaults to the last prunable layer (the penultimate)

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate layer names in {self.family}: {names}")
        if self.readout is not None and self.readout not in names:
            raise ValueError(f"readout {self.readout!r} is not a layer of {self.family}: {names}")
        seen_dense = False
        for layer in self.layers:
            if layer.width < 1:
                raise ValueError(f"layer {layer.name!r} of {self.family} has width {layer.width}")
            if layer.kind == "conv" and seen_dense:
                raise ValueError(f"conv layer {layer.name!r} after a dense layer")
            seen_dense |= layer.kind == "dense"

    @property
    def readout_layer(self) -> str:
        return self.readout or self.layers[-1].name

    def with_widths(self, widths: dict[str, int]) -> Architecture:
        """The same family with some layers' widths replaced."""
        for name in widths:
            self.index(name)
        layers = tuple(
            dataclasses.replace(layer, width=int(widths.get(layer.name, layer.width)))
            for layer in self.layers
        )
        return dataclasses.replace(self, layers=layers)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class LayerGeometry:
    """Shapes around one layer: ``in_shape`` of its linear map, ``out_shape`` of its activation
    (before its own pooling), and ``in_spatial``: the number of spatial positions per input
    channel after flattening (1 unless a dense layer follows a conv layer)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_spatial: int


def layer_geometry(arch: Architecture) -> tuple[list[LayerGeometry], LayerGeometry]:
    """Per-layer shapes of ``arch`` and those of its head (computed, not traced)."""
    shape: tuple[int, ...] = tuple(arch.input_shape)
    geometries = []
    prev: Layer | None = None
    for layer in [*arch.layers, None]:
        if prev is not None:
            if prev.kind == "conv":
                h, w, c = shape
                if prev.pool is not None:
                    h, w = (conv_out(s, prev.pool[0], prev.pool[1], 0) for s in (h, w))
                if prev.adaptive_pool is not None:
                    h, w = prev.adaptive_pool
                shape = (h, w, c)
        kind = layer.kind if layer is not None else "dense"
        in_spatial = 1
        if kind == "dense" and len(shape) == 3:
            in_spatial = shape[0] * shape[1]
            shape = (shape[0] * shape[1] * shape[2],)
        if layer is None:
            head = LayerGeometry(shape, (arch.num_classes,), in_spatial)
            break
        if layer.kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"conv layer {layer.name!r} needs an HWC input, got {shape}")
            h, w, _ = shape
            out = (
                conv_out(h, layer.kernel, layer.stride, layer.padding),
                conv_out(w, layer.kernel, layer.stride, layer.padding),
                layer.width,
            )
            if min(out[:2]) < 1:
                raise ValueError(f"input {arch.input_shape} is too small for layer {layer.name!r}")
        else:
            out = (layer.width,)
        geometries.append(LayerGeometry(shape, out, in_spatial))
        shape, prev = out, layer
    return geometries, head
