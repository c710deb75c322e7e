"""Cost and exactness of the PoZ searches beyond one greedy pass (``alternate``, ``global``,
``global-alternate``) against the papers' two directions, on trained networks: the vectorised
search (cold: compilation included; warm) and its sequential twin (one forward pass per
candidate) on the same seeds, with their masks compared. Writes JSON.

Protocol (the whole-network paper's): a checkpoint of ``experiments/aim1.py`` (``lenet5_cifar``
on CIFAR-10), the first ``--stimuli`` training images (class-interleaved), R² ≥ 0.8 to the
unpruned readout RSM.

    python benchmarks/directions_cost.py --checkpoint runs/aim1/cifar10/seeds_000-004/model
    python benchmarks/directions_cost.py --checkpoint C --quick   # 500 stimuli, one seed
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from _machine import finish, machine_info

from jaxprune.pipeline import load_trained, stimulus_set
from jaxprune.search.poz import POZ_DIRECTIONS, PoZConfig, poz_search
from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def same(a, b) -> bool:
    return all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)


def measure(arch, params, x, direction: str, threshold: float) -> dict:
    """One direction on every seed of ``params``: vectorised cold and warm, sequential."""
    cfg = PoZConfig(direction=direction, threshold=threshold)
    run = lambda seq: poz_search(arch, params, x, cfg, stacked=True,  # noqa: E731
                                 sequential=seq)
    _, cold = timed(lambda: run(False))
    vec, warm = timed(lambda: run(False))
    seq, sequential = timed(lambda: run(True))
    return {"vectorised_cold_s": cold, "vectorised_warm_s": warm, "sequential_s": sequential,
            "speedup_vs_sequential": sequential / warm,
            "same_masks": all(same(a, b) for a, b in zip(vec, seq, strict=True)),
            "candidates_evaluated": [sum(len(t.scores) for t in r.trace) for r in vec],
            "compression_rate": [r.compression_rate for r in vec],
            "fit": [r.final_score for r in vec], "passes": [r.config["passes"] for r in vec]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="an experiments/aim1.py model folder")
    p.add_argument("--seeds", type=int, default=1, help="the checkpoint's first N seeds")
    p.add_argument("--stimuli", type=int, default=5000)
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--quick", action="store_true", help="500 stimuli, one seed")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                   "directions_cost.json")
    args = p.parse_args(argv)
    n = 500 if args.quick else args.stimuli
    arch, params, meta = load_trained(args.checkpoint)
    params = jax.tree.map(lambda a: a[: 1 if args.quick else args.seeds], params)
    x = stimulus_set(meta["data"], n, split="train").float_images()
    info = machine_info()
    t0 = time.perf_counter()
    results = {d: measure(arch, params, x, d, args.threshold) for d in POZ_DIRECTIONS}
    payload = {"benchmark": "directions_cost", "quick": args.quick,
               "checkpoint": str(args.checkpoint), "network": arch.family,
               "data": meta["data"], "stimuli": n, "threshold": args.threshold,
               "seeds": int(jax.tree.leaves(params)[0].shape[0]), "directions": results,
               "same_masks": all(r["same_masks"] for r in results.values()),
               "total_runtime_s": time.perf_counter() - t0, "machine": finish(info)}
    write_json(args.out, payload)
    for d, r in results.items():
        print(f"{d:17s} cold {r['vectorised_cold_s']:6.2f} s  warm {r['vectorised_warm_s']:6.2f}"
              f" s  sequential {r['sequential_s']:7.2f} s  ×{r['speedup_vs_sequential']:5.1f}"
              f"  same masks {r['same_masks']}  compression {np.mean(r['compression_rate']):.2f}")
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
