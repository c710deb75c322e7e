"""Import of torchvision-layout state dicts (VGG-16, AlexNet) into jaxprune params.

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
    if arch.family not in TORCHVISION_PREFIXES:
        raise ValueError(
            f"no torchvision layout for {arch.family!r}; known: {sorted(TORCHVISION_PREFIXES)}"
        )
    expected = {}
    for name, (prefix, w_shape, b_shape) in _torch_shapes(arch).items():
        expected[f"{prefix}.weight"] = (name, w_shape)
        expected[f"{prefix}.bias"] = (name, b_shape)
    problems = [f"missing tensor {k} {shape}" for k, (_, shape) in expected.items()
                if k not in state]
    problems += [f"unexpected tensor {k} {tuple(np.shape(v))}" for k, v in state.items()
                 if k not in expected]
    problems += [
        f"tensor {k} has shape {tuple(np.shape(state[k]))}, expected {shape}"
        for k, (_, shape) in expected.items()
        if k in state and tuple(np.shape(state[k])) != shape
    ]
    if problems:
        raise ValueError(f"cannot load {arch.family} weights:\n  " + "\n  ".join(problems))

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
