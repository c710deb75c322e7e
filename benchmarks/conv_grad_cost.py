"""Where XLA:CPU loses on training convolutions: the forward pass, the input gradient and the
kernel gradient of the LeNet convolutions, under XLA's default CPU lowering, under the flag
jaxprune adds for training (``jaxprune.CPU_CONV_FLAG``) and under XLA's other CPU library options
(``XLA_SETTINGS``: XNNPACK, oneDNN), with the alternatives tried for the kernel gradient.

Shapes (batch 64, NHWC input, HWIO kernel, stride 1): ``lenet5_mnist`` conv1 (28x28, 1->64,
3x3, pad 1) and conv2 (28x28, 64->64, 3x3, pad 1), ``lenet5_cifar`` conv1 (32x32, 3->6, 5x5)
and conv2 (14x14, 6->16, 5x5). Per shape and XLA setting (each in a fresh process, as XLA
reads its flags once), the median wall time of jit-compiled:

- ``forward``: ``lax.conv_general_dilated``;
- ``input_grad`` / ``kernel_grad``: the two halves of ``jax.vjp`` of the convolution;
- ``kernel_grad_im2col``: the kernel gradient as one matmul, ``patches(x)ᵀ @ g`` with
  ``patches [n·h'·w', kh·kw·c]`` from ``lax.conv_general_dilated_patches``;
- ``kernel_grad_per_tap``: ``Σ`` over the ``kh·kw`` taps of ``einsum(x_shifted, g)``;

and PyTorch's weight-only ``convolution_backward`` (2 threads and 1 thread) for reference.
GFLOP/s count ``2·n·h'·w'·kh·kw·c·o`` per call.

    python benchmarks/conv_grad_cost.py           # all shapes, ~2 minutes
    python benchmarks/conv_grad_cost.py --quick   # the MNIST conv2 only, batch 16
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

import numpy as np

from jaxprune import CPU_CONV_FLAG

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "conv_grad_cost.json"
XLA_SETTINGS = {  # label: XLA_FLAGS
    "xla_default": "",
    "jaxprune_flag": CPU_CONV_FLAG,
    "xnn_fusion_dot": "--xla_cpu_experimental_xnn_fusion_type=dot",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_fusion_dot": "--xla_cpu_experimental_onednn_fusion_type=dot",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
}
SHAPES = {  # name: (h, w, c, o, k, pad)
    "lenet5_mnist.conv1": (28, 28, 1, 64, 3, 1),
    "lenet5_mnist.conv2": (28, 28, 64, 64, 3, 1),
    "lenet5_cifar.conv1": (32, 32, 3, 6, 5, 0),
    "lenet5_cifar.conv2": (14, 14, 6, 16, 5, 0),
}


def median_time(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` (blocked), after one warm-up call."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def jax_programs(k: int, pad: int) -> dict[str, Any]:
    """The timed JAX programs of one convolution shape: ``name -> jitted fn(x, kernel, g)``."""
    import jax
    import jax.numpy as jnp

    dims, pads = ("NHWC", "HWIO", "NHWC"), [(pad, pad)] * 2

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=dims)

    def input_grad(x, kernel, g):
        return jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0]

    def kernel_grad(x, kernel, g):
        return jax.vjp(lambda kernel: conv(x, kernel), kernel)[1](g)[0]

    def kernel_grad_im2col(x, kernel, g):
        patches = jax.lax.conv_general_dilated_patches(x, (k, k), (1, 1), pads,
                                                       dimension_numbers=dims)
        c = x.shape[-1]  # patches' features are ordered (c, kh, kw)
        flat = patches.reshape(-1, c * k * k).T @ g.reshape(-1, g.shape[-1])
        return flat.reshape(c, k, k, -1).transpose(1, 2, 0, 3)

    def kernel_grad_per_tap(x, kernel, g):
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        h, w = g.shape[1:3]
        taps = [[jnp.einsum("nhwc,nhwo->co", xp[:, dy:dy + h, dx:dx + w], g)
                 for dx in range(k)] for dy in range(k)]
        return jnp.stack([jnp.stack(row) for row in taps])

    return {"forward": jax.jit(lambda x, kernel, g: conv(x, kernel)),
            "input_grad": jax.jit(input_grad), "kernel_grad": jax.jit(kernel_grad),
            "kernel_grad_im2col": jax.jit(kernel_grad_im2col),
            "kernel_grad_per_tap": jax.jit(kernel_grad_per_tap)}


def inputs(shape, batch: int):
    h, w, c, o, k, pad = shape
    rng = np.random.default_rng(0)
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    x = rng.standard_normal((batch, h, w, c), dtype=np.float32)
    kernel = rng.standard_normal((k, k, c, o), dtype=np.float32) / np.sqrt(k * k * c)
    g = rng.standard_normal((batch, oh, ow, o), dtype=np.float32)
    return x, kernel, g, 2.0 * batch * oh * ow * k * k * c * o


def jax_worker(shapes: list[str], batch: int, repeats: int) -> dict[str, Any]:
    """Times every JAX program of every shape in this process (one XLA setting)."""
    import jax

    out = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "shapes": {}}
    for name in shapes:
        x, kernel, g, flops = inputs(SHAPES[name], batch)
        x, kernel, g = (jax.device_put(a) for a in (x, kernel, g))
        programs = jax_programs(SHAPES[name][4], SHAPES[name][5])
        reference = np.asarray(programs["kernel_grad"](x, kernel, g))
        cells = {}
        for label, fn in programs.items():
            seconds = median_time(fn, x, kernel, g, repeats=repeats)
            cells[label] = {"s": seconds, "gflop_per_s": flops / seconds / 1e9}
            if label.startswith("kernel_grad_"):
                err = np.abs(np.asarray(fn(x, kernel, g)) - reference).max()
                cells[label]["max_abs_diff_vs_vjp"] = float(err)
        out["shapes"][name] = cells
    return out


def torch_worker(shapes: list[str], batch: int, repeats: int, threads: int) -> dict:
    """PyTorch's weight-only convolution backward, for reference."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name in shapes:
        x, kernel, g, flops = inputs(SHAPES[name], batch)
        pad = SHAPES[name][5]
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        gt = torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2)))

        def backward(gt=gt, xt=xt, wt=wt, pad=pad):
            return torch.ops.aten.convolution_backward(
                gt, xt, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                [False, True, False])

        backward()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            backward()
            times.append(time.perf_counter() - t0)
        seconds = float(np.median(times))
        out[name] = {"kernel_grad": {"s": seconds, "gflop_per_s": flops / seconds / 1e9}}
    return out


