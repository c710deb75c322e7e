"""The ``jaxprune visualize`` job: check every input, pick the units, optimise their images in
one program, and write the grid PNG, the raw images (``.npy``) and a JSON-able summary."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxprune.featurevis import units as U
from jaxprune.featurevis.engine import Model, RenderConfig, real_values, render_units
from jaxprune.featurevis.objectives import channel


@dataclass(frozen=True)
class VisualizeJob:
    """What ``jaxprune visualize`` was asked for (see its ``--help``)."""

    model: str
    layer: str
    units: str
    out: str
    pretrained: bool = False
    weights: str | None = None
    images: str | None = None
    search: str | None = None
    search_direction: str | None = None
    top_k: int = 4
    render: RenderConfig = field(default_factory=RenderConfig)


@dataclass
class Plan:
    """A checked job: the architecture, resolved layer, unit items, search mask."""

    job: VisualizeJob
    arch: Any
    layer: str
    width: int
    items: list
    kept: np.ndarray | None
    search_info: dict | None


def plan(job: VisualizeJob) -> Plan:
    """Every check that needs no weights or images: network and layer names, unit syntax and
    range, what the selections need, the search file, the output path. ``ValueError`` /
    ``OSError`` naming the value and what to do."""
    from jaxprune import models
    from jaxprune.outputs import check_writable

    arch = models.architecture(job.model)  # an unknown name lists the registered ones
    layer = U.resolve_layer(arch, job.layer)
    width = U.layer_width(arch, layer)
    items = U.parse_units(job.units)
    U.check_indices(items, width, layer)
    need = U.needs(items)
    if "poz" in need and layer == U.LOGITS:
        raise ValueError("PoZ selections need a post-ReLU layer; the logits have no PoZ: "
                         "list unit indices instead")
    if job.images is None and "poz" in need:
        raise ValueError(f"--units {job.units} ranks units by PoZ on images: give --images DIR")
    if job.images is not None and not Path(job.images).exists():
        raise ValueError(f"--images {job.images}: no such folder")
    if "search" in need and job.search is None:
        raise ValueError(f"--units {job.units} selects kept/pruned units: give --search FILE")
    kept, info = None, None
    if job.search is not None:
        if layer == U.LOGITS:
            raise ValueError("--search gives kept/pruned status of prunable layers; the logits "
                             "are not one (choose a prunable layer or leave --search out)")
        masks, info = U.load_search_masks(job.search, job.search_direction)
        kept = U.search_status(masks, layer, width, job.search)
    if job.weights is None and not job.pretrained:
        raise ValueError(f"--model {job.model} needs --pretrained or --weights PATH")
    check_writable(job.out, "--out")
    models.preprocessing(arch)
    Model(arch, None).image_shape(job.render.size)
    return Plan(job, arch, layer, width, items, kept, info)


def load_inputs(p: Plan, progress: bool = True):
    """The network's params, its pixel normalisation and the images (dataset or None)."""
    from jaxprune import models, weights

    job = p.job
    try:
        path = job.weights or weights.pretrained_path(job.model)
    except ImportError as e:
        raise ValueError(str(e)) from None
    params = weights.load_torchvision(p.arch, path)
    prep = models.preprocessing(p.arch)
    data = None
    if job.images is not None:
        from jaxprune.data import load_image_folder

        data = load_image_folder(job.images, model=p.arch, progress=progress)
    return Model(p.arch, params, prep.mean, prep.std), data


