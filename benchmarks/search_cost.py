"""Cost of the PoZ search on the paper protocol: jaxprune vectorised vs its sequential twin vs a
plain PyTorch search written the way research code is (one forward pass per candidate, the
removed readout units deleted, an n×n correlation RSM as ``np.corrcoef``, Pearson of the upper
triangles). Writes JSON.

Protocol: ``lenet5_cifar`` trained briefly (Adam) on CIFAR-10 images from ../shared/data
(Gaussian stimuli where absent), n stimuli, threshold R² ≥ 0.8 to the unpruned readout RSM,
both directions, the same weights for the three implementations, whose masks are compared.

Measured: for each direction the vectorised search cold (compile included) and warm, the
sequential twin and the PyTorch search (top-level ``speedup_vs_torch``,
``speedup_vs_sequential`` over both directions, warm, and ``same_masks``); S = 50 stacked seeds
(the trained weights plus small per-seed noise) searched in one call against one seed alone;
the cost as n grows (jaxprune's whole bottom-up search, and the PyTorch search's cost per
candidate timed on its first candidates where its whole search would take hours); the peak
resident memory of each stage (Linux ``VmHWM``, reset before the stage).

    python benchmarks/search_cost.py            # full: n = 5,000; n up to 50,000; S = 50
    python benchmarks/search_cost.py --quick    # about a minute: n = 300, S = 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _machine import finish, machine_info, peak_rss_mib, reset_peak_rss

from jaxprune import models
from jaxprune.search.poz import DIRECTIONS, PoZConfig, poz_search
from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]


def cifar_stimuli(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` CIFAR-10 images (normalised) and labels from ../shared/data, else random."""
    try:
        from jaxprune.data import load_dataset

        train = load_dataset("cifar10", "train")
        idx = np.random.default_rng(seed).permutation(len(train.labels))[:n]
        sub = train.subset(idx)
        return sub.float_images(), sub.labels, "cifar10 (JPEG q75 copy, train split)"
    except Exception as e:  # noqa: BLE001 - the benchmark still runs without the data
        print(f"CIFAR-10 unavailable ({e}); using Gaussian stimuli")
        rng = np.random.default_rng(seed)
        return rng.normal(size=(n, 32, 32, 3)).astype(np.float32), None, "gaussian"


def trained_lenet(x, y, steps: int, seed: int = 0):
    """lenet5_cifar trained briefly (Adam) so that its units have realistic sparsity."""
    import optax

    arch = models.architecture("lenet5_cifar")
    params = models.init_params(arch, jax.random.key(seed))
    if y is None or steps == 0:
        return arch, params
    tx = optax.adam(1e-3)
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        def loss(p):
            logits, _ = models.apply(arch, p, None, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(y), 64)
        params, state = step(params, state, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    return arch, params


def correlation_rows(a: np.ndarray) -> np.ndarray:
    """``np.corrcoef(a)`` (float64), except that a constant row correlates 0 with everything
    (``np.corrcoef`` gives NaN there; jaxprune defines it as 0)."""
    c = a.astype(np.float64) - a.mean(axis=1, keepdims=True)
    norm = np.sqrt((c * c).sum(axis=1, keepdims=True))
    z = np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)
    return z @ z.T


