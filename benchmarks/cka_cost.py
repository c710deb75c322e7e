"""Cost of greedy CKA pruning: jaxprune's vectorised search vs its sequential twin vs a plain
PyTorch loop written the way research code is (zero one neuron, recompute the forward, linear
CKA from n×n Gram matrices centred with ``H K H``, restore), on the same machine. Writes JSON.

Problem: fc1 (256 units) of an MLP 784-256-256-10 trained briefly on MNIST (Adam, 2 epochs on
10,000 training images), 50 % of its units removed by linear CKA on 512 MNIST test images.
Also: jaxprune alone on a 1,024-unit layer to 90 % removal, the readout comparison (fc1 judged
by the CKA of fc2), and the cost against width. Cold = first call in the process (compilation
included, after ``jax.clear_caches()``); warm = median of repeated calls.

The PyTorch loop costs ~0.5 s per candidate on a loaded 2-core CPU (24,640 candidates at full
size), so by default it runs the first ``--torch-steps`` greedy steps and the total is
extrapolated from its measured cost per candidate (``torch.extrapolated``); ``--torch-steps
0`` runs it to the end.

    python benchmarks/cka_cost.py            # full (several minutes)
    python benchmarks/cka_cost.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _machine import finish, machine_info

from jaxprune.models import architecture
from jaxprune.search.cka import cka_prune_layer
from jaxprune.search.result import write_json
from jaxprune.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
#: float32 rounding of CKA values near 1 (a few ulps): choices this close are ties
TIE_TOL = 2e-6

FULL = {"width": 256, "stimuli": 512, "fraction": 0.5, "train_images": 10000, "epochs": 2,
        "wide": 1024, "wide_fraction": 0.9, "scaling": (128, 256, 512, 1024), "repeats": 3,
        "torch_steps": 2, "readout_twin_steps": 2, "float64_check": False}
QUICK = {"width": 32, "stimuli": 96, "fraction": 0.5, "train_images": 2000, "epochs": 1,
         "wide": 128, "wide_fraction": 0.9, "scaling": (32, 64), "repeats": 2,
         "torch_steps": 0, "readout_twin_steps": 0, "float64_check": True}


# ----------------------------------------------------------------------------- setup


def mnist(n_train: int, n_test: int):
    """Flattened MNIST (or sklearn digits where MNIST is absent) and its name."""
    from jaxprune.pipeline import load_splits

    try:
        data = load_splits("mnist", n_train=n_train, n_test=n_test)
    except FileNotFoundError:
        data = load_splits("digits", n_train=n_train, n_test=n_test)
    return data


def trained_mlp(data, widths: tuple[int, ...], epochs: int):
    """An MLP ``input-widths-10`` trained briefly (Adam 1e-3, batch 128, no dropout)."""
    arch = architecture("mlp", input_dim=data.x_train.shape[1], widths=widths, dropout=0.0)
    cfg = TrainConfig(epochs=epochs, batch_size=128, learning_rate=1e-3, seeds=(0,))
    result = fit(arch, data.x_train, data.y_train, cfg, test=(data.x_test, data.y_test),
                 progress=False, verbose=False)
    params = jax.tree.map(lambda a: a[0], result.params)
    return arch, params, float(result.final()["test_accuracy"][0])


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def cold_warm(fn, repeats: int) -> tuple[Any, float, list[float]]:
    """Cold: after ``jax.clear_caches()`` (all compilation counted); warm: ``repeats`` more."""
    jax.clear_caches()
    out, cold = timed(fn)
    warm = [timed(fn)[1] for _ in range(repeats)]
    return out, cold, warm


def candidates(width: int, steps: int) -> int:
    return sum(width - k for k in range(steps))


# ----------------------------------------------------------------------------- PyTorch loop


def torch_greedy(kernel, bias, x, steps: int, max_steps: int | None = None,
                 follow: list[int] | None = None, dtype: str = "float32") -> dict[str, Any]:
    """Greedy CKA pruning the way research code does it. With ``follow``, each step still
    scores every candidate but removes ``follow[step]`` (to compare choices step by step
    without diverging). Returns its own best unit and score per step, the score of the unit
    removed, the time and the number of candidates evaluated."""
    import torch

    torch.set_grad_enabled(False)

    def centering(k):
        n = k.shape[0]
        h = torch.eye(n, dtype=k.dtype) - torch.ones(n, n, dtype=k.dtype) / n
        return h @ k @ h

    def linear_hsic(a, b):
        return torch.sum(centering(a @ a.T) * centering(b @ b.T))

    def linear_cka(a, b):
        return linear_hsic(a, b) / (torch.sqrt(linear_hsic(a, a)) * torch.sqrt(linear_hsic(b, b)))

    w = torch.tensor(np.array(kernel, dtype))
    b = torch.tensor(np.array(bias, dtype))
    x = torch.tensor(np.array(x, dtype))
    original = torch.relu(x @ w + b)
    removed, best_units, best_scores, removed_scores, evaluated = [], [], [], [], 0
    t0 = time.perf_counter()
    for step in range(steps if max_steps is None else min(steps, max_steps)):
        best, best_unit, values = -1.0, -1, {}
        for unit in range(w.shape[1]):
            if unit in removed:
                continue
            saved_w, saved_b = w[:, unit].clone(), b[unit].clone()
            w[:, unit] = 0.0  # zero the neuron
            b[unit] = 0.0
            pruned = torch.relu(x @ w + b)  # recompute the forward
            values[unit] = value = linear_cka(original, pruned).item()
            w[:, unit] = saved_w  # restore
            b[unit] = saved_b
            evaluated += 1
            if value > best:
                best, best_unit = value, unit
        chosen = best_unit if follow is None else follow[step]
        w[:, chosen] = 0.0
        b[chosen] = 0.0
        removed.append(chosen)
        best_units.append(best_unit)
        best_scores.append(best)
        removed_scores.append(values[chosen])
    return {"best_units": best_units, "best_scores": best_scores, "removed": removed,
            "removed_scores": removed_scores, "seconds": time.perf_counter() - t0,
            "evaluated": evaluated}


# ----------------------------------------------------------------------------- benchmark


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (u, v) in enumerate(zip(a, b, strict=False)) if u != v), None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem, under a minute")
    parser.add_argument("--out", default=None, help="JSON path")
    parser.add_argument("--torch-steps", type=int, default=None,
                        help="greedy steps of the PyTorch loop (0: all)")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.torch_steps is not None:
        cfg["torch_steps"] = args.torch_steps
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "cka_cost_quick.json" if args.quick else "cka_cost.json")
    t_start = time.perf_counter()
    import torch

    info = {**machine_info("torch"), "torch_threads": torch.get_num_threads()}

    data = mnist(cfg["train_images"], max(cfg["stimuli"], 1000))
    x = data.x_test[: cfg["stimuli"]]
    width, fraction = cfg["width"], cfg["fraction"]
    arch, params, accuracy = trained_mlp(data, (width, width), cfg["epochs"])
    steps = int(np.floor(fraction * width + 0.5))
    problem = {"network": f"mlp {arch.input_shape[0]}-{width}-{width}-10", "layer": "fc1",
               "width": width, "stimuli": cfg["stimuli"], "fraction": fraction, "steps": steps,
               "candidates": candidates(width, steps), "trained_on":
               f"{data.name} train[:{len(data.x_train)}], {cfg['epochs']} epoch(s), Adam 1e-3",
               "stimuli_from": f"{data.name} test[:{cfg['stimuli']}]",
               "test_accuracy": accuracy}
    print(problem, flush=True)

    # jaxprune, vectorised (cold first: nothing of the search compiled yet)
    def vectorised():
        return cka_prune_layer(arch, params, x, "fc1", fraction=fraction)

    fast, fast_cold, fast_warm = cold_warm(vectorised, cfg["repeats"])
    fast_order = fast.trace[0].order
    print(f"jaxprune: cold {fast_cold:.2f} s, warm {statistics.median(fast_warm):.3f} s",
          flush=True)

    # the sequential twin, one candidate per call: a one-step call twice (the first compiles),
    # then the whole search warm; cold = warm + the compile time
    def twin_step():
        return cka_prune_layer(arch, params, x, "fc1", fraction=1 / width, sequential=True)

    step_cold, step_warm = timed(twin_step)[1], timed(twin_step)[1]
    slow, slow_warm = timed(cka_prune_layer, arch, params, x, "fc1", fraction=fraction,
                            sequential=True)
    slow_cold = slow_warm + max(0.0, step_cold - step_warm)
    print(f"sequential twin: warm {slow_warm:.1f} s, cold {slow_cold:.1f} s", flush=True)

    # the PyTorch loop, made to follow jaxprune's removals so that every step compares the
    # choice of each: identical, or a tie within float32 rounding (TIE_TOL)
    run = torch_greedy(params["fc1"]["kernel"], params["fc1"]["bias"], x, steps,
                       cfg["torch_steps"] or None, follow=fast_order)
    done = len(run["removed"])
    per_candidate = run["seconds"] / run["evaluated"]
    extrapolated = done < steps
    torch_total = per_candidate * problem["candidates"] if extrapolated else run["seconds"]
    gaps = np.asarray(run["best_scores"]) - np.asarray(run["removed_scores"])
    exact = [int(u == v) for u, v in zip(run["best_units"], fast_order, strict=False)]
    same_torch = bool(np.all(gaps <= TIE_TOL))
    print(f"torch: {done} step(s), {run['evaluated']} candidates in {run['seconds']:.1f} s "
          f"({per_candidate * 1e3:.1f} ms each) -> {torch_total:.0f} s total; "
          f"{sum(exact)}/{done} identical, largest gap {gaps.max():.2e}", flush=True)

    same_twin = fast_order == slow.trace[0].order
    warm = statistics.median(fast_warm)
    float64 = None
    if cfg["float64_check"]:
        with jax.enable_x64(True):
            p64 = jax.tree.map(lambda a: jax.numpy.asarray(a, jax.numpy.float64), params)
            order64 = cka_prune_layer(arch, p64, np.asarray(x, np.float64), "fc1",
                                      fraction=fraction).trace[0].order
        torch64 = torch_greedy(params["fc1"]["kernel"], params["fc1"]["bias"], x, steps,
                               dtype="float64")
        float64 = {"identical": order64 == torch64["removed"], "steps": steps,
                   "first_difference": first_difference(order64, torch64["removed"]),
                   "float32_jaxprune_equal_to_float64": order64 == fast_order}
        print("float64 check:", float64, flush=True)
    result: dict[str, Any] = {
        "benchmark": "cka_cost", "mode": "quick" if args.quick else "full", "machine": info,
        "problem": problem,
        "jaxprune": {"cold_s": fast_cold, "warm_s": warm, "warm_runs_s": fast_warm},
        "sequential": {"cold_s": slow_cold, "warm_s": slow_warm,
                       "compile_s": slow_cold - slow_warm,
                       "per_candidate_ms": 1e3 * slow_warm / problem["candidates"]},
        "torch": {"steps_run": done, "candidates_run": run["evaluated"],
                  "seconds_run": run["seconds"], "per_candidate_ms": 1e3 * per_candidate,
                  "total_s": torch_total, "extrapolated": extrapolated,
                  "code": "zero neuron, recompute forward, n×n Gram CKA with H K H centring"},
        "same_choices": bool(same_twin and same_torch
                             and (float64 is None or float64["identical"])),
        "same_choices_detail": {
            "jaxprune_vs_sequential": same_twin,
            "first_difference_sequential": first_difference(fast_order, slow.trace[0].order),
            "torch_steps_compared": done, "torch_identical_steps": sum(exact),
            "torch_ties_within_rounding": same_torch, "tie_tolerance": TIE_TOL,
            "torch_largest_gap": float(gaps.max()),
            "max_score_difference_torch": float(np.max(np.abs(
                np.asarray(fast.trace[0].scores[:done]) - np.asarray(run["removed_scores"])))),
            "float64": float64,
        },
        "speedup_vs_torch": torch_total / warm,
        "speedup_vs_torch_cold": torch_total / fast_cold,
        "speedup_vs_sequential": slow_warm / warm,
        "speedup_vs_sequential_cold": slow_cold / fast_cold,
        "targets": {"vs_torch": 100, "vs_sequential": 5},
    }
    result["targets"]["met"] = bool(result["speedup_vs_torch"] >= 100
                                    and result["speedup_vs_sequential"] >= 5)
    write_json(out_path, result)

    # a wide layer to 90 %
    wide_arch, wide_params, wide_acc = trained_mlp(data, (cfg["wide"],), cfg["epochs"])
    wide, wide_cold, wide_warm = cold_warm(
        lambda: cka_prune_layer(wide_arch, wide_params, x, "fc1",
                                fraction=cfg["wide_fraction"]), cfg["repeats"])
    result["wide_layer"] = {"width": cfg["wide"], "fraction": cfg["wide_fraction"],
                            "steps": wide.trace[0].removed, "test_accuracy": wide_acc,
                            "cold_s": wide_cold, "warm_s": statistics.median(wide_warm),
                            "candidates": candidates(cfg["wide"], wide.trace[0].removed)}
    print("wide:", result["wide_layer"], flush=True)
    write_json(out_path, result)

    # readout comparison: fc1's removals judged by the CKA of fc2
    jax.clear_caches()
    readout, readout_cold = timed(cka_prune_layer, arch, params, x, "fc1", fraction=fraction,
                                  compare="readout")
    readout_warm = None
    if args.quick:
        readout_warm = timed(cka_prune_layer, arch, params, x, "fc1", fraction=fraction,
                             compare="readout")[1]
    twin_steps = cfg["readout_twin_steps"] or steps
    twin, twin_s = timed(cka_prune_layer, arch, params, x, "fc1",
                         fraction=twin_steps / width, compare="readout", sequential=True)
    twin_candidates = candidates(width, twin.trace[0].removed)
    result["readout"] = {
        "compare": "readout (fc2)", "steps": readout.trace[0].removed, "cold_s": readout_cold,
        "warm_s": readout_warm,
        "per_candidate_ms": 1e3 * (readout_warm or readout_cold) / problem["candidates"],
        "sequential_steps_run": twin.trace[0].removed, "sequential_s": twin_s,
        "sequential_per_candidate_ms": 1e3 * twin_s / twin_candidates,
        "same_choices": readout.trace[0].order[: twin.trace[0].removed] == twin.trace[0].order,
    }
    print("readout:", result["readout"], flush=True)
    write_json(out_path, result)

    # cost against width (layer comparison, 50 %)
    scaling = []
    for w in cfg["scaling"]:
        a, p, _ = trained_mlp(data, (w,), cfg["epochs"])
        r, cold, warm_runs = cold_warm(
            lambda a=a, p=p: cka_prune_layer(a, p, x, "fc1", fraction=fraction), cfg["repeats"])
        scaling.append({"width": w, "steps": r.trace[0].removed, "cold_s": cold,
                        "warm_s": statistics.median(warm_runs)})
        print("scaling:", scaling[-1], flush=True)
    result["scaling"] = scaling
    finish(result["machine"])
    result["seconds"] = time.perf_counter() - t_start
    write_json(out_path, result)
    print(f"wrote {out_path}: speedup vs torch {result['speedup_vs_torch']:.0f}x, vs sequential "
          f"{result['speedup_vs_sequential']:.0f}x, same choices {result['same_choices']}")
    return result


if __name__ == "__main__":
    main()
