"""Cost of category-circuit extraction: the batched sweep (every category × sparsity level of
a group in one chunked ``lax.map`` of ``vmap``) against its twin (one category and one level
per call), on the same network and images, with a check that both give the same results.

Problem: ``lenet5_cifar`` (the experiment's trained seed 0 from ``runs/circuits`` when it is
there, else trained here for ``--epochs`` on a stratified CIFAR-10 subset), circuits of all 10
categories, a 20-level sweep (``1 − 0.7^k``) of the fully connected group and then of the conv
kernels, 4 scoring and 20 extraction training images per class. Both paths run the whole
:func:`jaxprune.search.circuits.extract_circuits` (scores, both sweeps, effective masks); the
scores and the rest are the same code in both, the sweeps differ. Cold = first call after
``jax.clear_caches()`` (compilation included); warm = median of ``--repeats`` more calls.
``same_results``: the same kept levels (sparsities) and masks (item and effective) for every
category; the detail also counts the swept (category, level) pairs whose CSA differs (float32
rounding of batched against single matmuls can move an image across a decision boundary).

    python benchmarks/circuits_cost.py --out benchmarks/results/circuits_cost.json
    python benchmarks/circuits_cost.py --quick --out benchmarks/results/circuits_cost_quick.json
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

from jaxprune import checkpoint
from jaxprune.data import load_dataset
from jaxprune.models import architecture, seed_slice
from jaxprune.pipeline.circuits import CircuitJob, image_sets
from jaxprune.search.circuits import CircuitConfig, _chunk, default_levels, extract_circuits
from jaxprune.search.result import write_json
from jaxprune.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
FULL = {"levels": 20, "scoring": 4, "extraction": 20, "train_per_class": 1000, "epochs": 3,
        "widths": None, "repeats": 2}
QUICK = {"levels": 5, "scoring": 2, "extraction": 6, "train_per_class": 100, "epochs": 1,
         "widths": (6, 16, 120, 84), "repeats": 1}


def network(cfg: dict[str, Any], ckpt: Path | None):
    """(arch, params, description): seed 0 of a checkpoint, or a briefly trained network."""
    if ckpt is not None and checkpoint.is_checkpoint(ckpt):
        c = checkpoint.restore(ckpt)
        return c.architecture, seed_slice(c.params, 0), f"{ckpt} seed 0"
    train = load_dataset("cifar10", "train")
    idx = np.sort(np.concatenate([np.flatnonzero(train.labels == c)[:cfg["train_per_class"]]
                                  for c in range(10)]))
    train = train.subset(idx)
    arch = architecture("lenet5_cifar", **({"widths": cfg["widths"]} if cfg["widths"] else {}))
    result = fit(arch, train.float_images(), train.labels,
                 TrainConfig(epochs=cfg["epochs"], seeds=(0,)), progress=False, verbose=False)
    what = f"trained here: {len(idx)} CIFAR-10 images, {cfg['epochs']} epoch(s), Adam 1e-3"
    return arch, seed_slice(result.params, 0), what


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def same(a, b) -> dict[str, Any]:
    """How two :class:`Circuits` agree: kept levels (sparsities) and masks exactly (what
    ``same_results`` requires), and the CSA curves and biases of every swept pair (float32
    rounding of batched against single matmuls can flip an image at a decision boundary)."""
    csa = np.concatenate([np.ravel(a.groups[g].csa - b.groups[g].csa) for g in a.groups])
    beta = np.concatenate([np.ravel(a.groups[g].beta - b.groups[g].beta) for g in a.groups])
    return {
        "kept_levels": all(np.array_equal(a.groups[g].kept_level, b.groups[g].kept_level)
                           for g in a.groups),
        "item_masks": all(np.array_equal(a.items[k], b.items[k]) for k in a.items),
        "effective_masks": all(np.array_equal(a.effective[k], b.effective[k])
                               for k in a.effective),
        "final_bias_max_abs_diff": float(np.max(np.abs(a.beta - b.beta))),
        "csa_pairs_differing": int(np.count_nonzero(csa)), "csa_pairs": int(csa.size),
        "csa_max_abs_diff": float(np.max(np.abs(csa))),
        "bias_max_abs_diff": float(np.max(np.abs(beta))),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem, under a minute")
    parser.add_argument("--out", default=None, help="JSON path")
    parser.add_argument("--checkpoint", default=None,
                        help="trained lenet5_cifar (default runs/circuits/cifar10/model)")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "circuits_cost_quick.json" if args.quick else "circuits_cost.json")
    t_start = time.perf_counter()
    info = machine_info()
    ckpt = None if args.quick else Path(args.checkpoint or ROOT / "runs/circuits/cifar10/model")
    arch, params, trained = network(cfg, ckpt)
    train = load_dataset("cifar10", "train")
    job = CircuitJob(None, cfg["scoring"], cfg["extraction"], 1,
                     CircuitConfig(0.9, default_levels(cfg["levels"])))
    sets = image_sets((train.float_images(), train.labels), None, job, (train.name, ""))
    cats = list(range(10))

    def run(sequential: bool):
        return extract_circuits(arch, params, sets["scoring"], sets["extraction"], cats,
                                job.circuit, sequential=sequential)

    jax.clear_caches()
    fast, fast_cold = timed(lambda: run(False))
    fast_warm = [timed(lambda: run(False))[1] for _ in range(cfg["repeats"])]
    print(f"batched: cold {fast_cold:.1f} s, warm {fast_warm}", flush=True)
    jax.clear_caches()
    slow, slow_cold = timed(lambda: run(True))
    slow_warm = [timed(lambda: run(True))[1] for _ in range(cfg["repeats"])]
    print(f"sequential: cold {slow_cold:.1f} s, warm {slow_warm}", flush=True)
    agree = same(fast, slow)
    warm_fast, warm_slow = statistics.median(fast_warm), statistics.median(slow_warm)
    pairs = sum(len(g.counts) for g in fast.groups.values()) * len(cats)
    result = {
        "benchmark": "circuits_cost", "mode": "quick" if args.quick else "full",
        "machine": info,
        "problem": {"network": arch.family, "widths": list(arch.widths.values()),
                    "network_source": trained, "categories": cats, "levels": cfg["levels"],
                    "sweep_pairs": pairs, "groups": {g: s.layers for g, s in fast.groups.items()},
                    "scoring_images": len(sets["scoring"][1]),
                    "extraction_images": len(sets["extraction"][1]),
                    "data": f"{train.name} ({train.source}; JPEG q75 copy)",
                    "threshold": job.circuit.threshold},
        "batched": {"cold_s": fast_cold, "warm_s": warm_fast, "warm_runs_s": fast_warm},
        "sequential": {"cold_s": slow_cold, "warm_s": warm_slow, "warm_runs_s": slow_warm,
                       "per_pair_ms": 1e3 * warm_slow / pairs},
        "speedup_vs_sequential": warm_slow / warm_fast,
        "speedup_vs_sequential_cold": slow_cold / fast_cold,
        "same_results": bool(agree["kept_levels"] and agree["item_masks"]
                             and agree["effective_masks"]),
        "same_results_detail": agree, "chunk": _chunk(arch, params,
                                                      len(sets["extraction"][1]), pairs),
        "kept_sparsity": {g: s.sparsity.tolist() for g, s in fast.groups.items()},
    }
    finish(result["machine"])
    result["seconds"] = time.perf_counter() - t_start
    write_json(out_path, result)
    print(f"wrote {out_path}: speedup {result['speedup_vs_sequential']:.1f}x warm, "
          f"{result['speedup_vs_sequential_cold']:.1f}x cold, same results "
          f"{result['same_results']}")
    return result


if __name__ == "__main__":
    main()
