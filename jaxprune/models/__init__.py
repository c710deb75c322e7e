"""Networks: architectures as data, a pure forward pass, Flax NNX modules, a registry.

**The seed axis.** Many independently initialised networks of one architecture are stacked
on a leading axis ``S`` of every parameter leaf (:func:`init_stack`; :func:`seed_slice` takes
one out, :func:`~jaxprune.models.network.seed_count` counts them); their unit masks are
shared ``{layer: [width]}`` or per seed ``{layer: [S, width]}``. Every public search takes one
network by default and stacked seeds with ``stacked=True``, returning one result per seed
(:func:`~jaxprune.search.poz_search`, :func:`~jaxprune.search.fraction_curve`,
:func:`~jaxprune.search.cka_prune` and the baselines); training always works on a stack
(``TrainConfig.seeds``), given one network to copy or a stack to continue.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxprune.models.arch import Architecture, Layer, LayerGeometry, layer_geometry
from jaxprune.models.network import (
    HEAD,
    Network,
    Params,
    apply,
    forward_from,
    init_params,
    init_stack,
    linear,
    pool,
    seed_slice,
    transition,
)
from jaxprune.models.residual import Block, Op, ResidualArchitecture, is_residual
from jaxprune.models.zoo import PREPROCESSING, REGISTRY, Preprocessing, architecture, preprocessing


def available() -> list[str]:
    """Names of the registered networks."""
    return sorted(REGISTRY)


def get(name: str, *, seed: int = 0, **config) -> Network:
    """A freshly initialised :class:`Network` of the registered family ``name``.

    ``config`` overrides the family's defaults (e.g. ``widths``, ``input_shape``); an unknown
    name lists the available networks.
    """
    arch = architecture(name, **config)
    return Network(arch, params=init_params(arch, jax.random.key(seed)))


def nnx_split(model: Network):
    """``nnx.split(model, nnx.Param)``: the graph definition and the parameter state."""
    return nnx.split(model, nnx.Param)


def functional(model: Network):
    """``(apply_fn, params)`` with ``apply_fn(params, masks, x, **kw) = apply(model.arch, ...)``."""
    arch = model.arch

    def apply_fn(params, masks, x, **kwargs):
        return apply(arch, params, masks, x, **kwargs)

    return apply_fn, model.param_dict()


__all__ = [
    "HEAD",
    "REGISTRY",
    "Architecture",
    "Block",
    "Op",
    "PREPROCESSING",
    "Preprocessing",
    "ResidualArchitecture",
    "Layer",
    "LayerGeometry",
    "Network",
    "Params",
    "apply",
    "architecture",
    "available",
    "forward_from",
    "functional",
    "get",
    "init_params",
    "init_stack",
    "is_residual",
    "layer_geometry",
    "linear",
    "nnx_split",
    "pool",
    "preprocessing",
    "seed_slice",
    "transition",
]
