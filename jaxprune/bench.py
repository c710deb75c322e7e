"""The cost of a PoZ search on anyone's network and machine (``jaxprune bench``).

:func:`bench_search` times the vectorised search (cold: compilation included; warm: a second,
identical call) against its sequential twin (one forward pass per candidate) in each direction,
counts the candidate removals evaluated, and measures peak memory: the host's resident set
(Linux ``VmHWM``, reset before each stage) and, where the backend reports it, each device's
peak bytes in use. The masks of the two implementations are compared. :func:`machine_info`
records what it ran on; the scripts in ``benchmarks/`` use the same helpers.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxprune
from jaxprune.search.poz import PoZConfig, chunk_for, poz_search
from jaxprune.search.result import PruneResult


def proc_field(path: str, key: str) -> int | None:
    """The number after ``key:`` in a /proc file (``/proc/meminfo`` ``MemTotal`` in kB,
    ``/proc/self/status`` ``VmHWM`` ...); None where the file or field is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(*packages: str) -> dict[str, Any]:
    """Platform, processor, cores, memory, load average now, Python/JAX/NumPy/jaxprune
    versions, JAX backend and devices, ``XLA_FLAGS``, ``GLIBC_TUNABLES``
    (:mod:`jaxprune.malloc`) and the versions of ``packages``."""
    memory_kib = proc_field("/proc/meminfo", "MemTotal")
    return {
        "platform": platform.platform(),
        "processor": _processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_total_bytes": None if memory_kib is None else memory_kib * 1024,
        "load_average_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jaxprune": jaxprune.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        **{name: _package_version(name) for name in packages},
    }


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run added."""
    info["load_average_end"] = list(os.getloadavg())
    return info


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (else since start), MiB."""
    kib = proc_field("/proc/self/status", "VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def device_peak_bytes() -> list[int] | None:
    """Each local device's peak bytes in use so far (accelerators), None where the backend
    keeps no statistics (the CPU)."""
    peaks = []
    for device in jax.local_devices():
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        peaks.append(int(stats["peak_bytes_in_use"]))
    return peaks


def measured(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """``fn()`` and its cost: wall seconds, the host's peak RSS during it (MiB) and the
    devices' peak bytes (cumulative over the process: accelerators keep no per-stage reset)."""
    reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()  # the search's results are host arrays: its work is done
    seconds = time.perf_counter() - t0
    return out, {"wall_s": seconds, "peak_rss_mib": peak_rss_mib(),
                 "device_peak_bytes": device_peak_bytes()}


def candidates_evaluated(results: Sequence[PruneResult]) -> int:
    """Candidate removals whose fit the search computed (every trace score, all seeds)."""
    return sum(len(t.scores) for r in results for t in r.trace)


def same_masks(a: Sequence[PruneResult], b: Sequence[PruneResult]) -> bool:
    return all(np.array_equal(x.masks[k], y.masks[k]) for x, y in zip(a, b, strict=True)
               for k in x.masks)


def bench_direction(arch, params, x, config: PoZConfig, *, sequential: bool = True,
                    **search: Any) -> dict[str, Any]:
    """One direction: vectorised cold and warm, the sequential twin (``sequential``), the
    candidates evaluated and per second (warm), and whether the twins' masks agree."""
    run = lambda twin: poz_search(arch, params, x, config, sequential=twin, **search)  # noqa: E731
    results, cold = measured(lambda: run(False))
    _, warm = measured(lambda: run(False))
    count = candidates_evaluated(results)
    row = {"direction": config.direction, "candidates": count, "vectorised_cold": cold,
           "vectorised_warm": warm, "candidates_per_s": count / warm["wall_s"],
           "kept": [{k: int(v.sum()) for k, v in r.masks.items()} for r in results]}
    if sequential:
        twin, cost = measured(lambda: run(True))
        row.update(sequential=cost, same_masks=same_masks(results, twin),
                   speedup_vs_sequential=cost["wall_s"] / warm["wall_s"])
    return row


def bench_search(arch, params, x, directions: Sequence[str], config: PoZConfig, *,
                 sequential: bool = True, inputs: dict[str, Any] | None = None,
                 progress: bool = False, **search: Any) -> dict[str, Any]:
    """:func:`bench_direction` for each of ``directions``, with the machine, the devices,
    the network, the stimuli and ``inputs`` (what the caller loaded) recorded."""
    rows = []
    for d in directions:
        if progress:
            print(f"bench: {d} ...", flush=True)
        rows.append(bench_direction(arch, params, x, dataclasses.replace(config, direction=d),
                                    sequential=sequential, **search))
    info = {"benchmark": "jaxprune bench", "network": arch.family,
            "widths": dict(arch.widths), "stimuli": int(np.shape(x)[0]),
            "input_shape": list(np.shape(x)[1:]), "sharding": config.sharding,
            "devices": [str(d) for d in jax.local_devices()], "inputs": inputs or {},
            "threshold": config.threshold, "memory_budget": config.memory_budget,
            "precision": config.precision,
            "chunks": {name: chunk_for(arch, arch.index(name), int(np.shape(x)[0]), config)
                       for name in arch.layer_names[:arch.index(arch.readout_layer) + 1]},
            "results": rows,
            "machine": machine_info("torch")}
    if sequential:
        info["speedup_vs_sequential"] = (sum(r["sequential"]["wall_s"] for r in rows)
                                         / sum(r["vectorised_warm"]["wall_s"] for r in rows))
        info["same_masks"] = all(r["same_masks"] for r in rows)
    finish(info["machine"])
    return info


def bench_table(out: dict[str, Any]) -> str:
    """The plain-text table of a :func:`bench_search` result, one row per direction."""
    from jaxprune.report import table

    def row(r):
        twin = r.get("sequential")
        peak = max(r["vectorised_cold"]["peak_rss_mib"], r["vectorised_warm"]["peak_rss_mib"])
        return [r["direction"], r["candidates"], f"{r['vectorised_cold']['wall_s']:.2f}",
                f"{r['vectorised_warm']['wall_s']:.2f}", f"{r['candidates_per_s']:.0f}",
                f"{twin['wall_s']:.2f}" if twin else "-",
                f"{r['speedup_vs_sequential']:.1f}x" if twin else "-",
                str(r["same_masks"]) if twin else "-", f"{peak:.0f}"]

    return table(["direction", "candidates", "cold s", "warm s", "cand/s", "twin s",
                  "speed-up", "same masks", "peak RSS MiB"], [row(r) for r in out["results"]])


def network_and_stimuli(*, checkpoint: str | None = None, model: str | None = None,
                        pretrained: bool = False, weights: str | None = None,
                        images: str | None = None, data: str | None = None,
                        data_dir: str | None = None, stimuli: int = 120, split: str = "test",
                        seed: int = 0, progress: bool = False):
    """``(arch, stacked params, x [n, ...], inputs)`` for ``jaxprune bench``: every seed of a
    ``checkpoint`` on the first ``stimuli`` images of its data set, or one registered ``model``
    (``--pretrained``/``--weights``, else randomly initialised from ``seed``) on the images of
    ``images`` (else ``stimuli`` standard-normal stimuli: search cost depends on shapes and
    on how many candidates pass, not on the pixels; recorded). ``ValueError`` on bad input."""
    from jaxprune import models
    from jaxprune.pipeline import (
        load_trained,
        pretrained_params,
        pretrained_stimuli,
        stimulus_set,
    )
    from jaxprune.provenance import fingerprint

    if (checkpoint is None) == (model is None):
        raise ValueError("give either --checkpoint or --model NAME, not both/neither")
    if checkpoint is not None:
        arch, params, meta = load_trained(checkpoint)
        ds = stimulus_set(data or meta["data"], stimuli, split=split, data_dir=data_dir)
        x = ds.float_images()
        inputs = {"checkpoint": str(Path(checkpoint).absolute()), "seeds": meta["seeds"],
                  "data": data or meta["data"], "split": split}
    elif images is not None and (pretrained or weights):
        arch, params, x = pretrained_stimuli(model, pretrained, weights, images,
                                             progress=progress)
        x = x[:stimuli]
        inputs = {"model": model, "weights": weights or "packaged", "images": str(images)}
    else:
        arch = models.architecture(model)
        params = pretrained_params(arch, model, weights) if pretrained or weights \
            else models.init_stack(arch, [seed])
        x = np.random.default_rng(seed).standard_normal(
            (stimuli, *arch.input_shape)).astype(np.float32)
        inputs = {"model": model, "weights": weights or ("packaged" if pretrained
                                                         else f"random init, seed {seed}"),
                  "images": f"{stimuli} standard-normal stimuli, seed {seed}"}
    inputs["params_hash"] = fingerprint(params)
    return arch, params, np.asarray(x), inputs
