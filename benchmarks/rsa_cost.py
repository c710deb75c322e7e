"""Cost of the Pearson RSA fit between two representations of the same n stimuli.

Three ways of computing ``corr(triu(rsm(x)), triu(rsm(y)))`` with Pearson RSMs:

- ``gram``: :func:`jaxprune.geometry.feature_rsa` with ``path="gram"`` (feature space,
  ``O(n·d²)``, no n×n matrix);
- ``direct``: the same with ``path="direct"`` (both n×n RSMs built in float32);
- ``rsatoolbox``: ``calc_rdm(method="correlation")`` on both + ``compare(method="corr")``
  (float64 NumPy, its native dtype).

Every (method, n, d) cell runs in a fresh subprocess, so that its cold time (JAX: trace +
compile + first run) and its peak memory are its own. Measured per cell:

- ``cold_s``: the first call; for JAX also ``compile_s`` (lower + compile) alone;
- ``warm_s``: the median of repeated calls after the first (at least ``--repeats``, continued
  to 1 s in total; none when the cold call alone exceeds ``--warm-budget``, and then the
  summaries use ``cold_s``). JAX: the compiled executable, inputs already on the device as
  float32; rsatoolbox: float64 NumPy inputs;
- ``peak_rss_bytes``: the process's peak resident set size (``resource.getrusage``,
  ``ru_maxrss``) minus the RSS just before the first call (imports and data already resident);
- ``xla_temp_bytes``: XLA's compiled temporary buffer size (``memory_analysis()``), for JAX;
- ``tracemalloc_peak_bytes``: peak Python/NumPy allocations during the first call, for
  rsatoolbox (``tracemalloc`` runs during that call only).

A cell is skipped (and says why) when its predicted memory exceeds ``--max-gb`` or the memory
available, or its predicted time exceeds ``--max-seconds``; predictions scale the previous
(smaller n) cell of the same method and d by ``(n/n_prev)²`` for the n×n methods.

Usage::

    python benchmarks/rsa_cost.py            # full grid, several minutes
    python benchmarks/rsa_cost.py --quick    # < 1 minute
    python benchmarks/rsa_cost.py --out benchmarks/results/rsa_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import finish, machine_info, proc_field

METHODS = ("gram", "direct", "rsatoolbox")
FULL = {"ns": [1000, 2000, 5000, 10000, 20000], "ds": [84, 512, 4096]}
QUICK = {"ns": [1000, 2000], "ds": [84]}
# The n×n methods are timed on this subset of n (the Gram path on every n, for the slope).
SQUARE_NS = {1000, 5000, 20000}


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated post-ReLU representations ``[n, d]`` (float64)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 32))
    x = np.maximum(base @ rng.normal(size=(32, d)) / 4 + 0.5, 0)
    y = np.maximum(x + 0.5 * rng.normal(size=(n, d)), 0)
    return x, y


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn: Any, repeats: int, min_total_s: float = 1.0, max_repeats: int = 100) -> list[float]:
    """Wall times of ``repeats`` calls, continued to ``min_total_s`` (``max_repeats`` at most)."""
    out: list[float] = []
    while len(out) < repeats or (sum(out) < min_total_s and len(out) < max_repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def worker(method: str, n: int, d: int, repeats: int, warm_budget_s: float) -> dict[str, Any]:
    """One cell, in this (fresh) process."""
    x, y = make_data(n, d)
    result: dict[str, Any] = {"method": method, "n": n, "d": d}
    if method == "rsatoolbox":
        import tracemalloc

        import rsatoolbox

        def fit() -> float:
            a = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
            b = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method="correlation")
            return float(rsatoolbox.rdm.compare(a, b, method="corr")[0, 0])

        base_rss = rss_bytes()
        tracemalloc.start()
        t0 = time.perf_counter()
        value = fit()
        result["cold_s"] = time.perf_counter() - t0
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        from functools import partial

        import jax
        import jax.numpy as jnp

        from jaxprune.geometry import feature_rsa

        xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        jax.block_until_ready((xj, yj))
        del x, y
        base_rss = rss_bytes()
        t0 = time.perf_counter()
        compiled = jax.jit(partial(feature_rsa, path=method)).lower(xj, yj).compile()
        result["compile_s"] = time.perf_counter() - t0
        result["xla_temp_bytes"] = int(compiled.memory_analysis().temp_size_in_bytes)
        value = float(compiled(xj, yj))
        result["cold_s"] = time.perf_counter() - t0

        def fit() -> float:
            return float(compiled(xj, yj))  # float() waits for the result

    reps = repeats if result["cold_s"] * repeats <= warm_budget_s else 1
    warm = timed(fit, reps) if result["cold_s"] <= warm_budget_s else []
    result.update(
        value=value,
        warm_s=statistics.median(warm) if warm else None,
        warm_min_s=min(warm) if warm else None,
        warm_runs=len(warm),
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss,
    )
    return result


def run_cell(method: str, n: int, d: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = json.dumps({"method": method, "n": n, "d": d})
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        spec,
        "--repeats",
        str(args.repeats),
        "--warm-budget",
        str(args.warm_budget),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_seconds * 4)
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "d": d, "skipped": "timed out in the worker"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-400:]
        return {"method": method, "n": n, "d": d, "skipped": f"worker failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def predicted_skip(
    method: str, n: int, d: int, prev: dict[str, Any] | None, args: argparse.Namespace
) -> str | None:
    """Why to skip a cell, from the previous cell (smaller n) of the same method and d."""
    if method == "gram" or prev is None or "cold_s" not in prev:
        return None
    scale = (n / prev["n"]) ** 2
    seconds = prev["cold_s"] * scale
    mem = max(prev.get("peak_rss_bytes", 0), prev.get("xla_temp_bytes", 0)) * scale
    available = (proc_field("/proc/meminfo", "MemAvailable") or 0) * 1024 - 2 * 2**30
    if mem > min(args.max_gb * 2**30, available):
        return f"predicted peak memory {mem / 2**30:.1f} GB > limit {args.max_gb} GB or free RAM"
    if seconds > args.max_seconds:
        return f"predicted time {seconds:.0f} s > --max-seconds {args.max_seconds}"
    return None


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) against log(n) (1 = linear, 2 = quadratic)."""
    if len(points) < 2:
        return None
    ns, ts = zip(*points, strict=True)
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def summarise(cells: list[dict[str, Any]], grid: dict[str, list[int]]) -> dict[str, Any]:
    def get(method: str, n: int, d: int) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in cells
                if c["method"] == method and c["n"] == n and c["d"] == d and "warm_s" in c
            ),
            None,
        )

    def warm(c: dict[str, Any]) -> float:
        return c["warm_s"] if c.get("warm_s") is not None else c["cold_s"]

    scaling: dict[str, Any] = {}
    for method in METHODS:
        for d in grid["ds"]:
            pts = [(n, warm(c)) for n in grid["ns"] if (c := get(method, n, d))]
            if pts:
                ratios = [
                    {"n": f"{n0}->{n1}", "n_ratio": n1 / n0, "time_ratio": t1 / t0}
                    for (n0, t0), (n1, t1) in zip(pts, pts[1:], strict=False)
                ]
                scaling[f"{method}/d={d}"] = {"log_log_slope": slope(pts), "ratios": ratios}

    ratios = []
    for d in grid["ds"]:
        for n in grid["ns"]:
            gram = get("gram", n, d)
            if gram is None:
                continue
            row = {"n": n, "d": d, "gram_warm_s": warm(gram)}
            for other in ("direct", "rsatoolbox"):
                if (c := get(other, n, d)) is not None:
                    row[f"{other}_over_gram"] = warm(c) / warm(gram)
                    row[f"{other}_minus_gram_value"] = c["value"] - gram["value"]
            ratios.append(row)

    n_max, d_min = max(grid["ns"]), min(grid["ds"])
    gram, ref = get("gram", n_max, d_min), get("rsatoolbox", n_max, d_min)
    headline = None
    if gram is not None and ref is not None:
        headline = {
            "n": n_max,
            "d": d_min,
            "gram_warm_s": warm(gram),
            "gram_cold_s": gram["cold_s"],
            "rsatoolbox_s": warm(ref),
            "speedup_warm": warm(ref) / warm(gram),
            "speedup_cold": ref["cold_s"] / gram["cold_s"],
        }
    return {
        "speedup_vs_rsatoolbox": headline["speedup_warm"] if headline else None,
        "speedup_detail": headline,
        "scaling": scaling,
        "ratios": ratios,
    }


