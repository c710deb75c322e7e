"""Run by tests/test_sharding.py in a process of its own with 8 forced CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``): the same computations unsharded and
sharded, written as JSON to the path given on the command line."""

from __future__ import annotations

import json
import sys
import time

import jax
import numpy as np
from helpers import SMALL_NETWORKS, numpy_stimuli

from jaxprune import models
from jaxprune.search import cka_prune, fraction_curve, poz
from jaxprune.search.poz import PoZConfig, poz_search
from jaxprune.train import TrainConfig, fit

SEEDS = 5  # does not divide the 8 devices
CHUNK_PROGRAM = poz._layer_chunk_seeds


def spy_on_chunks(layouts: list) -> None:
    """Record, for every candidate chunk the search evaluates, over how many devices its fits
    ``[S, chunk]`` lie and how they are split (the sharding actually used)."""
    def spied(*args):
        fits, z_last = CHUNK_PROGRAM(*args)
        layouts.append([len(fits.sharding.device_set), str(fits.sharding.spec)
                        if hasattr(fits.sharding, "spec") else "single"])
        return fits, z_last

    poz._layer_chunk_seeds = spied


def search_runs() -> dict:
    """Per (direction, sharding): each seed's masks, final fit and the chunks' layouts."""
    arch, params, x = lenet()
    out = {}
    for direction, shardings in [("bottom-up", (None, "seeds", "candidates"))]:
        for sharding in shardings:
            layouts: list = []
            spy_on_chunks(layouts)
            cfg = PoZConfig(direction=direction, threshold=0.9, chunk_size=4, sharding=sharding,
                            layers=("conv2", "fc2"))  # a conv feeding a dense layer; the readout
            results = poz_search(arch, params, x, cfg, stacked=True, seed_batch=3)
            out[f"{direction}/{sharding}"] = {"layouts": layouts, "results": [
                {"masks": {k: np.asarray(v).tolist() for k, v in r.masks.items()},
                 "final_score": r.final_score, "seed": r.seed} for r in results]}
    return out


def lenet():
    arch = models.architecture("lenet5_mnist", **SMALL_NETWORKS["lenet5_mnist"])
    return arch, models.init_stack(arch, list(range(SEEDS))), numpy_stimuli(arch, 5, n=40)


def train_runs() -> dict:
    """Per sharding: the trained parameters, best epochs and histories of 5 seeds."""
    arch = lenet()[0]
    x = numpy_stimuli(arch, 1, n=160)
    y = np.random.default_rng(2).integers(0, 10, 160)
    out = {}
    for sharding in (None, "seeds"):
        config = TrainConfig(seeds=tuple(range(SEEDS)), epochs=2, batch_size=32, patience=1,
                             sharding=sharding)
        r = fit(arch, x, y, config, progress=False, verbose=False)
        out[str(sharding)] = {
            "params": [np.asarray(v).tolist() for v in jax.tree.leaves(r.params)],
            "best_epoch": r.best_epoch.tolist(),
            "history": {k: np.nan_to_num(v, nan=-1.0).tolist() for k, v in r.history.items()}}
    return out


def curve_and_cka_runs() -> dict:
    """Fraction curves of 5 seeds (unsharded, seeds) and CKA pruning of one network
    (unsharded, candidates)."""
    arch, params, x = lenet()
    out = {}
    for sharding in (None, "seeds"):
        curves = fraction_curve(arch, params, x, "fc2", n_random=3, stacked=True,
                                sharding=sharding)
        out[f"curves/{sharding}"] = [[c.fit, c.random_fits] for c in curves.curves]
    one = jax.tree.map(lambda p: p[0], params)
    for sharding in (None, "candidates"):
        r = cka_prune(arch, one, x, compare="readout", fraction=0.3, sharding=sharding)
        out[f"cka/{sharding}"] = [np.asarray(m).tolist() for m in r.masks.values()]
    return out


def main(path: str) -> None:
    report, seconds = {"devices": jax.local_device_count()}, {}
    for key, run in [("search", search_runs), ("train", train_runs),
                     ("other", curve_and_cka_runs)]:
        t0 = time.perf_counter()
        report[key] = run()
        seconds[key] = time.perf_counter() - t0
    report["seconds"] = seconds
    with open(path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