def torch_search(arch, params, x, direction, threshold=0.8, wrap_fit=None):
    """The reference-style search: a PyTorch LeNet, one forward per candidate."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    p = jax.tree.map(np.asarray, params)

    def conv_w(name):
        return torch.from_numpy(p[name]["kernel"].transpose(3, 2, 0, 1).copy())

    def bias(name):
        return torch.from_numpy(p[name]["bias"].copy())

    def fc_w(name, chw=None):
        k = p[name]["kernel"]
        if chw is not None:  # our HWC flattening -> torch's CHW
            c, h, w = chw
            k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        return torch.from_numpy(k.T.copy())

    weights = {
        "conv1": (conv_w("conv1"), bias("conv1")),
        "conv2": (conv_w("conv2"), bias("conv2")),
        "fc1": (fc_w("fc1", (16, 5, 5)), bias("fc1")),
        "fc2": (fc_w("fc2"), bias("fc2")),
    }
    F = torch.nn.functional

    def forward(masks):
        with torch.no_grad():
            h = F.relu(F.conv2d(xt, *weights["conv1"])) * masks["conv1"].view(1, -1, 1, 1)
            h = F.max_pool2d(h, 2)
            h = F.relu(F.conv2d(h, *weights["conv2"])) * masks["conv2"].view(1, -1, 1, 1)
            h = torch.flatten(F.max_pool2d(h, 2), 1)
            h = F.relu(F.linear(h, *weights["fc1"])) * masks["fc1"]
            return F.relu(F.linear(h, *weights["fc2"])) * masks["fc2"], h

    def acts(masks):
        with torch.no_grad():
            a1 = F.relu(F.conv2d(xt, *weights["conv1"])) * masks["conv1"].view(1, -1, 1, 1)
            a2 = F.relu(F.conv2d(F.max_pool2d(a1, 2), *weights["conv2"]))
            a2 = a2 * masks["conv2"].view(1, -1, 1, 1)
            a3 = F.relu(F.linear(torch.flatten(F.max_pool2d(a2, 2), 1), *weights["fc1"]))
            a3 = a3 * masks["fc1"]
            a4 = F.relu(F.linear(a3, *weights["fc2"]))
            return {"conv1": a1, "conv2": a2, "fc1": a3, "fc2": a4}

    def fit(readout, target_rsm):
        rsm = correlation_rows(readout.numpy())
        iu = np.triu_indices(len(rsm), 1)
        r = np.corrcoef(rsm[iu], target_rsm[iu])[0, 1]
        return r * r

    if wrap_fit is not None:
        fit = wrap_fit(fit)
    masks = {n: torch.ones(w) for n, w in arch.widths.items()}
    unpruned = acts(masks)
    target = correlation_rows(unpruned["fc2"].numpy())
    names = list(arch.layer_names)
    if direction == "top-down":
        names = names[::-1]
    for name in names:
        a = unpruned[name]
        dims = (0, 2, 3) if a.ndim == 4 else (0,)
        poz = (a == 0).float().mean(dim=dims).numpy()
        order = np.argsort(-poz, kind="stable")
        for k in range(1, len(order)):
            trial = {**masks, name: masks[name].clone()}
            trial[name][torch.from_numpy(order[:k].copy())] = 0.0
            readout, _ = forward(trial)
            kept = torch.from_numpy(np.flatnonzero(trial["fc2"].numpy() > 0))
            if fit(readout[:, kept], target) < threshold:  # removed units deleted
                break
            masks = trial
    return {n: m.numpy() for n, m in masks.items()}


PEAKS: dict[str, float] = {}


def timed(fn, label: str | None = None):
    """``(fn(), seconds)``; with ``label``, the stage's peak RSS goes to ``PEAKS[label]``."""
    if label:
        reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if label:
        PEAKS[label] = peak_rss_mib()
    return out, seconds


def torch_cost_per_candidate(arch, params, x, candidates: int = 3) -> float:
    """Seconds per candidate (one forward pass and one fit) of the PyTorch search, from the
    interval between consecutive fits of its first conv1 candidates (setup excluded); for the
    growth in n, where its whole search would take hours."""
    ends: list[float] = []

    class Enough(Exception):
        pass

    def timing_fit(fit):
        def wrapped(*a):
            fit(*a)
            ends.append(time.perf_counter())
            if len(ends) > candidates:
                raise Enough
            return 1.0  # keep going: every candidate passes
        return wrapped

    try:
        torch_search(arch, params, x, "bottom-up", wrap_fit=timing_fit)
    except Enough:
        pass
    if len(ends) <= candidates:
        raise RuntimeError("the PyTorch search evaluated too few candidates to time")
    return (ends[-1] - ends[0]) / candidates


