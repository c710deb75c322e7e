"""Cost of the PoZ search on the paper protocol: jaxprune vectorised vs its sequential twin vs a
plain PyTorch search written the way research code is (one forward pass per candidate, the
removed readout units deleted, an n×n correlation RSM as ``np.corrcoef``, Pearson of the upper
triangles). Writes JSON.

Protocol: ``lenet5_cifar`` trained briefly (Adam) on CIFAR-10 images from ../shared/data
(Gaussian stimuli where absent), n stimuli, threshold R² ≥ 0.8 to the unpruned readout RSM,
both directions, the same weights for the three implementations, whose masks are compared.
The network is trained in a child process with jaxprune's CPU training flag (as ``jaxprune
train`` runs); the searches are timed without it, as the library runs them.

Measured: for each direction the vectorised search cold (compile included) and warm, the
sequential twin and the PyTorch search (top-level ``speedup_vs_torch``,
``speedup_vs_sequential`` over both directions, warm, and ``same_masks``); S = 50 stacked seeds
(the trained weights plus small per-seed noise) searched in one call against one seed alone;
the cost as n grows (jaxprune's whole bottom-up search, and the PyTorch search's cost per
candidate timed on its first candidates where its whole search would take hours); the peak
resident memory of each stage (Linux ``VmHWM``, reset before the stage).

The MNIST protocol (``--protocol mnist``, written to ``search_cost_mnist.json``):
``lenet5_mnist`` (64-64-256-256) trained briefly on the first 5,000 MNIST training images,
which are the stimuli, both directions. Its vectorised search takes minutes here, its twin and
its PyTorch search hours, so by default the vectorised search is timed once, compilation
included (``--cold-only``; ``speedup_basis`` says so), and the other two are estimated per
layer: the cost per candidate of the layer's first ``--sequential-candidates`` /
``--torch-candidates`` candidates (3), evaluated from the masks the jaxprune search had
reached at that layer (their fits, and PyTorch's PoZ order, compared with jaxprune's trace),
times the candidates the search evaluated there; the JSON says so (``sequential_measured``,
``torch_measured``). ``per_layer`` gives, for every layer, the candidates evaluated and the
wall time of each implementation there.

    python benchmarks/search_cost.py            # full: n = 5,000; n up to 50,000; S = 50
    python benchmarks/search_cost.py --quick    # about a minute: n = 300, S = 2
    python benchmarks/search_cost.py --protocol mnist
    python benchmarks/search_cost.py --protocol mnist --quick   # 8-8-32-32 widths, n = 100
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _machine import finish, machine_info, peak_rss_mib, reset_peak_rss

from jaxprune import models
from jaxprune.search.poz import DIRECTIONS, PoZConfig, poz_search
from jaxprune.search.result import write_json

ROOT = Path(__file__).resolve().parents[1]


PROTOCOLS = {  # name: (network, data set, stimuli chosen)
    "cifar10": ("lenet5_cifar", "cifar10", "random training images (seed 0)"),
    "mnist": ("lenet5_mnist", "mnist", "the first training images, file order"),
}


QUICK_MNIST_WIDTHS = (8, 8, 32, 32)  # --quick --protocol mnist: a narrow lenet5_mnist


def protocol_stimuli(protocol: str, n: int, seed: int = 0) -> tuple[np.ndarray, Any, str]:
    """``n`` training images (normalised) and labels of the protocol's data set from
    ../shared/data (CIFAR-10: a random subset; MNIST: the first ``n``), else Gaussian."""
    network, name, _ = PROTOCOLS[protocol]
    try:
        from jaxprune.data import load_dataset

        train = load_dataset(name, "train")
        idx = (np.random.default_rng(seed).permutation(len(train.labels))[:n]
               if protocol == "cifar10" else np.arange(min(n, len(train.labels))))
        sub = train.subset(idx)
        return sub.float_images(), sub.labels, f"{name} (train split)"
    except Exception as e:  # noqa: BLE001 - the benchmark still runs without the data
        print(f"{name} unavailable ({e}); using Gaussian stimuli")
        shape = models.architecture(network).input_shape
        rng = np.random.default_rng(seed)
        return rng.normal(size=(n, *shape)).astype(np.float32), None, "gaussian"


def trained_lenet(network: str, x, y, steps: int, seed: int = 0, widths=None):
    """``network`` (at ``widths``, else its own) trained briefly (Adam, batch 64) so that its
    units have realistic sparsity."""
    import optax

    arch = models.architecture(network, **({"widths": widths} if widths else {}))
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


def trained_in_child(protocol: str, n: int, steps: int, widths) -> tuple[Any, Any]:
    """:func:`trained_lenet` on the protocol's first stimuli, run in a child process with
    jaxprune's CPU training flag (as ``jaxprune train`` runs; 6x faster there, but it slows
    searches, so this process, which times them, runs without it)."""
    import subprocess
    import sys
    import tempfile

    network = PROTOCOLS[protocol][0]
    arch = models.architecture(network, **({"widths": widths} if widths else {}))
    template = models.init_params(arch, jax.random.key(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.npz"
        subprocess.run([sys.executable, __file__, "--train-worker", str(path), "--protocol",
                        protocol, "--stimuli", str(n), "--train-steps", str(steps),
                        *(["--quick"] if widths else [])], check=True)
        saved = np.load(path)
        leaves = [jnp.asarray(saved[f"arr_{i}"]) for i in range(len(saved.files))]
    return arch, jax.tree.unflatten(jax.tree.structure(template), leaves)


def train_worker(path: str, protocol: str, n: int, steps: int, quick: bool) -> None:
    """``--train-worker PATH``: the child of :func:`trained_in_child`; saves the leaves."""
    from jaxprune import add_cpu_conv_flag

    add_cpu_conv_flag()
    widths = QUICK_MNIST_WIDTHS if protocol == "mnist" and quick else None
    x, y, _ = protocol_stimuli(protocol, n)
    _, params = trained_lenet(PROTOCOLS[protocol][0], x, y, steps, widths=widths)
    np.savez(path, *[np.asarray(leaf) for leaf in jax.tree.leaves(params)])


def correlation_rows(a: np.ndarray) -> np.ndarray:
    """``np.corrcoef(a)`` (float64), except that a constant row correlates 0 with everything
    (``np.corrcoef`` gives NaN there; jaxprune defines it as 0)."""
    c = a.astype(np.float64) - a.mean(axis=1, keepdims=True)
    norm = np.sqrt((c * c).sum(axis=1, keepdims=True))
    z = np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)
    return z @ z.T


class TorchChain:
    """A PyTorch copy of a LeNet-like chain (conv layers with padding and max-pooling, then
    dense layers), written the way research code is: the whole network runs for every mask.
    Activations are post-ReLU, masked, before pooling; the first dense layer flattens in
    jaxprune's HWC order, so the JAX kernels serve unchanged."""

    def __init__(self, arch, params, x: np.ndarray):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.arch, self.torch = arch, torch
        self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        p = jax.tree.map(np.asarray, params)
        self.weights = {}
        for layer in arch.layers:
            k = p[layer.name]["kernel"]
            k = k.transpose(3, 2, 0, 1) if layer.kind == "conv" else k.T
            self.weights[layer.name] = (torch.from_numpy(k.copy()),
                                        torch.from_numpy(p[layer.name]["bias"].copy()))

    def activations(self, masks) -> dict[str, Any]:
        F, h, out = self.torch.nn.functional, self.x, {}
        with self.torch.no_grad():
            for layer in self.arch.layers:
                w, b = self.weights[layer.name]
                if layer.kind == "conv":
                    h = F.relu(F.conv2d(h, w, b, layer.stride, layer.padding))
                    h = h * masks[layer.name].view(1, -1, 1, 1)
                else:
                    if h.ndim == 4:
                        h = h.permute(0, 2, 3, 1).flatten(1)
                    h = F.relu(F.linear(h, w, b)) * masks[layer.name]
                out[layer.name] = h
                if layer.pool:
                    h = F.max_pool2d(h, layer.pool[0], layer.pool[1])
        return out

    def poz_order(self, name: str) -> np.ndarray:
        """Units of ``name`` by decreasing PoZ on the unpruned network (stable)."""
        a = self.activations(self.ones())[name]
        dims = (0, 2, 3) if a.ndim == 4 else (0,)
        return np.argsort(-(a == 0).float().mean(dim=dims).numpy(), kind="stable")

    def ones(self) -> dict[str, Any]:
        return {n: self.torch.ones(w) for n, w in self.arch.widths.items()}

    def fit(self, masks, target_rsm: np.ndarray) -> float:
        """R² of the Pearson readout RSMs' upper triangles, removed readout units deleted."""
        readout = self.activations(masks)[self.arch.layer_names[-1]]
        kept = self.torch.from_numpy(np.flatnonzero(masks[self.arch.layer_names[-1]] > 0))
        rsm = correlation_rows(readout[:, kept].numpy())
        iu = np.triu_indices(len(rsm), 1)
        r = np.corrcoef(rsm[iu], target_rsm[iu])[0, 1]
        return r * r

    def target(self) -> np.ndarray:
        return correlation_rows(self.activations(self.ones())[self.arch.layer_names[-1]].numpy())


