"""What tf32/bfloat16 matmuls do to the PoZ search (``PoZConfig.precision``): per precision
and direction, the wall time (warm), the fit reached and, per layer, the units whose keep/remove
decision differs from the float32 search. Writes JSON.

Protocol: ``lenet5_cifar`` trained briefly (Adam, as in ``search_cost.py``) on CIFAR-10 images
from ../shared/data (Gaussian stimuli where absent), n stimuli, R² ≥ 0.8 to the unpruned
readout RSM. XLA:CPU computes all three precisions in float32 (no difference is expected there);
the figures that matter come from an accelerator (``benchmarks/device_suite.sh``).

    python benchmarks/precision_effect.py            # n = 5,000, 300 training steps
    python benchmarks/precision_effect.py --quick    # n = 300, 50 steps
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from _machine import finish, machine_info
from search_cost import cifar_stimuli, trained_lenet

from jaxprune.search.poz import DIRECTIONS, MATMUL_PRECISIONS, PoZConfig, poz_search
from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]


def search(arch, params, x, direction: str, precision: str):
    """The search, warm (its programs compiled by a first call), and its wall time."""
    cfg = PoZConfig(direction=direction, precision=precision)
    poz_search(arch, params, x, cfg)
    t0 = time.perf_counter()
    result = poz_search(arch, params, x, cfg)[0]
    return result, time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="n = 300, 50 training steps")
    p.add_argument("--stimuli", type=int, default=5000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                   "precision_effect.json")
    args = p.parse_args(argv)
    n, steps = (300, 50) if args.quick else (args.stimuli, 300)
    x, y, source = cifar_stimuli(n)
    arch, params = trained_lenet(x, y, steps)
    info = machine_info()
    rows = []
    for direction in DIRECTIONS:
        reference, _ = search(arch, params, x, direction, "float32")
        for precision in MATMUL_PRECISIONS:
            result, wall = search(arch, params, x, direction, precision)
            differ = {k: int(np.sum(result.masks[k] != reference.masks[k]))
                      for k in reference.masks}
            rows.append({"direction": direction, "precision": precision, "warm_s": wall,
                         "fit": result.final_score, "kept": result.kept,
                         "units_decided_otherwise": differ,
                         "same_masks_as_float32": not any(differ.values())})
            print(f"{direction:9s} {precision:8s} {wall:6.2f} s  fit {result.final_score:.4f}"
                  f"  decided otherwise {differ}")
    payload = {"benchmark": "precision_effect", "quick": args.quick, "stimuli": n,
               "stimuli_source": source, "training_steps": steps, "network": arch.family,
               "device": str(jax.devices()[0]), "results": rows, "machine": finish(info)}
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
