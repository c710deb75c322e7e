"""Feature visualisation (method 7): activation maximisation of many units in one program.

- :mod:`.image`: Fourier parameterisation, colour decorrelation, valid pixels;
- :mod:`.transforms`: padding, jitter, scale, rotation with explicit PRNG keys;
- :mod:`.objectives`: channel, dense unit, direction, diversity; ``+``, ``-``, ``*``;
- :mod:`.engine`: the vmapped, scanned, chunked optimisation (:func:`render_units`);
- :mod:`.units`: layer names, unit lists (``lowest-poz:8``), kept/pruned status;
- :mod:`.job`: the ``jaxprune visualize`` job (grid PNG, ``.npy``, top-k dataset images).
"""

from jaxprune.featurevis.engine import (
    Model,
    RenderConfig,
    Rendered,
    real_values,
    render,
    render_sequential,
    render_units,
)
from jaxprune.featurevis.image import pixels_to_spectrum, spectrum_to_raw, to_pixels
from jaxprune.featurevis.objectives import Objective, channel, dense_unit, direction, diversity
from jaxprune.featurevis.transforms import Transforms, affine_view, random_views
from jaxprune.featurevis.units import (
    LOGITS,
    load_search_masks,
    parse_units,
    resolve_layer,
    select_units,
    valid_layers,
)

__all__ = [
    "LOGITS",
    "Model",
    "Objective",
    "RenderConfig",
    "Rendered",
    "Transforms",
    "affine_view",
    "channel",
    "dense_unit",
    "direction",
    "diversity",
    "load_search_masks",
    "parse_units",
    "pixels_to_spectrum",
    "random_views",
    "real_values",
    "render",
    "render_sequential",
    "render_units",
    "resolve_layer",
    "select_units",
    "spectrum_to_raw",
    "to_pixels",
    "valid_layers",
]
