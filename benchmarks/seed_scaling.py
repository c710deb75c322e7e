"""Seed scaling of the PoZ search: S = 1 … 512 stacked ``lenet5_cifar`` networks searched in
one :func:`~jaxprune.search.poz.poz_search` call, wall time per seed, on 1 device and on 8
(forced CPU) devices with ``PoZConfig(sharding="seeds")``. Writes JSON.

Networks: one ``lenet5_cifar`` trained briefly (:func:`jaxprune.train.fit`, Adam, one pass
over ``--train-steps`` × 64 CIFAR-10 training images) so that its units have realistic
sparsity; seed ``i`` of every stack is those weights plus 5% of an init-scale perturbation
drawn from seed ``100 + i`` (as ``benchmarks/search_cost.py`` does), so seed ``i`` is the same
network at every S and on every device count. Stimuli: ``--stimuli`` other CIFAR-10 training
images from ../shared/data (Gaussian where absent; recorded); threshold R² ≥ 0.8 to the
unpruned readout RSM; default chunking.

Direction: bottom-up only by default (``--directions bottom-up,top-down`` adds the other
paper direction). Top-down reuses the compiled chunk programs of bottom-up and costs about the
same again per seed (a probe: 0.65 vs 0.57 s per seed at S = 1, n = 500), so it would double
the run without telling more about how the cost scales with S.

Each device count D runs in a child process of its own with ``XLA_FLAGS`` set to
``--xla_force_host_platform_device_count=D`` (recorded in the JSON); per S: the search cold
(compilation included: a new S is a new program shape) and warm (a second, identical call),
wall time per seed, candidates evaluated per second (warm), the peak resident
memory of each call (Linux ``VmHWM``, reset before it; :func:`jaxprune.bench.measured`) and
the load average at the cell's start. Seeds go ``--seed-batch`` (default 64) at a time
through one vectorised program, so S ≤ 64 is one program and larger S loops over batches of
64, which bound memory and compile time: on the CPU :func:`jaxprune.models.conv.conv2d` runs
a batch of kernels as S convolutions side by side in one program, so compilation grows with
the batch (measured: 16 s at S = 1, 120 s at S = 64). On 8 devices the library pads a batch
to a multiple of 8 by repeating the last seed (S = 1, 2, 4 compute 8; ``seeds_computed``). The
masks of every seed are compared between 1 and 8 devices (the library promises identical
results) and, per device count, with the same seeds' masks in the largest S measured.

``--max-seconds`` skips a cell whose cold + warm time, predicted from the previous measured
cell of the same device count (its warm time scaled by the seeds computed, twice, plus its
compile time where the cell needs a new program batch size), exceeds it; larger S are then
skipped too. The prediction and the reason are recorded, never a number.

    python benchmarks/seed_scaling.py            # full: S = 1 … 512, n = 64, 150 steps;
                                                 # 20 min on 2 shared cores, half compiling
    python benchmarks/seed_scaling.py --quick    # S = 1, 2, 8, n = 32, untrained; 2.3 min
                                                 # on 2 cores at load 7, mostly compiling
    python benchmarks/seed_scaling.py --seeds 1,8,64 --devices 8 --stimuli 256
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import UserError, run_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks/results/seed_scaling.json"
FULL = {"seeds": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512), "stimuli": 64, "train_steps": 150,
        "max_seconds": 240.0}
QUICK = {"seeds": (1, 2, 8), "stimuli": 32, "train_steps": 0, "max_seconds": 60.0}
DIRECTIONS = ("bottom-up", "top-down")
THRESHOLD = 0.8
NOISE = 0.05
DEVICE_FLAG = "--xla_force_host_platform_device_count"


def int_list(text: str, what: str) -> list[int]:
    """``"1,2,8"`` -> ``[1, 2, 8]`` (positive, sorted, unique); :class:`UserError` otherwise."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"{what} {text!r}: give positive integers, e.g. 1,2,8") from None
    if not values or values[0] < 1:
        raise UserError(f"{what} {text!r}: give positive integers, e.g. 1,2,8")
    return values


