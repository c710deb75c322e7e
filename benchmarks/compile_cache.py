"""What JAX's persistent compilation cache does to a cold ``jaxprune prune``: the same command
in fresh processes with the cache off, on with an empty cache (populating it), on again (warm).

Full protocol (the README's main search): ``jaxprune prune --checkpoint C --direction both
--threshold 0.8 --stimuli 5000`` on a ``lenet5_cifar`` checkpoint trained on CIFAR-10 (one
seed, one epoch, trained here when ``--checkpoint`` is not given; needs CIFAR-10 under
../shared/data). Quick: an ``mlp`` on the embedded digits, 300 stimuli. Each run's wall time
includes Python and JAX start-up; the load average is read before and after each run (the
machine may be shared); the three runs are repeated in turn (``--repeats``, medians
reported). Writes JSON.

    python benchmarks/compile_cache.py --out benchmarks/results/compile_cache.json
    python benchmarks/compile_cache.py --quick --out /tmp/compile_cache_quick.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import finish, machine_info

from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]

FULL = {"model": "lenet5_cifar", "data": "cifar10", "stimuli": 5000, "epochs": 1}
QUICK = {"model": "mlp", "data": "digits", "stimuli": 300, "epochs": 1}

#: (label, extra CLI flags, whether the xla/ folder is emptied first)
RUNS = (("cache off (cold)", ["--no-compile-cache"], True),
        ("cache on, first run (populating)", [], True),
        ("cache on, second run (warm cache)", [], False))


def jaxprune(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of ``python -m jaxprune.cli ARGS`` in a fresh process (fails loudly)."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jaxprune.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"jaxprune {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def folder_stats(folder: Path) -> dict[str, int]:
    """Files and bytes under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return {"entries": len(files), "bytes": sum(p.stat().st_size for p in files)}


def timed_runs(command: list[str], env: dict[str, str], xla: Path,
               repeat: int) -> list[dict[str, Any]]:
    """The three runs of ``RUNS``, each with the load average before and after."""
    rows = []
    for label, flags, empty in RUNS:
        if empty:
            shutil.rmtree(xla, ignore_errors=True)
        load_before = list(os.getloadavg())
        seconds = jaxprune([*command, *flags], env)
        rows.append({"run": label, "repeat": repeat, "flags": flags,
                     "seconds": round(seconds, 2), "load_average_before": load_before,
                     "load_average_after": list(os.getloadavg()), "cache": folder_stats(xla)})
        print(f"{label}: {seconds:.1f} s (load {load_before[0]:.2f})", flush=True)
    return rows


def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of each run kind over the repeats."""
    return {label: round(statistics.median(r["seconds"] for r in rows if r["run"] == label), 2)
            for label, _, _ in RUNS}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mlp on digits, 300 stimuli")
    parser.add_argument("--out", required=True, help="JSON path")
    parser.add_argument("--checkpoint", help="an OUT/model folder to prune (default: train one)")
    parser.add_argument("--work", help="folder for the checkpoint and caches (default: a "
                        "temporary one)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="times the three runs are repeated, in turn (medians reported)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    work = Path(args.work or tempfile.mkdtemp(prefix="jaxprune_compile_cache_"))
    env = {**os.environ, "JAXPRUNE_CACHE": str(work / "cache"), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("JAXPRUNE_NO_COMPILE_CACHE", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    info = machine_info()
    checkpoint, train_seconds = args.checkpoint, None
    if checkpoint is None:  # also fills the decoded-data cache, so the runs below read it
        checkpoint = str(work / "run" / "model")
        train_seconds = jaxprune(["train", "--model", cfg["model"], "--data", cfg["data"],
                                  "--seeds", "1", "--epochs", str(cfg["epochs"]), "--out",
                                  str(work / "run"), "--no-progress", "--no-compile-cache"], env)
    command = ["prune", "--checkpoint", checkpoint, "--data", cfg["data"], "--direction", "both",
               "--threshold", "0.8", "--stimuli", str(cfg["stimuli"]), "--no-progress"]
    rows = [row for k in range(args.repeats)
            for row in timed_runs(command, env, work / "cache" / "xla", k)]
    median = medians(rows)
    off, first, warm = median.values()
    result = {"command": "jaxprune " + " ".join(command), "protocol": cfg,
              "checkpoint_train_seconds": train_seconds, "median_seconds": median, "runs": rows,
              "warm_saving_seconds": round(off - warm, 2),
              "warm_speedup": round(off / warm, 2), "populating_overhead_seconds":
              round(first - off, 2), "machine": finish(info)}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
