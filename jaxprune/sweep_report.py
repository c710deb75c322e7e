"""Reports of seed sweeps of whole-network searches: a list of *rows*, one per (seed,
direction), each with ``seed``, ``direction``, ``widths`` and ``kept`` (layer → units),
``compression_rate``,
``fit`` and optionally ``test_accuracy`` (``unpruned``/``pruned``/``fine_tuned``),
``parameters_kept``, ``flops_kept``, ``search_wall_time_s`` and ``jaccard`` (layer → overlap
of the paper directions' kept units) — the ``rows`` of ``experiments/aim1.py``'s results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.report import _save

ACCURACIES = ("unpruned", "pruned", "fine_tuned")
#: Directions shown in this order (the papers' first); others follow in first-seen order.
ORDER = ("bottom-up", "top-down", "alternate", "global", "global-alternate")


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    """Mean and sample sd (ddof=1; 0 for one value) of the values that are not None."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return None
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}


def directions_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The directions of ``rows``: those of :data:`ORDER` first, then others as first seen."""
    seen = list(dict.fromkeys(r["direction"] for r in rows))
    return [d for d in ORDER if d in seen] + [d for d in seen if d not in ORDER]


def sweep_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per direction, mean ± sd over seeds of the kept units per layer, compression rate, fit,
    parameters and FLOPs kept, test accuracies and search wall time; the Jaccard overlap per
    layer; the seeds."""
    out: dict[str, Any] = {"seeds": sorted({int(r["seed"]) for r in rows}), "directions": {}}
    for d in directions_of(rows):
        rs = [r for r in rows if r["direction"] == d]
        layers = list(rs[0]["kept"])
        entry = {"kept": {n: _stats([r["kept"][n] for r in rs]) for n in layers}}
        for key in ("compression_rate", "fit", "parameters_kept", "flops_kept",
                    "search_wall_time_s"):
            entry[key] = _stats([r.get(key) for r in rs])
        entry["test_accuracy"] = {k: _stats([(r.get("test_accuracy") or {}).get(k)
                                             for r in rs]) for k in ACCURACIES}
        out["directions"][d] = entry
    # one overlap per seed (recorded on each paper direction's row)
    overlap = list({r["seed"]: r["jaccard"] for r in rows if r.get("jaccard")}.values())
    out["jaccard"] = {n: _stats([j[n] for j in overlap]) for n in overlap[0]} if overlap \
        else None
    return out


def _cell(stat: dict[str, float] | None, digits: int = 2, suffix: str = "") -> str:
    if stat is None:
        return "–"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}{suffix}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}{suffix}"


def sweep_markdown(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """Markdown tables of :func:`sweep_summary`: kept units per layer, compression, fit,
    parameters and FLOPs kept, wall time; test accuracies; the Jaccard overlap."""
    s = sweep_summary(rows)
    dirs = s["directions"]
    layers = list(next(iter(dirs.values()))["kept"])
    n = len(s["seeds"])
    lines = [f"# {title}" if title else "", f"Mean ± sd (ddof=1) over {n} seed(s): "
             f"{_seed_span(s['seeds'])}.", "",
             "| direction | " + " | ".join(layers) + " | compression | fit (R²) | parameters "
             "kept | FLOPs kept | search (s/seed) |",
             "|---" * (len(layers) + 6) + "|"]
    for d, e in dirs.items():
        lines.append(f"| {d} | " + " | ".join(_cell(e["kept"][n_], 1) for n_ in layers)
                     + f" | {_cell(e['compression_rate'], 2, '×')} | {_cell(e['fit'], 3)} | "
                     f"{_cell(e['parameters_kept'], 0)} | {_cell(e['flops_kept'], 0)} | "
                     f"{_cell(e['search_wall_time_s'], 2)} |")
    if any(e["test_accuracy"]["unpruned"] for e in dirs.values()):
        lines += ["", "| direction | test accuracy unpruned | pruned | fine-tuned |",
                  "|---|---|---|---|"]
        for d, e in dirs.items():
            acc = e["test_accuracy"]
            lines.append(f"| {d} | " + " | ".join(_cell(acc[k], 3) for k in ACCURACIES) + " |")
    if s["jaccard"]:
        lines += ["", "Jaccard overlap of the kept units, bottom-up vs top-down, per layer:", "",
                  "| " + " | ".join(s["jaccard"]) + " |", "|---" * len(s["jaccard"]) + "|",
                  "| " + " | ".join(_cell(v, 2) for v in s["jaccard"].values()) + " |"]
    return "\n".join(lines).lstrip("\n")


def _seed_span(seeds: Sequence[int]) -> str:
    seeds = sorted(seeds)
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    return "seeds " + ", ".join(map(str, seeds))


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Three panels: the fraction of each layer's units kept per direction (mean ± sd bars),
    the compression rate of every seed per direction, and the test accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = sweep_summary(rows)
    dirs = directions_of(rows)
    layers, widths = list(rows[0]["kept"]), rows[0]["widths"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    step = 0.8 / len(dirs)
    for i, d in enumerate(dirs):
        kept = s["directions"][d]["kept"]
        frac = [kept[n]["mean"] / widths[n] for n in layers]
        err = [kept[n]["sd"] / widths[n] for n in layers]
        axes[0].bar(np.arange(len(layers)) + (i - (len(dirs) - 1) / 2) * step, frac, step,
                    yerr=err, capsize=2, label=d)
        vals = [r["compression_rate"] for r in rows if r["direction"] == d]
        axes[1].scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals,
                        s=10, alpha=0.7, color=f"C{i}")
    axes[0].set(xticks=range(len(layers)), xticklabels=layers, ylabel="fraction of units kept",
                title="kept units per layer (mean ± sd)", ylim=(0, 1.3),
                yticks=np.linspace(0, 1, 6))
    axes[0].legend(fontsize=7, ncol=3, loc="upper center")
    axes[1].set(xticks=range(len(dirs)), ylabel="compression rate (parameters)",
                title="compression per seed")
    axes[1].set_xticklabels(dirs, rotation=20, fontsize=8)
    _plot_accuracy(axes[2], s, dirs)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _plot_accuracy(ax, summary: dict[str, Any], dirs: Sequence[str]) -> None:
    step = 0.8 / len(ACCURACIES)
    for j, kind in enumerate(ACCURACIES):
        stats = [summary["directions"][d]["test_accuracy"][kind] for d in dirs]
        xs = [i + (j - 1) * step for i, st in enumerate(stats) if st]
        ax.bar(xs, [st["mean"] for st in stats if st], step,
               yerr=[st["sd"] for st in stats if st], capsize=2, label=kind.replace("_", "-"))
    ax.set(xticks=range(len(dirs)), ylabel="test accuracy", title="test accuracy (mean ± sd)")
    ax.set_xticklabels(dirs, rotation=20, fontsize=8)
    lows = [st["mean"] for d in dirs for st in summary["directions"][d]["test_accuracy"].values()
            if st]
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 0.1), min(1.0, max(lows) + 0.05))
    ax.legend(fontsize=7)




