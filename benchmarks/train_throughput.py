"""Training throughput of S LeNet5 networks: stacked in one JAX program vs one after another.

For S in (1, 8, 50) LeNet5 networks (``lenet5_cifar``, 32x32x3 inputs, batch 64, Adam
lr 1e-3), each trained for the same fixed number of minibatch steps:

- ``jax_stacked``: :func:`jaxprune.train.fit` with ``seeds=range(S)``: every step updates the
  S networks in one jit-compiled, vmapped program (each seed with its own data order);
- ``jax_fit_seed_loop``: one ``fit`` of S seeds with ``seed_batching="loop"`` (the seeds
  run one after another through the one-seed program inside ``fit``);
- ``jax_sequential``: ``fit`` with one seed at a time, S calls one after another (the
  program is compiled once and reused);
- ``torch_sequential``: a plain PyTorch loop (LeNet5 written here, ``torch.optim.Adam``,
  ``torch.set_num_threads(cores)``), the S networks one after another, in a separate process
  (XLA's idle CPU threads would otherwise starve PyTorch's); ``torch_sequential_1thread``
  the same with one thread (PyTorch with as many threads as cores collapses, up to 50x, when
  another process holds a core, so this figure is given too).

Data: synthetic random images (standard normal float32) and random labels; throughput does
not depend on pixel values. Validation and checkpoints are off (``val_fraction=0``), so only
training steps are timed.

Timing: a fixed number of steps per network (``--steps``, by default smaller for larger S),
not full epochs; rates are images per second (S x steps x 64 / seconds) and
``extrapolated_cifar_epoch_s`` extrapolates them to one epoch of the 50,000 CIFAR-10 training
images for all S networks. Stacked: ``fit``'s first epoch is the cold one (trace + compile +
run), the warm figure is the fastest of ``repeats`` later epochs. ``compile_s`` sums JAX's
own compile events (tracing, lowering, XLA compilation; ``jax.monitoring``) during the cold
call. Sequential JAX: a first (cold) network timed apart, then the S networks timed warm
(wall time of the ``fit`` calls, per-call overhead included; ``train_s`` is the sum of their
epoch times), the fastest of ``repeats`` passes. PyTorch: one warm-up network (not timed),
then the S networks, the fastest of ``repeats`` passes. Best-of-``repeats`` damps the noise
of a shared machine (the load average at start and end is recorded).

JAX runs with the CPU flag ``jaxprune train`` adds (``jaxprune.CPU_CONV_FLAG``);
``--xla-default`` measures it without.

Usage::

    python benchmarks/train_throughput.py --quick   # < 1 minute (S = 1, 8)
    python benchmarks/train_throughput.py           # S = 1, 8, 50 (several minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import torch
from _machine import finish, machine_info
from torch import nn

from jaxprune import add_cpu_conv_flag
from jaxprune.models import architecture
from jaxprune.train import TrainConfig, fit, use_scan

BATCH = 64
LR = 1e-3
CIFAR_TRAIN = 50_000
FULL = {"seeds": [1, 8, 50], "steps": {1: 60, 8: 12, 50: 4}, "repeats": 3}
QUICK = {"seeds": [1, 8], "steps": {1: 8, 8: 2}, "repeats": 1}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_throughput.json"


def synthetic_data(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images ``[steps * 64, 32, 32, 3]`` float32 and labels ``[steps * 64]`` int32."""
    rng = np.random.default_rng(seed)
    n = steps * BATCH
    return (rng.standard_normal((n, 32, 32, 3), dtype=np.float32),
            rng.integers(0, 10, n).astype(np.int32))


def config(seeds, epochs: int, seed_batching: str = "vmap") -> TrainConfig:
    return TrainConfig(optimizer="adam", learning_rate=LR, batch_size=BATCH, epochs=epochs,
                       val_fraction=0.0, seeds=tuple(seeds), seed_batching=seed_batching)