def torch_search(arch, params, x, direction, threshold=0.8, wrap_fit=None):
    """The reference-style search: a PyTorch network, one whole forward pass per candidate."""
    chain = TorchChain(arch, params, x)
    fit = wrap_fit(chain.fit) if wrap_fit is not None else chain.fit
    target, masks = chain.target(), chain.ones()
    names = list(arch.layer_names)
    for name in names[::-1] if direction == "top-down" else names:
        order = chain.poz_order(name)
        for k in range(1, len(order)):
            trial = {**masks, name: masks[name].clone()}
            trial[name][chain.torch.from_numpy(order[:k].copy())] = 0.0
            if fit(trial, target) < threshold:
                break
            masks = trial
    return {n: m.numpy() for n, m in masks.items()}


def timed_candidates(trace, candidates: int, fit_of) -> dict[str, Any]:
    """One layer visit's cost entry: ``fit_of(j)`` (the fit with the visit's first ``j``
    units removed) timed on the first ``candidates`` candidates, the time per candidate times
    the candidates the search evaluated there, and the largest difference from its fits."""
    k = min(candidates, len(trace.scores))
    t0 = time.perf_counter()
    fits = [fit_of(j) for j in range(1, k + 1)]
    per_candidate = (time.perf_counter() - t0) / k
    return {"candidates_timed": k, "per_candidate_s": per_candidate,
            "candidates_evaluated": len(trace.scores),
            "estimated_s": per_candidate * len(trace.scores),
            "max_fit_diff": float(np.abs(np.array(fits) - np.array(trace.scores[:k])).max())}