def visualize(job: VisualizeJob, progress: bool = True) -> dict[str, Any]:
    """Run a job: returns the summary (also what ``--json`` writes); writes ``job.out`` (PNG)
    and ``job.out`` with suffix ``.npy`` (the images ``[U, k, s, s, c]`` in [0, 1])."""
    t0 = time.perf_counter()
    p = plan(job)
    model, data = load_inputs(p, progress)
    x = None if data is None else data.float_images()
    poz = None if x is None or p.layer == U.LOGITS else U.unit_poz(
        layer_acts(model, x, p.layer))
    chosen = U.select_units(p.items, p.width, poz, p.kept)
    t1 = time.perf_counter()
    rendered = render_units(model, p.layer, chosen, job.render)
    t_render = time.perf_counter() - t1
    rows = unit_rows(model, p.layer, chosen, rendered, x, poz, p.kept, data, job.top_k)
    out = Path(job.out)
    _write_npy(out.with_suffix(".npy"), rendered.pixels.astype(np.float32))
    write_grid(p.layer, rows, rendered, data, out, title=f"{job.model} {p.layer}: synthetic "
               f"image | top {job.top_k} of {job.images}")
    from jaxprune.provenance import fingerprint, identity

    return {"identity": identity(kind="featurevis", model=job.model, layer=p.layer,
                                 weights=job.weights or "packaged",
                                 params_hash=fingerprint(model.params),
                                 images=job.images, stimuli=0 if x is None else len(x),
                                 stimuli_hash=None if x is None else fingerprint(x),
                                 search=job.search, search_pick=p.search_info,
                                 units_spec=job.units, render=_config_dict(job.render)),
            "layer": p.layer, "units": [strip(r) for r in rows], "figure": str(out),
            "images_npy": str(out.with_suffix(".npy")), "render_seconds": t_render,
            "wall_time_s": time.perf_counter() - t0}


def strip(row: dict) -> dict:
    """A unit row without its private fields (the top-k image indices)."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _write_npy(path: Path, array: np.ndarray) -> None:
    from jaxprune.outputs import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_atomic(path, write)


def _config_dict(config: RenderConfig) -> dict:
    return dataclasses.asdict(config)


def layer_acts(model: Model, x: np.ndarray, layer: str, chunk: int = 32) -> np.ndarray:
    """Activations of ``layer`` on the inputs ``x``, in chunks."""
    import jax

    f = jax.jit(lambda params, xs: U.activations(model.arch, params, xs, [layer])[layer])
    return np.concatenate([np.asarray(f(model.params, jnp.asarray(x[i:i + chunk])))
                           for i in range(0, len(x), chunk)])


def unit_rows(model: Model, layer: str, chosen: list[int], rendered, x, poz, kept, data,
              top_k: int = 4) -> list[dict]:
    """Per unit: PoZ, kept/pruned status, the final activation, its mean / max over the
    images ``x`` (network inputs, resized to the rendered size), their ratio, and the top-k
    images (names, values)."""
    size = rendered.pixels.shape[2]
    real = None if x is None else real_values(
        model, lambda u: channel(layer, u), jnp.asarray(chosen, jnp.int32), x, size=size)
    rows = []
    for i, u in enumerate(chosen):
        row: dict[str, Any] = {"unit": u, "final_activation": float(np.mean(rendered.final[i])),
                               "trace_first": float(rendered.trace[i, 0]),
                               "trace_last": float(rendered.trace[i, -1])}
        if poz is not None:
            row["poz"] = float(poz[u])
        if kept is not None:
            row["status"] = "kept" if kept[u] > 0 else "pruned"
        if real is not None:
            mean = float(np.mean(real[i]))
            row.update(real_mean=mean, real_max=float(np.max(real[i])),
                       activation_ratio=row["final_activation"] / mean if mean > 0 else None)
            top = np.argsort(-real[i], kind="stable")[:top_k]
            row["top_images"] = [data.file_names[j] if data.file_names else int(j) for j in top]
            row["top_values"] = [float(real[i, j]) for j in top]
            row["_top"] = top.tolist()
        rows.append(row)
    return rows


def write_grid(layer: str, rows: list[dict], rendered, data, out: Path, title: str = "",
               index: list[int] | None = None) -> Path:
    """The PNG grid: per unit its first synthetic image and its top-k dataset images
    (``index``: positions of ``rows`` in ``rendered``, default all in order)."""
    from jaxprune.featurevis.figure import plot_grid, tile, unit_label

    tiles, labels = [], []
    for i, row in zip(index or range(len(rows)), rows, strict=True):
        top = row.get("_top", [])
        examples = [data.images[j] for j in top] if data is not None else []
        tiles.append(tile(rendered.pixels[i, 0], examples))
        ratio = row.get("activation_ratio")
        if "real_mean" in row and ratio is None:
            ratio = float("inf")
        labels.append(unit_label(layer, row["unit"], row.get("poz"), row.get("status"), ratio))
    return plot_grid(tiles, labels, out, title=title)
