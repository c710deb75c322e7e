"""Activation maximisation of many units in one program.

Each unit's images are optimised by Adam (optax) on Fourier-parameterised, colour-decorrelated
pixels (:mod:`.image`) seen through random views (:mod:`.transforms`); the whole optimisation
of one unit is a ``lax.scan`` over steps, and the units are one ``jax.lax.map`` of ``vmap``
over chunks of ``batch`` units, all inside one ``jit`` — so memory is bounded by the chunk and
a unit's result does not depend on which other units share its program (its PRNG key is
``fold_in(key(seed), unit id)``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.featurevis.image import init_spectrum, to_pixels
from jaxprune.featurevis.objectives import Objective, channel, diversity
from jaxprune.featurevis.transforms import VIEW_DRAWS, Transforms, views
from jaxprune.featurevis.units import PRE, activations, has_preactivation, pixel_input
from jaxprune.models import is_residual


@dataclass(frozen=True)
class RenderConfig:
    """Options of an optimisation. ``size``: side of the optimised images (default: the
    network's input side; residual families accept any even size, chains only their own).
    ``images_per_unit`` images per unit, optimised together; ``diversity`` > 0 adds that
    weight times :func:`~.objectives.diversity` of the objective's first layer. ``batch``:
    units per vectorised chunk (memory grows with it). ``preactivation``: :func:`render_units`
    maximises the unit's pre-activation (before its ReLU), so that a unit silent on the
    starting image has a gradient; its activation is what is measured either way."""

    steps: int = 256
    learning_rate: float = 0.05
    size: int | None = None
    images_per_unit: int = 1
    batch: int = 8
    seed: int = 0
    decay_power: float = 1.0
    decorrelate: bool = True
    init_sd: float = 0.01
    diversity: float = 0.0
    preactivation: bool = True
    transforms: Transforms = field(default_factory=Transforms)


@dataclass(frozen=True)
class Model:
    """A network as feature visualisation sees it: architecture, params and the pixel
    normalisation of its input (``mean``/``std`` per channel; None: pixels as they are)."""

    arch: Any
    params: Any
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def image_shape(self, size: int | None) -> tuple[int, int, int]:
        """``(size, size, channels)`` of the optimised images, checked against the network."""
        shape = tuple(self.arch.input_shape)
        if len(shape) == 1:  # a vector network reads a flattened square grey image
            side = int(round(np.sqrt(shape[0])))
            if side * side != shape[0]:
                raise ValueError(f"{self.arch.family} reads {shape[0]} inputs, not a square image")
            shape = (side, side, 1)
        side = size or shape[0]
        if not is_residual(self.arch) and side != shape[0]:
            raise ValueError(f"{self.arch.family} takes {shape[0]}×{shape[1]} images only; "
                             f"got size {side}")
        if side % 2 or side < 4:
            raise ValueError(f"image size must be even and at least 4, got {side}")
        return side, side, shape[2]


@dataclass
class Rendered:
    """Results of :func:`render`: ``pixels [U, k, s, s, c]`` in (0, 1), the objective's sum
    over a unit's images at every step ``trace [U, steps]`` (on the random views) and its
    per-image value on the final images ``final [U, k]`` (no transform)."""

    pixels: np.ndarray
    trace: np.ndarray
    final: np.ndarray
    unit_ids: np.ndarray


@dataclass(frozen=True)
class UnitObjective:
    """``objective(layer, unit)`` as a hashable callable of the unit (compiled programs are
    cached by it)."""

    objective: Callable[[str, Any], Objective]
    layer: str

    def __call__(self, unit: Any) -> Objective:
        return self.objective(self.layer, unit)


@functools.lru_cache(maxsize=16)
def _program(arch, mean, std, objective_of: Callable[[Any], Objective],
             measure_of: Callable[[Any], Objective], config: RenderConfig,
             shape: tuple[int, int, int]):
    import optax

    tx = optax.adam(config.learning_rate)
    to_input = pixel_input(arch, mean, std)
    k = config.images_per_unit

    def objective(target) -> Objective:
        obj = objective_of(target)
        if config.diversity > 0:
            obj = obj + config.diversity * diversity(sorted(obj.layers)[0])
        return obj

    def pixels(spec):
        return to_pixels(spec, config.decay_power, config.decorrelate)

    def one(params, target, key):
        obj = objective(target)
        k_init, k_steps = jax.random.split(key)
        spec0 = init_spectrum(k_init, (k, *shape), config.init_sd)

        draws = jax.random.uniform(k_steps, (config.steps, k, VIEW_DRAWS), jnp.float32)

        def loss(spec, u):
            seen = views(u, pixels(spec), config.transforms, shape[0])
            return -jnp.sum(obj(activations(arch, params, to_input(seen), obj.layers)))

        def step(carry, u):
            spec, opt = carry
            value, grad = jax.value_and_grad(loss)(spec, u)
            with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes float and int32
                updates, opt = tx.update(grad, opt, spec)
            return (optax.apply_updates(spec, updates), opt), -value

        (spec, _), trace = jax.lax.scan(step, (spec0, tx.init(spec0)), draws)
        final = pixels(spec)
        measure = measure_of(target)  # the unit's value, without the diversity term
        return final, trace, measure(activations(arch, params, to_input(final), measure.layers))

    def many(params, targets, keys):
        return jax.lax.map(lambda tk: one(params, *tk), (targets, keys), batch_size=config.batch)

    return jax.jit(many)


def render(model: Model, objective_of: Callable[[Any], Objective], targets: Any,
           unit_ids, config: RenderConfig | None = None,
           measure_of: Callable[[Any], Objective] | None = None) -> Rendered:
    """Maximise ``objective_of(target)`` for every target (a pytree with a leading unit axis,
    e.g. unit indices or direction vectors) in one jit-compiled program; ``unit_ids [U]``
    (ints) seed each unit's PRNG key; ``measure_of(target)`` (default: the objective) gives
    ``Rendered.final`` on the final images."""
    config = config or RenderConfig()
    if config.steps < 1 or config.batch < 1 or config.images_per_unit < 1:
        raise ValueError("steps, batch and images_per_unit must be at least 1")
    shape = model.image_shape(config.size)
    ids = np.asarray(unit_ids, np.int32).reshape(-1)
    base = jax.random.key(config.seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids))
    program = _program(model.arch, model.mean, model.std, objective_of,
                       measure_of or objective_of, config, shape)
    pix, trace, final = program(model.params, targets, keys)
    return Rendered(np.asarray(pix), np.asarray(trace), np.asarray(final), ids)


def render_units(model: Model, layer: str, units, config: RenderConfig | None = None,
                 objective: Callable[[str, Any], Objective] = channel) -> Rendered:
    """:func:`render` of ``objective(layer, unit)`` (default: the channel mean) for every unit
    index in ``units``, each seeded by its index; with ``config.preactivation`` (default) the
    objective reads the layer's pre-activation, and ``final`` is measured on its activation."""
    config = config or RenderConfig()
    units = np.asarray(units, np.int32).reshape(-1)
    measure = UnitObjective(objective, layer)
    target = measure
    if config.preactivation and has_preactivation(model.arch, layer):
        target = UnitObjective(objective, layer + PRE)
    return render(model, target, jnp.asarray(units), units, config, measure)


def render_sequential(model: Model, layer: str, units, config: RenderConfig | None = None
                      ) -> Rendered:
    """The one-unit-at-a-time twin of :func:`render_units` (one call per unit, the program
    compiled once): the same images for the same units and seed."""
    import dataclasses

    config = dataclasses.replace(config or RenderConfig(), batch=1)
    parts = [render_units(model, layer, [u], config) for u in np.asarray(units).reshape(-1)]
    return Rendered(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                      ("pixels", "trace", "final", "unit_ids")))


def real_values(model: Model, objective_of: Callable[[Any], Objective], targets: Any,
                x: np.ndarray, size: int | None = None, chunk: int = 32) -> np.ndarray:
    """Per unit and real image, the objective's value ``[U, n]`` on network inputs ``x`` (as
    preprocessed for the network), resized to ``size × size`` when given (residual families)."""
    probe = objective_of(jax.tree.map(lambda t: t[0], targets))
    layers = probe.layers

    @jax.jit
    def values(params, xs):
        if size is not None and xs.shape[1] != size:
            xs = jax.image.resize(xs, (xs.shape[0], size, size, xs.shape[3]), "linear")
        acts = activations(model.arch, params, xs, layers)
        return jax.vmap(lambda t: objective_of(t)(acts))(targets)

    parts = [np.asarray(values(model.params, jnp.asarray(x[i:i + chunk], jnp.float32)))
             for i in range(0, len(x), chunk)]
    return np.concatenate(parts, axis=1)