def torch_layer_costs(arch, params, x, result, candidates: int) -> dict[str, dict]:
    """Per layer of ``result``'s search (a jaxprune PruneResult), the PyTorch search's cost
    per candidate on that layer's first ``candidates`` candidates, evaluated from the masks
    the search had reached there, and whether its fits and PoZ order agree with jaxprune's
    trace; times the layer's candidate count for the PyTorch search's estimated time."""
    chain = TorchChain(arch, params, x)
    target, masks, out = chain.target(), chain.ones(), {}
    for trace in result.trace:
        name = trace.layer
        order = chain.poz_order(name)

        def candidate(j: int, masks=masks, name=name, order=order) -> float:
            trial = {**masks, name: masks[name].clone()}
            trial[name][chain.torch.from_numpy(order[:j].copy())] = 0.0
            return chain.fit(trial, target)

        out[name] = {**timed_candidates(trace, candidates, candidate),
                     "same_order": order.tolist() == trace.order}
        masks = {**masks, name: chain.torch.from_numpy(result.masks[name].astype(np.float32))}
    return out


def sequential_layer_costs(arch, params, x, result, config: PoZConfig,
                           candidates: int) -> dict[str, dict]:
    """Per layer of ``result``'s search, the sequential twin's cost per candidate (one full
    forward pass and fit, the step ``poz_search(sequential=True)`` runs) on the layer's first
    ``candidates`` candidates from the masks the search had reached there (one untimed call
    compiles first), and whether its fits agree with the trace; times the layer's candidate
    count for the twin's estimated time."""
    from jaxprune.masks import full_masks
    from jaxprune.search.fit import make_fit
    from jaxprune.search.poz import _fit_of_masks

    masks = {k: jnp.asarray(v) for k, v in full_masks(arch).items()}
    _, acts = models.apply(arch, params, masks, x)
    fit = make_fit(acts[arch.readout_layer].reshape(x.shape[0], -1), metric=config.metric,
                   rsm_method=config.rsm_method)
    out = {}
    for trace in result.trace:
        name = trace.layer

        def candidate(j: int, masks=masks, trace=trace) -> float:  # first j units removed
            mask = np.array(masks[trace.layer])
            mask[np.asarray(trace.order[:j], int)] = 0.0
            trial = {**masks, trace.layer: jnp.asarray(mask)}
            return float(_fit_of_masks(arch, params, trial, fit, x))

        candidate(1)  # compiles
        out[name] = timed_candidates(trace, candidates, candidate)
        masks = {**masks, name: jnp.asarray(result.masks[name].astype(np.float32))}
    return out


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