# ----------------------------------------------------------------------------- inputs (parent)


def cifar_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``n`` random CIFAR-10 training images (normalised) and labels, else Gaussian."""
    try:
        from jaxprune.data import load_dataset

        train = load_dataset("cifar10", "train")
        idx = np.random.default_rng(seed).permutation(len(train.labels))[:n]
        sub = train.subset(idx)
        return sub.float_images(), sub.labels, "cifar10 (train split, random images, seed 0)"
    except Exception as e:  # noqa: BLE001 - the benchmark still runs without the data
        print(f"CIFAR-10 unavailable ({e}); using Gaussian stimuli", flush=True)
        x = np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype(np.float32)
        return x, None, f"gaussian (CIFAR-10 unavailable: {e})"


def prepare_inputs(stimuli: int, train_steps: int, seeds: int, folder: Path) -> dict[str, Any]:
    """Train the network once, stack ``seeds`` perturbed copies and save them with the
    stimuli to ``folder`` for the children (one set of compilations); returns what was used."""
    import jax

    from jaxprune import models
    from jaxprune.train import TrainConfig, fit

    t0 = time.perf_counter()
    x_all, y_all, source = cifar_images(stimuli + train_steps * 64)
    arch = models.architecture("lenet5_cifar")
    init = models.init_stack(arch, [0, *range(100, 100 + seeds)])  # seed 0: the base network
    params = jax.tree.map(lambda p: p[0], init)
    if y_all is not None and train_steps > 0:
        config = TrainConfig(epochs=1, batch_size=64, val_fraction=0.0, restore_best=False)
        result = fit(arch, x_all[stimuli:], y_all[stimuli:], config, params=params,
                     progress=False, verbose=False)
        params = jax.tree.map(lambda p: p[0], result.params)
    else:
        train_steps = 0
    stack = jax.tree.map(lambda p, e: p[None] + NOISE * e[1:], params, init)
    np.savez(folder / "inputs.npz", x=x_all[:stimuli],
             **{f"p{i}": np.asarray(v) for i, v in enumerate(jax.tree.leaves(stack))})
    return {"network": "lenet5_cifar", "stimuli": stimuli, "stimulus_source": source,
            "training": f"jaxprune.train.fit from init_params(seed 0), Adam 1e-3, batch 64, "
                        f"{train_steps} steps (one epoch) on training images other than the "
                        "stimuli" if train_steps else "none: init_params(seed 0)",
            "training_steps": train_steps, "prepare_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- one device count


def load_stack(folder: Path) -> tuple[Any, Any, np.ndarray]:
    """``(arch, params stacked [S_max, ...], x)`` as :func:`prepare_inputs` saved them."""
    import jax

    from jaxprune import models

    arch = models.architecture("lenet5_cifar")
    saved = np.load(folder / "inputs.npz")
    treedef = jax.tree.structure(jax.eval_shape(
        lambda: models.init_params(arch, jax.random.key(0))))
    stack = jax.tree.unflatten(treedef, [saved[f"p{i}"] for i in range(treedef.num_leaves)])
    return arch, stack, saved["x"]


def batch_shapes(seeds: int, batch: int, devices: int) -> list[int]:
    """The seed-batch sizes the search's programs get for ``seeds`` in batches of ``batch``
    (each padded to a multiple of ``devices``): one per batch, padding included."""
    from jaxprune.sharding import round_up

    batch = round_up(min(seeds, batch), devices)
    full, rest = divmod(seeds, batch)
    return [batch] * full + ([round_up(rest, devices)] if rest else [])


def measure_cell(arch: Any, stack: Any, x: np.ndarray, seeds: int,
                 spec: dict[str, Any]) -> tuple[dict, dict]:
    """Cold and warm search of the first ``seeds`` seeds in each direction; the row and the
    masks (``{direction/layer: [seeds, width]}``)."""
    import jax

    from jaxprune.bench import candidates_evaluated, measured
    from jaxprune.search.poz import PoZConfig, poz_search

    params = jax.tree.map(lambda p: p[:seeds], stack)
    batch = min(seeds, spec["seed_batch"])
    shapes = batch_shapes(seeds, batch, spec["devices"])
    row: dict[str, Any] = {"devices": spec["devices"], "S": seeds, "seed_batch": batch,
                           "seeds_computed": sum(shapes), "program_batches": sorted(set(shapes)),
                           "load_average_at_start": list(os.getloadavg()), "directions": {}}
    masks: dict[str, np.ndarray] = {}
    for direction in spec["directions"]:
        config = PoZConfig(direction=direction, threshold=THRESHOLD, sharding=spec["sharding"])
        search = lambda c=config: poz_search(arch, params, x, c, stacked=True,  # noqa: E731
                                             seed_batch=batch)
        results, cold = measured(search)
        _, warm = measured(search)
        count = candidates_evaluated(results)
        row["directions"][direction] = {
            "cold": cold, "warm": warm, "candidates": count,
            "kept_mean": {k: float(np.mean([r.kept[k] for r in results])) for k in arch.widths}}
        for k in arch.widths:
            masks[f"{direction}/{k}"] = np.stack([r.masks[k] for r in results])
    parts = row["directions"].values()
    cold_s, warm_s = (sum(p[key]["wall_s"] for p in parts) for key in ("cold", "warm"))
    count = sum(p["candidates"] for p in parts)
    row.update(status="measured", cold_s=cold_s, warm_s=warm_s, cold_per_seed_s=cold_s / seeds,
               warm_per_seed_s=warm_s / seeds, candidates=count,
               candidates_per_s=count / warm_s,
               peak_rss_mib=max(p[k]["peak_rss_mib"] for p in parts for k in ("cold", "warm")))
    return row, masks


def guarded(seeds: int, rows: list[dict[str, Any]], spec: dict[str, Any]) -> dict | None:
    """A skipped row if this cell's predicted cold + warm time exceeds ``spec["max_seconds"]``
    or a smaller S was already skipped; else None. Predicted from the previous measured cell:
    its warm time × seeds computed now / then, twice, plus its compile time (cold − warm)
    where this cell needs a program batch size no measured cell compiled."""
    limit = spec["max_seconds"]
    if limit is None or not rows:
        return None
    if rows[-1]["status"] == "skipped":
        return {"S": seeds, "status": "skipped",
                "reason": f"S = {rows[-1]['S']} was already skipped (--max-seconds)"}
    last = rows[-1]
    shapes = batch_shapes(seeds, spec["seed_batch"], spec["devices"])
    compiled = {b for r in rows if r["status"] == "measured" for b in r["program_batches"]}
    compile_s = max(last["cold_s"] - last["warm_s"], 0.0) if set(shapes) - compiled else 0.0
    guess = compile_s + 2 * last["warm_s"] * sum(shapes) / last["seeds_computed"]
    if guess <= limit:
        return None
    return {"S": seeds, "status": "skipped", "predicted_s": guess,
            "reason": f"predicted {guess:.0f} s (cold + warm) > --max-seconds {limit:g}: "
                      f"S = {last['S']} took {last['cold_s']:.1f} s cold, {last['warm_s']:.1f} "
                      f"s warm; {compile_s:.0f} s compiling plus twice its warm time x "
                      f"{sum(shapes)}/{last['seeds_computed']} seeds computed"}


def run_child(spec: dict[str, Any], folder: Path) -> None:
    """Every S on this process's devices; JSON and masks (npz) into ``folder``."""
    import jax

    from jaxprune.bench import finish, machine_info

    devices = spec["devices"]
    if jax.local_device_count() != devices:
        raise RuntimeError(f"asked for {devices} devices, JAX has {jax.local_device_count()} "
                           f"(XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
    info = machine_info()
    t0 = time.perf_counter()
    arch, stack, x = load_stack(folder)
    setup_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    masks: dict[str, np.ndarray] = {}
    for seeds in spec["seeds"]:
        row = guarded(seeds, rows, spec)
        if row is None:
            row, cell_masks = measure_cell(arch, stack, x, seeds, spec)
            masks.update({f"S{seeds}/{k}": v for k, v in cell_masks.items()})
        row["devices"] = devices
        rows.append(row)
        detail = (f"cold {row['cold_s']:.2f} s, warm {row['warm_s']:.2f} s = "
                  f"{row['warm_per_seed_s']:.3f} s/seed, peak RSS {row['peak_rss_mib']:.0f} MiB"
                  if row["status"] == "measured" else row["reason"])
        print(f"  {devices} device(s), S = {seeds}: {detail}", flush=True)
    np.savez(folder / f"masks_{devices}.npz", **masks)
    (folder / f"rows_{devices}.json").write_text(json.dumps(
        {"machine": finish(info), "load_inputs_s": setup_s, "rows": rows}, default=float))


# ----------------------------------------------------------------------------- the driver


def child_env(devices: int) -> dict[str, str]:
    """This environment with ``XLA_FLAGS`` forcing ``devices`` CPU devices (any earlier
    device-count flag replaced; jaxprune's own flag is kept, or added by its import)."""
    flags = re.sub(rf"{DEVICE_FLAG}=\S*", "", os.environ.get("XLA_FLAGS", "")).split()
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join([*flags, f"{DEVICE_FLAG}={devices}"])
    return env


def spawn(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run :func:`run_child` for ``spec`` in a fresh interpreter; its rows, or why it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec),
           "--work", str(folder)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(spec["devices"]), stderr=subprocess.PIPE,
                          text=True)
    out = folder / f"rows_{spec['devices']}.json"
    if proc.returncode != 0 or not out.exists():
        return {"status": "failed", "reason": proc.stderr.strip()[-3000:], "rows": []}
    return {"status": "done", "process_wall_s": time.perf_counter() - t0,
            **json.loads(out.read_text())}


def differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray], key: str,
                other: str | None = None) -> list[dict[str, Any]]:
    """Per ``direction/layer`` of cell ``key`` (``S{S}``) where the masks of ``a`` and ``b``
    (``other``'s in ``b``; its first seeds) differ: the seeds and how many units."""
    out = []
    for name in sorted(k for k in a if k.startswith(key + "/")):
        mine = a[name]
        theirs = b.get(name if other is None else name.replace(key, other, 1))
        if theirs is None:
            continue
        theirs = theirs[: len(mine)]
        seeds = np.flatnonzero((mine != theirs).any(axis=1))
        if seeds.size:
            out.append({"masks": name, "seeds": seeds.tolist(),
                        "units_differing": int((mine != theirs).sum())})
    return out


def compare_masks(masks: dict[int, dict[str, np.ndarray]],
                  rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per S measured on several device counts: are all seeds' masks those of the fewest
    devices (1 vs 8 by default)? And per device count, each S's seeds against the same seeds
    in its largest measured S."""
    measured = {(r["devices"], r["S"]) for r in rows if r["status"] == "measured"}
    base = min((d for d, _ in measured), default=1)
    across_devices = []
    for devices, seeds in sorted(measured):
        if devices != base and (base, seeds) in measured:
            diff = differences(masks[devices], masks[base], f"S{seeds}")
            across_devices.append({"devices": devices, "against_devices": base, "S": seeds,
                                   "same_masks": not diff, "differences": diff})
    across_s = []
    for devices in sorted({d for d, _ in measured}):
        largest = max(s for d, s in measured if d == devices)
        for seeds in sorted(s for d, s in measured if d == devices and s < largest):
            diff = differences(masks[devices], masks[devices], f"S{seeds}", f"S{largest}")
            across_s.append({"devices": devices, "S": seeds, "against_S": largest,
                             "same_masks": not diff, "differences": diff})
    return {"across_devices": across_devices,
            "same_masks_across_devices": (all(c["same_masks"] for c in across_devices)
                                          if across_devices else None),
            "across_S": across_s,
            "same_masks_across_S": all(c["same_masks"] for c in across_s) if across_s else None}


def summary(rows: list[dict[str, Any]], comparison: dict[str, Any]) -> dict[str, Any]:
    """Per device count: warm time per seed at S = 1 and at the largest measured S."""
    out: dict[str, Any] = {"per_devices": {}}
    for devices in sorted({r["devices"] for r in rows}):
        got = [r for r in rows if r["devices"] == devices and r["status"] == "measured"]
        if not got:
            continue
        first, last = got[0], got[-1]
        out["per_devices"][str(devices)] = {
            "smallest_S": first["S"], "warm_per_seed_s_smallest_S": first["warm_per_seed_s"],
            "largest_S": last["S"], "warm_per_seed_s_largest_S": last["warm_per_seed_s"],
            "per_seed_speedup": first["warm_per_seed_s"] / last["warm_per_seed_s"],
            "skipped_S": [r["S"] for r in rows if r["devices"] == devices
                          and r["status"] != "measured"]}
    out["same_masks_across_devices"] = comparison["same_masks_across_devices"]
    out["same_masks_across_S"] = comparison["same_masks_across_S"]
    return out


def table_text(rows: list[dict[str, Any]]) -> str:
    from jaxprune.report import table

    def line(r: dict[str, Any]) -> list[Any]:
        if r["status"] != "measured":
            return [r["devices"], r["S"], r["status"], "-", "-", "-", "-", "-", "-"]
        return [r["devices"], r["S"], r["seeds_computed"], f"{r['cold_s']:.2f}",
                f"{r['warm_s']:.2f}", f"{r['warm_per_seed_s']:.4f}",
                f"{r['candidates_per_s']:.0f}", f"{r['peak_rss_mib']:.0f}",
                f"{r['load_average_at_start'][0]:.1f}"]

    return table(["devices", "S", "computed", "cold s", "warm s", "warm s/seed", "cand/s",
                  "peak RSS MiB", "load"], [line(r) for r in rows])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="S = 1, 2, 8; n = 32; 20 steps")
    p.add_argument("--seeds", help="S values, comma-separated (default: full 1,2,4,...,512; "
                                   "quick 1,2,8)")
    p.add_argument("--devices", default="1,8", help="device counts, comma-separated (1,8)")
    p.add_argument("--stimuli", type=int, help="stimuli n (default: full 128, quick 32)")
    p.add_argument("--train-steps", type=int, help="Adam steps (default: full 200, quick 20)")
    p.add_argument("--directions", default="bottom-up",
                   help="bottom-up and/or top-down, comma-separated (default bottom-up)")
    p.add_argument("--seed-batch", type=int, default=64,
                   help="most seeds per vectorised program (default 64)")
    p.add_argument("--max-seconds", type=float,
                   help="skip a cell predicted to take longer (default: full 240, quick 60)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON written")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    mode = QUICK if args.quick else FULL
    args.seeds = int_list(args.seeds, "--seeds") if args.seeds else list(mode["seeds"])
    args.devices = int_list(args.devices, "--devices")
    args.directions = [d for d in args.directions.split(",") if d]
    if not args.directions or set(args.directions) - set(DIRECTIONS):
        raise UserError(f"--directions {','.join(args.directions) or '(none)'}: choose from "
                        f"{', '.join(DIRECTIONS)}")
    for name, default in (("stimuli", mode["stimuli"]), ("train_steps", mode["train_steps"]),
                          ("max_seconds", mode["max_seconds"])):
        value = getattr(args, name)
        setattr(args, name, default if value is None else value)
    if args.stimuli < 3:
        raise UserError(f"--stimuli must be at least 3, got {args.stimuli}")
    if args.train_steps < 0:
        raise UserError(f"--train-steps must be >= 0, got {args.train_steps}")
    if args.seed_batch < 1:
        raise UserError(f"--seed-batch must be >= 1, got {args.seed_batch}")
    if not args.max_seconds > 0:
        raise UserError(f"--max-seconds must be positive, got {args.max_seconds}")
    return args


def run_all(args: argparse.Namespace, folder: Path) -> tuple[list, dict, dict]:
    """Every device count in its own process: the rows, the masks, the children's info."""
    rows: list[dict[str, Any]] = []
    masks: dict[int, dict[str, np.ndarray]] = {}
    children: dict[str, Any] = {}
    for devices in args.devices:
        spec = {"devices": devices, "seeds": args.seeds, "directions": args.directions,
                "seed_batch": args.seed_batch, "max_seconds": args.max_seconds,
                "sharding": "seeds" if devices > 1 else None}
        print(f"{devices} device(s), sharding={spec['sharding']} ...", flush=True)
        got = spawn(spec, folder)
        children[str(devices)] = {k: v for k, v in got.items() if k != "rows"}
        if got["status"] != "done":
            print(f"  failed: {got['reason'][-500:]}", flush=True)
            continue
        rows += got["rows"]
        masks[devices] = dict(np.load(folder / f"masks_{devices}.npz"))
    return rows, masks, children


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        run_child(json.loads(args.child), Path(args.work))
        return {}
    from jaxprune.bench import finish, machine_info
    from jaxprune.search.result import write_json

    info = machine_info()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = prepare_inputs(args.stimuli, args.train_steps, max(args.seeds), Path(tmp))
        print(f"inputs: {inputs['stimuli']} stimuli, {inputs['training_steps']} training "
              f"steps ({inputs['prepare_s']:.0f} s)", flush=True)
        rows, masks, children = run_all(args, Path(tmp))
    comparison = compare_masks(masks, rows)
    options = {k: v for k, v in vars(args).items() if k not in ("child", "work")}
    out = {"benchmark": "seed_scaling", "mode": "quick" if args.quick else "full",
           "machine": info, "options": options, "inputs": inputs, "protocol": PROTOCOL,
           "children": children, "rows": rows, "mask_comparison": comparison,
           "summary": summary(rows, comparison), "total_wall_s": time.perf_counter() - t0}
    finish(out["machine"])
    write_json(args.out, out)
    print(table_text(rows))
    print(f"same masks across devices: {comparison['same_masks_across_devices']}, across S: "
          f"{comparison['same_masks_across_S']}; wrote {args.out}")
    return out


PROTOCOL = {
    "search": "jaxprune.search.poz.poz_search(arch, params [S, ...], x, PoZConfig(direction, "
              f"threshold={THRESHOLD}, sharding), stacked=True, seed_batch=min(S, "
              "--seed-batch)); rank once, metric r2 of Pearson RSMs, default chunking",
    "networks": f"seed i = the briefly trained lenet5_cifar + {NOISE} x init_params(seed "
                "100 + i): the same network at every S and device count",
    "sharding": "None on 1 device; 'seeds' on more (XLA_FLAGS "
                f"{DEVICE_FLAG}=D in a child process), each batch padded to a multiple of D",
    "cold_warm": "cold: the first call at this S in the child process (compilation of any "
                 "new program shape included); warm: a second, identical call",
    "per_seed": "warm_per_seed_s = warm_s / S (padding copies not counted as seeds)",
    "candidates_per_s": "candidate removals whose fit the search used, all seeds, / warm_s",
    "peak_rss": "Linux VmHWM of the child process, reset before each call "
                "(jaxprune.bench.measured); includes JAX and the loaded inputs",
    "load": "os.getloadavg() at each cell's start, and machine load_average_start/_end "
            "of the parent and of each child: the machine is shared, timings are noisy",
}


if __name__ == "__main__":
    run_main(main)