def run_worker(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """A worker's JSON, or ``{"error": ...}`` where it failed (e.g. a flag this jaxlib lacks)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", choices=["jax", "torch1", "torch2"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--shapes", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = (jax_worker(args.shapes, args.batch, args.repeats) if args.worker == "jax"
                  else torch_worker(args.shapes, args.batch, args.repeats,
                                    int(args.worker[-1])))
        print(json.dumps(result))
        return result
    from _machine import finish, machine_info

    shapes = ["lenet5_mnist.conv2"] if args.quick else list(SHAPES)
    batch, repeats = (16, 3) if args.quick else (64, args.repeats)
    common = ["--shapes", *shapes, "--batch", str(batch), "--repeats", str(repeats)]
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    info = machine_info("torch")
    t0 = time.perf_counter()
    settings = {}
    for label, flags in XLA_SETTINGS.items():
        env = {**base, "XLA_FLAGS": flags}
        settings[label] = run_worker(["--worker", "jax", *common], env)
    settings["torch_2_threads"] = run_worker(["--worker", "torch2", *common], base)
    settings["torch_1_thread"] = run_worker(["--worker", "torch1", *common], base)
    finish(info)
    speedup = {name: settings["xla_default"]["shapes"][name]["kernel_grad"]["s"]
               / settings["jaxprune_flag"]["shapes"][name]["kernel_grad"]["s"]
               for name in shapes}
    out = {"benchmark": "conv_grad_cost", "mode": "quick" if args.quick else "full",
           "batch": batch, "repeats": repeats, "timing": "median wall time, jit, warm",
           "kernel_grad_speedup_of_flag": speedup, "settings": settings, "machine": info,
           "total_runtime_s": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for name in shapes:
        row = {s: r["shapes"][name] if "shapes" in r else r.get(name, r)
               for s, r in settings.items()}
        print(name, {s: {k: round(v["s"] * 1e3, 1) for k, v in cells.items()}
                     if "error" not in cells else cells["error"][:60]
                     for s, cells in row.items()}, "ms")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
