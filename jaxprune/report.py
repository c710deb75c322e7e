"""Tables (seed mean ± sd) and figures of search results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxprune.search.result import PruneResult


def mean_sd(values: Sequence[float], digits: int = 2) -> str:
    """``"m ± sd"`` over seeds (population sd); ``"m"`` for one value."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def search_table(
    results: dict[str, list[PruneResult]], jaccard: Sequence[dict[str, float]] = ()
) -> str:
    """Kept units per layer, compression rate and final fit per direction (mean ± sd over
    seeds), and the Jaccard overlap of the directions' kept units."""
    first = next(iter(results.values()))[0]
    layers = list(first.masks)
    headers = ["direction", *(f"{n} ({first.widths[n]})" for n in layers), "compression",
               "fit"]
    rows = []
    for direction, rs in results.items():
        rows.append([direction]
                    + [mean_sd([r.kept[n] for r in rs], 1) for n in layers]
                    + [mean_sd([r.compression_rate for r in rs]) + "x",
                       mean_sd([r.final_score for r in rs], 3)])
    if jaccard:
        rows.append(["jaccard"] + [mean_sd([j[n] for j in jaccard], 2) for n in layers]
                    + ["", ""])
    return table(headers, rows)


def plot_traces(results: dict[str, list[PruneResult]], path: str | Path) -> Path:
    """One panel per direction: the fit of every evaluated candidate along the search, layer
    after layer (one line per seed), with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (direction, rs) in zip(axes[0], results.items(), strict=True):
        for s, r in enumerate(rs):
            xs, ys, start, bounds = [], [], 0, []
            for t in r.trace:
                xs += list(range(start + 1, start + 1 + len(t.scores)))
                ys += t.scores
                start += len(t.scores)
                bounds.append((start, t.layer))
            ax.plot(xs, ys, lw=1, alpha=0.8, label=f"seed {r.seed}" if s < 8 else None)
        for b, name in bounds:
            ax.axvline(b + 0.5, color="0.8", lw=0.8)
            ax.text(b, ax.get_ylim()[0], name, rotation=90, va="bottom", ha="right",
                    fontsize=7, color="0.4")
        ax.axhline(rs[0].threshold, color="k", ls="--", lw=1, label="threshold")
        ax.set(title=f"PoZ pruning, {direction}", xlabel="candidate removal (cumulative)",
               ylabel=f"fit to target ({rs[0].config.get('metric', 'r2')})")
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_curve(curve, path: str | Path) -> Path:
    """Fit against the fraction removed: PoZ order, random orders (median and 5–95 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    levels = np.asarray(curve.levels)
    if curve.random_fits:
        rf = np.asarray(curve.random_fits)
        ax.fill_between(levels, np.percentile(rf, 5, 0), np.percentile(rf, 95, 0),
                        color="0.85", label="random order 5–95 %")
        ax.plot(levels, np.median(rf, 0), color="0.5", label="random order median")
    ax.plot(levels, curve.fit, "o-", color="C3", label="PoZ order")
    ax.set(xlabel=f"fraction of {curve.layer} removed", ylabel="fit to target",
           title=f"PoZ fraction curve: {curve.layer}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
