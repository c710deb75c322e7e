"""Cost of XLA:CPU's fresh large buffers with glibc's default ``malloc`` against ``malloc`` on
transparent huge pages (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, :mod:`jaxprune.malloc`,
which the command line and the experiments turn on). Writes JSON.

Each setting runs in its own child process (the tunable is read at start):

* ``fresh_output_s``: ``jit(lambda z: z + 1)`` on a float32 array of ``--gib`` GiB, whose
  output is a fresh buffer at every call; ``donated_output_s``: the same with the input
  donated (the output reuses its buffer);
* ``candidate_s``: per layer of ``lenet5_mnist`` (64-64-256-256, random weights, ``--stimuli``
  uniform stimuli), one warm call of the vectorised PoZ search's candidate chunk (the chunk
  of :func:`jaxprune.search.poz.chunk_for`; per candidate), and ``twin_candidate_s``: one
  step of its sequential twin (a full forward pass and fit);
* ``peak_rss_mib``: the child's peak resident memory.

Times are the fastest of ``--reps`` calls after one that compiles.

    python benchmarks/malloc_pages.py            # 1 GiB, 5,000 stimuli (the MNIST protocol)
    python benchmarks/malloc_pages.py --quick    # 64 MiB, 300 stimuli
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from _machine import UserError, finish, machine_info, peak_rss_mib, run_main

from jaxprune.malloc import TUNABLE
from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"default": "glibc.malloc.hugetlb=0", "huge_pages": TUNABLE}


def fastest(fn, reps: int, fresh=None) -> float:
    """Fastest wall time of ``reps`` calls of ``fn(*fresh())`` after a first, compiling call."""
    import jax

    args = fresh() if fresh else ()
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        args = fresh() if fresh else ()
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def buffer_costs(gib: float, reps: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    z = jnp.ones(int(gib * 2**30 / 4), jnp.float32)
    plain = jax.jit(lambda a: a + 1)
    donated = jax.jit(lambda a: a + 1, donate_argnums=0)
    return {"fresh_output_s": fastest(plain, reps, lambda: (z,)),
            "donated_output_s": fastest(donated, reps, lambda: (z + 0,))}


def search_costs(n: int, reps: int) -> dict[str, dict[str, float] | float]:
    """Per layer, one warm candidate chunk of the vectorised search, and the twin's step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxprune import models
    from jaxprune.search import poz

    arch = models.architecture("lenet5_mnist")
    params = models.init_stack(arch, [0])
    x = jax.random.uniform(jax.random.key(1), (n, *arch.input_shape))
    config = poz.PoZConfig(threshold=0.8)
    st = poz._State(arch, params, x, config, None, None)
    out: dict[str, dict[str, float] | float] = {}
    readout = arch.index(arch.readout_layer)
    for index, layer in enumerate(arch.layers):
        chunk = poz.chunk_for(arch, index, n, config)
        z = st.layer_input(index)
        order = jnp.asarray(poz._padded_order(np.arange(layer.width), layer.width,
                                              layer.width + chunk))[None]
        z_prev = st.layer_input(index + 1) if index < readout else z
        call = partial(poz._layer_chunk_seeds, arch, index, chunk, None, st.params, st.masks,
                       st.fit, jax.nn.relu(z), z_prev, None, order, jnp.zeros(1, jnp.int32))
        out[layer.name] = {"chunk": chunk, "per_candidate_s": fastest(call, reps) / chunk}
    one = models.seed_slice(params, 0)
    masks = {k: v[0] for k, v in st.masks.items()}
    fit = models.seed_slice(st.fit, 0)
    trial = {**masks, "conv1": masks["conv1"].at[0].set(0.0)}
    out["twin_candidate_s"] = fastest(lambda: poz._fit_of_masks(arch, one, trial, fit, x), reps)
    return out


def child(args) -> None:
    result = {"glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
              **buffer_costs(args.gib, args.reps),
              "candidate_s": search_costs(args.stimuli, args.reps)}
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def run_setting(name: str, args) -> dict:
    env = {**os.environ, "GLIBC_TUNABLES": SETTINGS[name]}
    cmd = [sys.executable, __file__, "--child", "--gib", str(args.gib), "--stimuli",
           str(args.stimuli), "--reps", str(args.reps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {name} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="64 MiB, 300 stimuli")
    p.add_argument("--gib", type=float, help="array size, GiB (default 1; quick 1/16)")
    p.add_argument("--stimuli", type=int, help="search stimuli (default 5000; quick 300)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "malloc_pages.json"))
    args = p.parse_args(argv)
    args.gib = args.gib or (1 / 16 if args.quick else 1.0)
    args.stimuli = args.stimuli or (300 if args.quick else 5000)
    if args.gib <= 0 or args.stimuli < 10 or args.reps < 1:
        raise UserError("--gib must be positive, --stimuli at least 10, --reps at least 1")
    if args.child:
        return child(args)
    out = {"benchmark": "malloc_pages", "quick": args.quick, "gib": args.gib,
           "stimuli": args.stimuli, "reps": args.reps, "machine": machine_info()}
    out["settings"] = {name: run_setting(name, args) for name in SETTINGS}
    d, h = out["settings"]["default"], out["settings"]["huge_pages"]
    out["speedup"] = {"fresh_output": d["fresh_output_s"] / h["fresh_output_s"],
                      **{k: d["candidate_s"][k]["per_candidate_s"]
                         / h["candidate_s"][k]["per_candidate_s"]
                         for k in d["candidate_s"] if k != "twin_candidate_s"},
                      "twin": d["candidate_s"]["twin_candidate_s"]
                      / h["candidate_s"]["twin_candidate_s"]}
    finish(out["machine"])
    write_json(Path(args.out), out)
    print(json.dumps(out["speedup"], indent=1), f"\nwrote {args.out}")
    return out


if __name__ == "__main__":
    run_main(main)