def time_direction(arch, params, x, direction: str, torch_candidates: int | None,
                   sequential_candidates: int | None = None, warm: bool = True) -> dict:
    """One direction: the vectorised search cold (and warm), its sequential twin and the
    PyTorch search: whole searches, or with ``*_candidates`` their per-layer estimates."""
    cfg = PoZConfig(direction=direction, threshold=0.8)
    vectorised = lambda: poz_search(arch, params, x, cfg, progress=not warm)  # noqa: E731
    (vec,), cold = timed(vectorised, None if warm else f"vectorised {direction}")
    row = {"kept": vec.kept, "compression_rate": vec.compression_rate,
           "vectorised_cold_s": cold,
           "candidates_evaluated": sum(len(t.scores) for t in vec.trace),
           "per_layer": {t.layer: {"candidates_evaluated": len(t.scores),
                                   "vectorised_s": t.seconds} for t in vec.trace}}
    if warm:
        (again,), row["vectorised_warm_s"] = timed(vectorised, f"vectorised {direction}")
        for t in again.trace:
            row["per_layer"][t.layer]["vectorised_warm_s"] = t.seconds
    same_masks = True
    if sequential_candidates is None:
        (seq,), row["sequential_s"] = timed(
            lambda: poz_search(arch, params, x, cfg, sequential=True), f"sequential {direction}")
        for t in seq.trace:
            row["per_layer"][t.layer]["sequential_s"] = t.seconds
        same_masks = same(vec.masks, seq.masks)
        row["sequential_measured"] = "whole search"
    else:
        costs, _ = timed(lambda: sequential_layer_costs(arch, params, x, vec, cfg,
                                                        sequential_candidates))
        row["sequential_s"] = estimated(row, costs, "sequential", sequential_candidates)
        same_masks = all(c["max_fit_diff"] < 2e-4 for c in costs.values())
    if torch_candidates is None:
        torch_masks, row["torch_s"] = timed(lambda: torch_search(arch, params, x, direction),
                                            f"torch {direction}")
        row["torch_measured"] = "whole search"
        row["same_masks"] = same_masks and same(vec.masks, torch_masks)
    else:
        costs, _ = timed(lambda: torch_layer_costs(arch, params, x, vec, torch_candidates),
                         f"torch {direction}")
        row["torch_s"] = estimated(row, costs, "torch", torch_candidates)
        row["same_masks"] = same_masks and all(
            c["same_order"] and c["max_fit_diff"] < 2e-4 for c in costs.values())
    return row


def estimated(row: dict, costs: dict[str, dict], key: str, candidates: int) -> float:
    """Puts the per-layer estimates ``costs`` into ``row`` under ``key``; their total."""
    for name, cost in costs.items():
        row["per_layer"][name][key] = cost
    row[f"{key}_measured"] = (f"estimated: per layer, the cost per candidate of its first "
                              f"{candidates} candidates (timed) x the candidates the search "
                              "evaluated there")
    return sum(c["estimated_s"] for c in costs.values())