def table(cells: list[dict[str, Any]]) -> str:
    def fmt(v: float | None, unit: float = 1.0, spec: str = ".4g") -> str:
        return "—" if v is None else format(v / unit, spec)

    lines = [
        "| method | n | d | cold s | warm s | compile s | peak RSS GB | XLA/tracemalloc GB | r |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        if "skipped" in c:
            lines.append(
                f"| {c['method']} | {c['n']} | {c['d']} | skipped: {c['skipped']} | | | | | |"
            )
            continue
        mem = c.get("xla_temp_bytes", c.get("tracemalloc_peak_bytes"))
        lines.append(
            f"| {c['method']} | {c['n']} | {c['d']} | {fmt(c['cold_s'])} | {fmt(c['warm_s'])} | "
            f"{fmt(c.get('compile_s'))} | {fmt(c['peak_rss_bytes'], 2**30, '.3f')} | "
            f"{fmt(mem, 2**30, '.3f')} | {c['value']:.6f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid, < 1 minute")
    parser.add_argument("--out", default="benchmarks/results/rsa_cost.json")
    parser.add_argument("--max-gb", type=float, default=16.0, help="per-cell memory limit")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="per-cell time limit")
    parser.add_argument("--repeats", type=int, default=5, help="warm repeats (at most)")
    parser.add_argument(
        "--warm-budget",
        type=float,
        default=30.0,
        help="repeat only while repeats × cold time stay under this (s)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        spec = json.loads(args.worker)
        print(
            json.dumps(worker(spec["method"], spec["n"], spec["d"], args.repeats, args.warm_budget))
        )
        return

    grid = QUICK if args.quick else FULL
    info = machine_info("rsatoolbox")
    if args.quick:
        args.repeats = min(args.repeats, 3)
    started = time.time()
    cells: list[dict[str, Any]] = []
    for d in grid["ds"]:
        for method in METHODS:
            prev = None
            for n in grid["ns"]:
                if method != "gram" and not args.quick and n not in SQUARE_NS:
                    continue
                reason = predicted_skip(method, n, d, prev, args)
                cell = (
                    run_cell(method, n, d, args)
                    if reason is None
                    else {"method": method, "n": n, "d": d, "skipped": reason}
                )
                print(json.dumps(cell), flush=True)
                cells.append(cell)
                if "skipped" not in cell:
                    prev = cell
    report = {
        "benchmark": "rsa_cost",
        "description": __doc__.split("Usage::")[0].strip(),
        "mode": "quick" if args.quick else "full",
        "grid": grid,
        "limits": {"max_gb": args.max_gb, "max_seconds": args.max_seconds},
        "machine": finish(info),
        "machine_note": "load averages (start and end) show other processes sharing the CPUs",
        **summarise(cells, grid),
        "cells": cells,
        "table_markdown": table(cells),
        "total_seconds": time.time() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(report["table_markdown"])
    print(f"speedup_vs_rsatoolbox: {report['speedup_vs_rsatoolbox']}  → {out}")


if __name__ == "__main__":
    main()