# ----------------------------------------------------------------------------- result files


def rows_of_search(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows from a PoZ search's JSON (``jaxprune prune --json``, a ``--resume`` file or a
    ``run`` folder's ``search.json``): ``results`` maps each direction to per-seed results."""
    rows = []
    for d, results in data["results"].items():
        for r in results:
            kept = r.get("kept") or {k: int(sum(m)) for k, m in r["masks"].items()}
            rows.append({"seed": int(r["seed"]), "direction": d, "widths": r["widths"],
                         "kept": kept, "compression_rate": r["compression_rate"],
                         "fit": r["final_score"], "search_wall_time_s": r.get("wall_time_s")})
    jaccard = data.get("jaccard") or []
    if jaccard and len(data["results"]) >= 2:
        first_two = list(data["results"])[:2]
        seeds = [int(r["seed"]) for r in data["results"][first_two[0]]]
        for row in rows:
            if row["direction"] in first_two:
                row["jaccard"] = jaccard[seeds.index(row["seed"])]
    return rows


def load_sweep(paths: Sequence[str | Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of one sweep from one or more result files (shares of it, e.g. chunks or
    ``--seeds-slice`` parts), merged in seed order; files of a sweep must share its protocol
    (``protocol`` or ``identity`` without the seeds) and no (seed, direction) may repeat.
    Returns the rows and the shared metadata."""
    import json

    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] | None = None
    for path in paths:
        data = _read_json(path)
        if "rows" in data:
            part, this = data["rows"], {k: data.get(k) for k in ("experiment", "network",
                                                                 "data", "protocol")}
        elif "results" in data:
            part = rows_of_search(data)
            this = {"identity": {k: v for k, v in (data.get("identity") or {}).items()
                                 if k not in ("params", "seeds")}}
        else:
            raise ValueError(f"{path}: not a sweep result (no 'rows' or 'results'); give the "
                             "JSON of experiments/aim1.py or of jaxprune prune/run")
        if meta is not None and this != meta:
            raise ValueError(f"{path} was produced under another protocol than "
                             f"{paths[0]}: {json.dumps(this)[:200]}")
        meta = this
        rows += part
    keys = [(r["seed"], r["direction"]) for r in rows]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"seed {repeated[0][0]} ({repeated[0][1]}) appears in more than one "
                         "file; give each share of the sweep once")
    order = directions_of(rows)
    return sorted(rows, key=lambda r: (r["seed"], order.index(r["direction"]))), meta or {}


def _read_json(path: str | Path) -> dict[str, Any]:
    import json

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def write_sweep_report(paths: Sequence[str | Path], out: str | Path,
                       name: str = "report") -> dict[str, Any]:
    """``out/<name>.{md,png,json}``: the tables, figure and summary of the sweep in
    ``paths`` (:func:`load_sweep`). Returns the JSON written."""
    from jaxprune.outputs import write_atomic
    from jaxprune.search.result import write_json

    rows, meta = load_sweep(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = " on ".join(str(meta[k]) for k in ("network", "data") if meta.get(k)) or \
        "PoZ search sweep"
    text = sweep_markdown(rows, title=title)
    write_atomic(out / f"{name}.md", lambda tmp: tmp.write_text(text + "\n"))
    plot_sweep(rows, out / f"{name}.png", title=title)
    payload = {"sources": [str(p) for p in paths], **meta, "summary": sweep_summary(rows),
               "rows": rows}
    write_json(out / f"{name}.json", payload)
    print(text)
    return payload
