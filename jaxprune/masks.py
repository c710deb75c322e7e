"""Unit masks as data: validation, counts, cost of a masked network, overlap, compaction.

A unit mask is ``{layer: float32[width]}`` with entries in {0, 1}; a layer absent from the
dict is unmasked. Removing a unit removes its incoming and outgoing connections.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models import HEAD, Architecture, Params, layer_geometry, residual

Masks = Mapping[str, jax.Array]


def full_masks(arch: Architecture, seeds: int | None = None) -> dict[str, jax.Array]:
    """Masks that keep every unit: ``{layer: ones(width)}``, or ``ones(seeds, width)`` for a
    stack of ``seeds`` networks. The one place such masks are built."""
    lead = () if seeds is None else (seeds,)
    return {layer.name: jnp.ones((*lead, layer.width), jnp.float32) for layer in arch.layers}


def validate_masks(arch: Architecture, masks: Masks, *, stacked: bool = False) -> None:
    """Raise ``ValueError`` naming the layer for an unknown layer, a wrong shape or a
    non-binary entry. ``stacked`` allows leading batch axes (e.g. seeds or candidates)."""
    widths = arch.widths
    for name, mask in masks.items():
        if name not in widths:
            raise ValueError(
                f"mask for unknown layer {name!r}; {arch.family} has layers {list(widths)}"
            )
        shape = tuple(np.shape(mask))
        ok = shape[-1:] == (widths[name],) and (stacked or len(shape) == 1)
        if not ok:
            expected = f"(..., {widths[name]})" if stacked else f"({widths[name]},)"
            raise ValueError(
                f"mask of layer {name!r} has shape {shape}; expected {expected}"
            )
        if isinstance(mask, jax.core.Tracer):
            continue
        values = np.asarray(mask)
        bad = ~((values == 0) | (values == 1))
        if bad.any():
            raise ValueError(
                f"mask of layer {name!r} (shape {shape}) is not binary: "
                f"{int(bad.sum())} entries outside {{0, 1}}, e.g. {values[bad].ravel()[0]!r}"
            )


def kept_counts(arch: Architecture, masks: Masks | None = None) -> dict[str, int]:
    """Units kept per layer (the full width for layers without a mask)."""
    masks = masks or {}
    validate_masks(arch, masks)
    return {
        layer.name: int(np.sum(np.asarray(masks[layer.name])))
        if layer.name in masks else layer.width
        for layer in arch.layers
    }


def _fan_ins(arch: Architecture, kept: dict[str, int]):
    """(name, kept inputs, kept outputs, kernel positions, output positions) per linear map."""
    geometries, head = layer_geometry(arch)
    prev_kept = arch.input_shape[-1] if len(arch.input_shape) == 3 else arch.input_shape[0]
    rows = []
    for layer, geo in zip(arch.layers, geometries, strict=True):
        if layer.kind == "conv":
            taps, positions = layer.kernel**2, geo.out_shape[0] * geo.out_shape[1]
        else:
            taps, positions = geo.in_spatial, 1
        rows.append((layer.name, prev_kept, kept[layer.name], taps, positions))
        prev_kept = kept[layer.name]
    rows.append((HEAD, prev_kept, arch.num_classes, head.in_spatial, 1))
    return rows


def param_count(arch: Architecture, masks: Masks | None = None) -> int:
    """Parameters still connected: per linear map ``taps * kept_in * kept_out + kept_out``."""
    if residual.is_residual(arch):
        return sum(p for p, _ in residual.sizes(arch, kept_counts(arch, masks)).values())
    rows = _fan_ins(arch, kept_counts(arch, masks))
    return sum(taps * k_in * k_out + k_out for _, k_in, k_out, taps, _ in rows)


def layer_flops(arch: Architecture, masks: Masks | None = None) -> dict[str, int]:
    """Per linear map (each layer and ``"head"``), floating-point operations for one input,
    a multiply-add counted as 2: ``2 * positions * taps * kept_in * kept_out``."""
    if residual.is_residual(arch):
        return {k: f for k, (_, f) in residual.sizes(arch, kept_counts(arch, masks)).items()}
    rows = _fan_ins(arch, kept_counts(arch, masks))
    return {name: 2 * pos * taps * k_in * k_out for name, k_in, k_out, taps, pos in rows}


def flops(arch: Architecture, masks: Masks | None = None) -> int:
    """Floating-point operations of one forward pass of one input: the sum of
    :func:`layer_flops` (biases, ReLU, pooling not counted)."""
    return sum(layer_flops(arch, masks).values())


def compression_rate(arch: Architecture, masks: Masks) -> float:
    """Parameters of the unpruned network / parameters of the pruned one (>= 1)."""
    return param_count(arch) / param_count(arch, masks)


def jaccard(a: Masks, b: Masks, *, of: str = "kept") -> dict[str, float]:
    """Per-layer Jaccard overlap |A ∩ B| / |A ∪ B| of the kept (or ``of="removed"``) units of
    two masks over the layers both name; 1.0 when both sets are empty."""
    if of not in ("kept", "removed"):
        raise ValueError(f"of must be 'kept' or 'removed', got {of!r}")
    out = {}
    for name in a.keys() & b.keys():
        sa, sb = np.asarray(a[name]) > 0.5, np.asarray(b[name]) > 0.5
        if sa.shape != sb.shape:
            raise ValueError(f"layer {name!r}: mask shapes differ, {sa.shape} vs {sb.shape}")
        if of == "removed":
            sa, sb = ~sa, ~sb
        union = np.sum(sa | sb)
        out[name] = 1.0 if union == 0 else float(np.sum(sa & sb) / union)
    return dict(sorted(out.items(), key=lambda kv: list(a).index(kv[0])))


def compact(
    arch: Architecture, params: Params, masks: Masks
) -> tuple[Architecture, Params]:
    """Slice a unit-masked network into a smaller dense network of the same family.

    Every removed unit disappears with its incoming weights and bias and its outgoing weights;
    the result's logits equal the masked network's and its activations equal the masked
    activations at the kept units. Every layer must keep at least one unit.
    """
    counts = kept_counts(arch, masks)
    empty = [name for name, k in counts.items() if k == 0]
    if empty:
        raise ValueError(f"cannot compact: layers {empty} keep no unit")
    keep = {
        layer.name: np.flatnonzero(np.asarray(masks[layer.name]) > 0.5)
        if layer.name in masks else np.arange(layer.width)
        for layer in arch.layers
    }
    if residual.is_residual(arch):
        return residual.compact_residual(arch, params, keep)
    geometries, head = layer_geometry(arch)
    small = {}
    prev_idx = None
    for layer, geo in zip([*arch.layers, None], [*geometries, head], strict=True):
        name = HEAD if layer is None else layer.name
        kernel, bias = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
        if layer is not None:
            kernel, bias = kernel[..., keep[name]], bias[keep[name]]
        if prev_idx is not None:
            if kernel.ndim == 4:
                kernel = kernel[:, :, prev_idx, :]
            else:
                spatial = geo.in_spatial
                kernel = kernel.reshape(spatial, -1, kernel.shape[-1])[:, prev_idx, :]
                kernel = kernel.reshape(-1, kernel.shape[-1])
        small[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
        prev_idx = None if layer is None else keep[name]
    return arch.with_widths(counts), small


def kept_entries(arch: Architecture, masks: Masks, params_shape: Params) -> Params:
    """A params-shaped float32 tree: 1 at every weight and bias that :func:`compact` keeps,
    0 at those it removes with the units of ``masks`` (their incoming and outgoing weights).

    Found by compacting a tree of entry numbers, so it agrees with :func:`compact` for every
    family by construction. ``params_shape``: the params (or their shapes) of one network."""
    leaves, treedef = jax.tree.flatten(params_shape)
    sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
    offsets = np.cumsum([0, *sizes])
    numbers = jax.tree.unflatten(treedef, [
        np.arange(lo, lo + size, dtype=np.int64).reshape(leaf.shape)
        for lo, size, leaf in zip(offsets[:-1], sizes, leaves, strict=True)])
    _, kept_numbers = compact(arch, numbers, masks)
    kept = np.zeros(int(offsets[-1]), np.float32)
    for leaf in jax.tree.leaves(kept_numbers):
        kept[np.asarray(leaf).ravel()] = 1.0
    return jax.tree.unflatten(treedef, [
        kept[lo:lo + size].reshape(leaf.shape)
        for lo, size, leaf in zip(offsets[:-1], sizes, leaves, strict=True)])