def search_totals(out: dict) -> None:
    """Top-level totals and speedups over both directions (warm vectorised)."""
    rows = out["directions"].values()
    keys = [k for k in ("vectorised_warm", "vectorised_cold", "sequential", "torch")
            if all(f"{k}_s" in r for r in rows)]
    total = {key: sum(r[f"{key}_s"] for r in rows) for key in keys}
    basis = "vectorised_warm" if "vectorised_warm" in total else "vectorised_cold"
    out["totals_s"] = total
    out["speedup_basis"] = basis  # cold: compilation included, when no warm call was timed
    out["speedup_vs_torch"] = total["torch"] / total[basis]
    out["speedup_vs_torch_cold"] = total["torch"] / total["vectorised_cold"]
    out["speedup_vs_sequential"] = total["sequential"] / total[basis]
    out["same_masks"] = bool(all(r["same_masks"] for r in rows))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cifar10")
    parser.add_argument("--stimuli", type=int, help="stimuli of the protocol (default 5000)")
    parser.add_argument("--torch-candidates", type=int, default=3,
                        help="MNIST: candidates per layer the PyTorch search is timed on")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/"
                        "search_cost.json, search_cost_mnist.json for --protocol mnist)")
    parser.add_argument("--train-steps", type=int, help="training steps (default 1500)")
    parser.add_argument("--sequential-candidates", type=int,
                        help="estimate the sequential twin from this many candidates per "
                             "layer (default: MNIST full 3, else its whole search)")
    parser.add_argument("--cold-only", action=argparse.BooleanOptionalAction,
                        help="time the vectorised search once, compilation included "
                             "(default: MNIST full)")
    parser.add_argument("--train-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mnist = args.protocol == "mnist"
    if args.stimuli is not None and args.stimuli < 10:
        parser.error(f"--stimuli {args.stimuli}: needs at least 10 stimuli")
    out_path = args.out or str(ROOT / "benchmarks/results" /
                               ("search_cost_mnist.json" if mnist else "search_cost.json"))
    n = args.stimuli or ((100 if mnist else 300) if args.quick else 5000)
    steps = args.train_steps or (100 if args.quick else 1500)
    scaling_n = [250, 500] if args.quick else [1000, 5000, 10000, 20000, 50000]
    torch_scaling_n = [250, 500] if args.quick else [1000, 5000, 10000]
    seeds_many = 2 if args.quick else 50

    network, _, chosen = PROTOCOLS[args.protocol]
    n_all = n if mnist else max(*scaling_n, n)
    if args.train_worker:
        return train_worker(args.train_worker, args.protocol, n_all, steps, args.quick)
    x_all, _, source = protocol_stimuli(args.protocol, n_all)
    widths = QUICK_MNIST_WIDTHS if mnist and args.quick else None
    arch, params = trained_in_child(args.protocol, n_all, steps, widths)
    x = x_all[:n]
    config = PoZConfig(threshold=0.8)
    out = {"machine": machine_info("torch"),
           "protocol": {"name": args.protocol, "network": network, "widths": arch.widths,
                        "stimuli": n,
                        "threshold": 0.8, "stimulus_source": source, "stimuli_chosen": chosen,
                        "training_steps": steps,
                        "training": "Adam 1e-3, batch 64, on the stimuli themselves, in a "
                                    "child process with jaxprune's CPU training flag"},
           "directions": {}}
    estimate = mnist and not args.quick
    sequential_candidates = args.sequential_candidates or (3 if estimate else None)
    cold_only = estimate if args.cold_only is None else args.cold_only
    for direction in DIRECTIONS:
        out["directions"][direction] = time_direction(
            arch, params, x, direction, args.torch_candidates if mnist else None,
            sequential_candidates, warm=not cold_only)
        print(direction, out["directions"][direction])
    search_totals(out)
    if mnist:
        return write_out(out, out_path)

    out["seeds"] = time_stacked_seeds(arch, params, x, config, seeds_many)
    out["scaling"] = time_scaling(arch, params, x_all, config, scaling_n, torch_scaling_n)
    return write_out(out, out_path)


def time_stacked_seeds(arch, params, x, config: PoZConfig, seeds_many: int) -> dict:
    """S stacked networks (the trained weights plus per-seed noise) searched in one call,
    against one network alone (bottom-up, warm)."""
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
    return {"S": seeds_many, "seed_batch": seed_batch, "bottom_up_s": t_many,
                    "per_seed_s": t_many / seeds_many, "S1_bottom_up_s": t_one,
                    "first_batch_cold_s": t_first,
                    "kept_per_seed": [r.kept for r in many],
                    "note": "S networks = the trained weights plus 5% init-scale noise each; "
                            "timed warm (a first batch of seed_batch seeds compiled the "
                            "programs); per_seed_s vs S1_bottom_up_s is the gain of stacking"}


def time_scaling(arch, params, x_all, config: PoZConfig, scaling_n, torch_scaling_n) -> list:
    """jaxprune's warm bottom-up search and PyTorch's cost per candidate as n grows."""
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
    return scaling


def write_out(out: dict, path: str) -> dict:
    out["peak_rss_mib"] = dict(PEAKS)
    out["peak_rss_note"] = ("peak resident memory of the whole process during each stage "
                            "(Linux VmHWM reset before the stage), MiB; includes the loaded "
                            "data set and libraries")
    finish(out["machine"])
    write_json(path, out)
    print(f"speedup vs torch {out['speedup_vs_torch']:.1f}x, vs sequential "
          f"{out['speedup_vs_sequential']:.1f}x, same masks {out['same_masks']}; "
          f"wrote {path}")
    return out


if __name__ == "__main__":
    from jaxprune.malloc import relaunch_with_huge_pages

    relaunch_with_huge_pages()  # GiB-sized search buffers: jaxprune.malloc
    main()