class CompileTimer:
    """Sums JAX's own compile-time events (tracing, lowering, XLA compilation) while on."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
              "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds = 0.0
        self.on = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if self.on and event in self.EVENTS:
            self.seconds += duration

    def measure(self, fn, *args, **kwargs):
        """``(fn(*args, **kwargs), compile seconds spent in it)``."""
        self.seconds, self.on = 0.0, True
        try:
            return fn(*args, **kwargs), self.seconds
        finally:
            self.on = False


COMPILE = CompileTimer()


def jax_stacked(arch, x, y, n_seeds: int, warm_epochs: int,
                seed_batching: str = "vmap") -> dict[str, Any]:
    """One ``fit`` of S seeds: epoch 0 cold, the fastest of the next ``warm_epochs`` warm."""
    t0 = time.perf_counter()
    result, compile_s = COMPILE.measure(
        fit, arch, x, y, config(range(n_seeds), 1 + warm_epochs, seed_batching),
        progress=False, verbose=False)
    wall = time.perf_counter() - t0
    cold, warm = result.epoch_seconds[0], min(result.epoch_seconds[1:])
    images = n_seeds * x.shape[0]
    return {"cold_epoch_s": cold, "warm_epoch_s": warm, "compile_s": compile_s,
            "fit_wall_s": wall, "images_per_s": images / warm}


def jax_sequential(arch, x, y, n_seeds: int, repeats: int) -> dict[str, Any]:
    """S ``fit`` calls of one seed each, after a first (cold) call timed apart; the fastest
    of ``repeats`` passes over the S networks."""
    t0 = time.perf_counter()
    first, compile_s = COMPILE.measure(fit, arch, x, y, config([0], 1), progress=False,
                                       verbose=False)
    cold_wall = time.perf_counter() - t0
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_s = 0.0
        for seed in range(1, n_seeds + 1):
            train_s += fit(arch, x, y, config([seed], 1), progress=False,
                           verbose=False).epoch_seconds[0]
        passes.append((time.perf_counter() - t0, train_s))
    wall, train_s = min(passes)
    images = n_seeds * x.shape[0]
    return {"cold_first_network_s": first.epoch_seconds[0], "cold_first_fit_wall_s": cold_wall,
            "compile_s": compile_s,
            "warm_wall_s": wall, "warm_train_s": train_s,
            "images_per_s": images / wall, "images_per_s_train_only": images / train_s}


class TorchLeNet5(nn.Module):
    """LeNet-5 for CIFAR, the layout of ``lenet5_cifar`` (62,006 parameters)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def torch_train_one(seed: int, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """``steps`` Adam steps of batch 64 on a fresh LeNet5, in a random data order."""
    torch.manual_seed(seed)
    model = TorchLeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x.shape[0])
    for step in range(steps):
        idx = order[step * BATCH:(step + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


def torch_sequential(x_np, y_np, n_seeds: int, steps: int, repeats: int) -> dict[str, Any]:
    """The S networks one after another (after a warm-up network); the fastest of
    ``repeats`` passes."""
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y_np.astype(np.int64))
    torch_train_one(10_000, x, y, steps)  # warm-up, not timed
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for seed in range(n_seeds):
            torch_train_one(seed, x, y, steps)
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    return {"wall_s": wall, "wall_s_all_passes": walls,
            "images_per_s": n_seeds * steps * BATCH / wall}


def torch_sequential_subprocess(n_seeds: int, steps: int, repeats: int,
                                threads: int) -> dict[str, Any]:
    """:func:`torch_sequential` in a fresh Python process: XLA's CPU worker threads keep
    spinning for a while after JAX work and starve PyTorch's threads in the same process
    (measured here: 137 vs 7,800 images/s)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--torch-worker",
           str(n_seeds), str(steps), str(repeats), str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="S = 1, 8 and few steps (< 1 min)")
    parser.add_argument("--seeds", type=int, nargs="+", help="the values of S to run")
    parser.add_argument("--steps", type=int, help="steps per network for every S")
    parser.add_argument("--repeats", type=int, help="timed repeats per method (fastest kept)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--xla-default", action="store_true",
                        help="JAX without the CPU flag `jaxprune train` adds (CPU_CONV_FLAG)")
    parser.add_argument("--torch-worker", type=int, nargs=4, help=argparse.SUPPRESS,
                        metavar=("S", "STEPS", "REPEATS", "THREADS"))
    args = parser.parse_args(argv)
    if args.torch_worker:  # the PyTorch measurement, in its own process; prints JSON
        n_seeds, steps, repeats, threads = args.torch_worker
        torch.set_num_threads(threads)
        x, y = synthetic_data(steps)
        print(json.dumps(torch_sequential(x, y, n_seeds, steps, repeats)))
        return {}
    if not args.xla_default:  # as `jaxprune train` runs; before any JAX computation
        add_cpu_conv_flag()
    plan = QUICK if args.quick else FULL
    seeds = args.seeds or plan["seeds"]
    torch.set_num_threads(os.cpu_count() or 1)
    arch = architecture("lenet5_cifar")
    t_start = time.perf_counter()
    info = {**machine_info("torch"), "jax_epoch_as_scan": use_scan(TrainConfig()),
            "torch_threads": os.cpu_count() or 1, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    rows = []
    for n_seeds in seeds:
        steps = args.steps or plan["steps"].get(n_seeds, 4)
        repeats = args.repeats or plan["repeats"]
        x, y = synthetic_data(steps)
        row: dict[str, Any] = {"S": n_seeds, "steps_per_network": steps,
                               "images_per_network": steps * BATCH}
        row["jax_stacked"] = jax_stacked(arch, x, y, n_seeds, repeats)
        row["jax_fit_seed_loop"] = jax_stacked(arch, x, y, n_seeds, repeats, "loop")
        row["jax_sequential"] = jax_sequential(arch, x, y, n_seeds, repeats)
        cores = os.cpu_count() or 1
        row["torch_sequential"] = torch_sequential_subprocess(n_seeds, steps, repeats, cores)
        row["torch_sequential_1thread"] = torch_sequential_subprocess(n_seeds, steps, repeats, 1)
        stacked = row["jax_stacked"]["images_per_s"]
        sequential = row["jax_sequential"]["images_per_s"]
        torch_rate = row["torch_sequential"]["images_per_s"]
        row["ratios"] = {
            "stacked_vs_jax_sequential": stacked / sequential,
            "stacked_vs_torch_sequential": stacked / torch_rate,
            "jax_sequential_vs_torch_sequential": sequential / torch_rate,
            "stacked_vs_torch_sequential_1thread":
                stacked / row["torch_sequential_1thread"]["images_per_s"],
            "fit_seed_loop_vs_jax_sequential":
                row["jax_fit_seed_loop"]["images_per_s"] / sequential,
        }
        row["extrapolated_cifar_epoch_s"] = {
            name: n_seeds * CIFAR_TRAIN / rate
            for name, rate in (("jax_stacked", stacked), ("jax_sequential", sequential),
                               ("torch_sequential", torch_rate))
        }
        rows.append(row)
        print(f"S={n_seeds:3d} steps={steps:3d}  img/s: stacked {stacked:8.1f} "
              f"(seed loop {row['jax_fit_seed_loop']['images_per_s']:.1f}) "
              f"(compile {row['jax_stacked']['compile_s']:.1f} s)  jax sequential "
              f"{sequential:8.1f}  torch sequential {torch_rate:8.1f} (1 thread "
              f"{row['torch_sequential_1thread']['images_per_s']:.1f})  stacked/sequential "
              f"{stacked / sequential:.2f}", flush=True)
    finish(info)
    largest = rows[-1]
    out = {
        "benchmark": "train_throughput",
        "mode": "quick" if args.quick else "full",
        "network": "lenet5_cifar",
        "input_shape": [32, 32, 3],
        "batch_size": BATCH,
        "optimizer": f"adam lr={LR}",
        "data": "synthetic: standard normal float32 images, random labels "
                "(throughput does not depend on pixel values)",
        "timing": "fixed number of steps per network (steps_per_network), not full epochs; "
                  "fastest of `repeats` timed repeats per method; per-image rates "
                  "extrapolated to a 50,000-image CIFAR-10 epoch",
        "repeats": args.repeats or plan["repeats"],
        "speedup_vs_sequential": largest["ratios"]["stacked_vs_jax_sequential"],
        "speedup_vs_sequential_S": largest["S"],
        "speedup_vs_torch_sequential": largest["ratios"]["stacked_vs_torch_sequential"],
        "speedup_vs_torch_sequential_1thread":
            largest["ratios"]["stacked_vs_torch_sequential_1thread"],
        "machine": info,
        "results": rows,
        "total_runtime_s": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"S={largest['S']}: stacked / sequential JAX = {out['speedup_vs_sequential']:.2f}, "
          f"stacked / sequential PyTorch = {out['speedup_vs_torch_sequential']:.2f} "
          f"(1 thread: {out['speedup_vs_torch_sequential_1thread']:.2f}); "
          f"wrote {args.out} ({out['total_runtime_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