def same(a, b):
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stimuli", type=int, help="stimuli of the protocol (default 5000)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/search_cost.json"))
    args = parser.parse_args(argv)
    n = args.stimuli or (300 if args.quick else 5000)
    steps = 100 if args.quick else 1500
    scaling_n = [250, 500] if args.quick else [1000, 5000, 10000, 20000, 50000]
    torch_scaling_n = [250, 500] if args.quick else [1000, 5000, 10000]
    seeds_many = 2 if args.quick else 50

    x_all, y_all, source = cifar_stimuli(max(max(scaling_n), n) + 0)
    arch, params = trained_lenet(x_all, y_all, steps)
    x = x_all[:n]
    config = PoZConfig(threshold=0.8)
    out = {"machine": machine_info("torch"),
           "protocol": {"network": "lenet5_cifar", "stimuli": n, "threshold": 0.8,
                        "stimulus_source": source, "training_steps": steps},
           "directions": {}}
    all_same = True
    total = {"vectorised_warm": 0.0, "vectorised_cold": 0.0, "sequential": 0.0, "torch": 0.0}
    for direction in DIRECTIONS:
        cfg = PoZConfig(direction=direction, threshold=config.threshold)
        (vec,), cold = timed(lambda cfg=cfg: poz_search(arch, params, x, cfg))
        (vec,), warm = timed(lambda cfg=cfg: poz_search(arch, params, x, cfg),
                             f"vectorised {direction}")
        (seq,), t_seq = timed(lambda cfg=cfg: poz_search(arch, params, x, cfg, sequential=True),
                              f"sequential {direction}")
        torch_masks, t_torch = timed(lambda d=direction: torch_search(arch, params, x, d),
                                     f"torch {direction}")
        agree = same(vec.masks, seq.masks) and same(vec.masks, torch_masks)
        all_same &= agree
        out["directions"][direction] = {
            "kept": vec.kept, "compression_rate": vec.compression_rate,
            "vectorised_cold_s": cold, "vectorised_warm_s": warm, "sequential_s": t_seq,
            "torch_s": t_torch, "same_masks": agree,
            "candidates_evaluated": sum(len(t.scores) for t in seq.trace),
        }
        total["vectorised_warm"] += warm
        total["vectorised_cold"] += cold
        total["sequential"] += t_seq
        total["torch"] += t_torch
        print(direction, out["directions"][direction])
    out["totals_s"] = total
    out["speedup_vs_torch"] = total["torch"] / total["vectorised_warm"]
    out["speedup_vs_torch_cold"] = total["torch"] / total["vectorised_cold"]
    out["speedup_vs_sequential"] = total["sequential"] / total["vectorised_warm"]
    out["same_masks"] = bool(all_same)

    stack = models.init_stack(arch, range(seeds_many))
    stack = jax.tree.map(lambda s, p: s * 0 + p, stack, params)  # same trained weights ...
    noise = models.init_stack(arch, range(100, 100 + seeds_many))
    stack = jax.tree.map(lambda p, e: p + 0.05 * e, stack, noise)  # ... perturbed per seed
    seed_batch = min(10, seeds_many)
    first = jax.tree.map(lambda a: a[:seed_batch], stack)
    _, t_first = timed(lambda: poz_search(arch, first, x, config, stacked=True,
                                          seed_batch=seed_batch))
    many, t_many = timed(lambda: poz_search(arch, stack, x, config, stacked=True,
                                            seed_batch=seed_batch), f"vectorised S={seeds_many}")
    _, t_one = timed(lambda: poz_search(arch, params, x, config), "vectorised S=1")
    out["seeds"] = {"S": seeds_many, "seed_batch": seed_batch, "bottom_up_s": t_many,
                    "per_seed_s": t_many / seeds_many, "S1_bottom_up_s": t_one,
                    "first_batch_cold_s": t_first,
                    "kept_per_seed": [r.kept for r in many],
                    "note": "S networks = the trained weights plus 5% init-scale noise each; "
                            "timed warm (a first batch of seed_batch seeds compiled the "
                            "programs); per_seed_s vs S1_bottom_up_s is the gain of stacking"}

    scaling = []
    for m in scaling_n:
        xm = jnp.asarray(x_all[:m])
        poz_search(arch, params, xm, config)
        (res,), t = timed(lambda xm=xm: poz_search(arch, params, xm, config), f"vectorised n={m}")
        candidates = sum(len(tr.scores) for tr in res.trace)
        entry = {"stimuli": m, "bottom_up_warm_s": t, "candidates_evaluated": candidates,
                 "per_candidate_s": t / candidates, "peak_rss_mib": PEAKS[f"vectorised n={m}"]}
        if m in torch_scaling_n:
            reset_peak_rss()
            entry["torch_per_candidate_s"] = torch_cost_per_candidate(arch, params, x_all[:m])
            entry["torch_peak_rss_mib"] = peak_rss_mib()
            entry["torch_over_jaxprune_per_candidate"] = (entry["torch_per_candidate_s"]
                                                          / entry["per_candidate_s"])
        scaling.append(entry)
        print("n", entry)
    out["scaling"] = scaling
    out["peak_rss_mib"] = dict(PEAKS)
    out["peak_rss_note"] = ("peak resident memory of the whole process during each stage "
                            "(Linux VmHWM reset before the stage), MiB; includes the loaded "
                            "data set and libraries")
    finish(out["machine"])
    write_json(args.out, out)
    print(f"speedup vs torch {out['speedup_vs_torch']:.1f}x, vs sequential "
          f"{out['speedup_vs_sequential']:.1f}x, same masks {out['same_masks']}; "
          f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
