"""Tables (seed mean ± sd) and figures of search results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jaxprune.outputs import write_atomic

if TYPE_CHECKING:  # importing jaxprune.search loads JAX, Flax and Orbax
    from jaxprune.search.result import PruneResult


def mean_sd(values: Sequence[float], digits: int = 2) -> str:
    """``"m ± sd"`` over seeds (sample sd, ddof=1); ``"m"`` for one value."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
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
               "fit", "threshold"]
    rows = []
    for direction, rs in results.items():
        rows.append([direction]
                    + [mean_sd([r.kept[n] for r in rs], 1) for n in layers]
                    + [mean_sd([r.compression_rate for r in rs]) + "x",
                       mean_sd([r.final_score for r in rs], 3),
                       mean_sd([r.threshold for r in rs], 3)])
    if jaccard:
        rows.append(["jaccard"] + [mean_sd([j[n] for j in jaccard], 2) for n in layers]
                    + ["", "", ""])
    seeds = len(next(iter(results.values())))
    note = f"kept units per layer; mean ± sd over {seeds} seeds (ddof=1)\n" if seeds > 1 \
        else "kept units per layer (one seed)\n"
    return note + table(headers, rows)


def plot_traces(results: dict[str, list[PruneResult]], path: str | Path) -> Path:
    """One panel per direction: the fit of every evaluated candidate along the search (one line
    per seed), with the threshold. Each visited layer spans one unit of the x axis, candidate k
    of a layer of width w at ``layer + k/w``, so all seeds line up and every layer is labelled
    (legible for 1–16+ layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, (direction, rs) in zip(axes[0], results.items(), strict=True):
        aligned = len({tuple(t.layer for t in r.trace) for r in rs}) == 1
        for s, r in enumerate(rs):
            xs, ys = _trace_xy(r, aligned)
            ax.plot(xs, ys, lw=1, marker=".", ms=3, alpha=0.8,
                    label=f"seed {r.seed}" if s < 8 else None)
        if aligned:
            _label_layers(ax, [t.layer for t in rs[0].trace])
        ax.axhline(rs[0].threshold, color="k", ls="--", lw=1, label="threshold")
        ax.set(xlabel="layer visited (within a layer: fraction of its units removed)" if aligned
               else "candidate evaluated, in search order (the seeds visit layers in different "
                    "orders)",
               ylabel=f"fit to target ({rs[0].config.get('metric', 'r2')})",
               title=f"PoZ pruning, {direction}")
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _trace_xy(r: PruneResult, aligned: bool) -> tuple[list[float], list[float]]:
    """A result's fits along its trace: visit ``i`` at ``i + k/width`` (``aligned``), else
    the running count of candidates evaluated; NaN between visits."""
    xs, ys, done = [], [], 0
    for i, t in enumerate(r.trace):
        width = max(1, r.widths.get(t.layer, len(t.order)))
        ks = range(len(t.scores))
        xs += ([i + (k + 1) / width for k in ks] if aligned else [done + k + 1 for k in ks])
        xs.append(np.nan)
        ys += list(t.scores) + [np.nan]
        done += len(t.scores)
    return xs, ys


def _label_layers(ax, names: list[str]) -> None:
    """Shade alternate layers' spans and name each layer under its span."""
    for i in range(1, len(names), 2):
        ax.axvspan(i, i + 1, color="0.93", lw=0, zorder=0)
    ax.set_xlim(0, len(names))
    ax.set_xticks([i + 0.5 for i in range(len(names))])
    many = len(names) > 6
    ax.set_xticklabels(names, rotation=45 if many else 0, ha="right" if many else "center",
                       fontsize=7 if many else 8)


def _as_curves(curves) -> list:
    """A :class:`~jaxprune.search.curves.FractionCurve` or a ``CurveSet`` as a list of curves."""
    return list(getattr(curves, "curves", [curves]))


def curve_table(curves) -> str:
    """Per level: units removed, PoZ-order fit, largest kept PoZ and P(PoZ beats random),
    as mean ± sd (ddof=1) over seeds when there are several."""
    cs = _as_curves(curves)
    first = cs[0]
    rows = []
    for i, (level, k) in enumerate(zip(first.levels, first.removed, strict=True)):
        beats = [c.p_poz_beats_random[i] for c in cs if c.p_poz_beats_random]
        rows.append([f"{level:.2f}", k, mean_sd([c.fit[i] for c in cs], 3),
                     mean_sd([c.max_kept_poz[i] for c in cs], 2),
                     mean_sd(beats, 2) if beats else "-"])
    kind = "kept" if first.level_kind == "kept" else "removed"
    sd = ", mean ± sd over seeds (ddof=1)" if len(cs) > 1 else ""
    head = f"{first.layer}: {len(cs)} seed(s){sd}\n"
    return head + table([f"fraction {kind}", "removed", "fit", "max kept PoZ",
                         "P(PoZ > random)"], rows)


def plot_curve(curves, path: str | Path) -> Path:
    """Fit against the fraction removed (or kept): PoZ order (mean ± sd over seeds), random
    orders pooled over seeds (median and 5–95 %), and the largest kept PoZ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = _as_curves(curves)
    first = cs[0]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    levels = np.asarray(first.levels)
    if first.random_fits:
        rf = np.concatenate([np.asarray(c.random_fits) for c in cs])
        ax.fill_between(levels, np.percentile(rf, 5, 0), np.percentile(rf, 95, 0),
                        color="0.85", label="random order 5–95 %")
        ax.plot(levels, np.median(rf, 0), color="0.5", label="random order median")
    fits = np.asarray([c.fit for c in cs])
    sd = fits.std(0, ddof=1) if len(cs) > 1 else np.zeros(len(levels))
    ax.errorbar(levels, fits.mean(0), yerr=sd, fmt="o-", color="C3", capsize=2,
                label="PoZ order" + (f" (mean ± sd, {len(cs)} seeds)" if len(cs) > 1 else ""))
    ax.plot(levels, np.mean([c.max_kept_poz for c in cs], 0), "s--", color="C0", ms=3,
            label="max kept PoZ")
    kind = "kept" if first.level_kind == "kept" else "removed"
    ax.set(xlabel=f"fraction of {first.layer} {kind}", ylabel="fit to target / PoZ",
           title=f"PoZ fraction curve: {first.layer}")
    if kind == "kept":
        ax.invert_xaxis()
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (cells as given, converted with ``str``)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def plot_fraction_summary(curves, path: str | Path, *, title: str, note: str = "") -> Path:
    """Fraction curves of several seeds (a ``CurveSet`` or a list of curves) in one panel: the
    PoZ-order fit (mean ± sd over seeds), the random orders pooled over seeds (5–95 % band and
    median) on the left axis, and the largest kept PoZ (mean ± sd) on the right axis;
    ``note``: a second title line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = list(curves) if isinstance(curves, list | tuple) else _as_curves(curves)
    first, levels = cs[0], np.asarray(cs[0].levels)
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    if first.random_fits:
        rf = np.concatenate([np.asarray(c.random_fits) for c in cs])
        ax.fill_between(levels, np.percentile(rf, 5, 0), np.percentile(rf, 95, 0),
                        color="0.85", label=f"random orders, 5–95 % ({len(rf)} pooled)")
        ax.plot(levels, np.median(rf, 0), color="0.45", lw=1, label="random orders, median")
    for key, axis, style, label in (("fit", ax, "o-", "fit, PoZ order"),
                                    ("max_kept_poz", ax.twinx(), "s--", "max kept PoZ")):
        v = np.asarray([getattr(c, key) for c in cs], np.float64)
        sd = v.std(0, ddof=1) if len(cs) > 1 else np.zeros(len(levels))
        color = "C3" if key == "fit" else "C0"
        axis.errorbar(levels, v.mean(0), yerr=sd, fmt=style, color=color, capsize=2, ms=4,
                      label=label + (f" (mean ± sd, {len(cs)} seeds)" if len(cs) > 1 else ""))
        axis.set_ylim(-0.02, 1.04)  # both axes on one scale
        if key == "max_kept_poz":
            axis.set_ylabel("largest PoZ among kept units", color=color)
            axis.legend(fontsize=7, loc="lower right")
    kind = "kept" if first.level_kind == "kept" else "removed"
    ax.set(xlabel=f"fraction of {first.layer} units {kind}", ylabel="fit to the unpruned RSM")
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=9)
    if kind == "kept":
        ax.invert_xaxis()
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_redundancy(results: dict[str, list[dict]], path: str | Path, *, title: str) -> Path:
    """One row per data set of ``{data: [Redundancy.to_dict() per seed]}``: (left) the RSM's
    change ``1 − fit`` along the PoZ order (mean over seeds, log scale) against the tolerance
    ε, with the removable count k* marked; (right) held-out R² of the whole and of the kept
    embedding from the removed units at each level (mean ± sd), and at k*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.6 * len(results)), squeeze=False)
    for (left, right), (name, rs) in zip(axes, results.items(), strict=True):
        d = rs[0]["width"]
        frac = np.arange(1, d) / d
        change = 1.0 - np.asarray([r["fits"][1:] for r in rs], np.float64)
        left.plot(frac, np.clip(change.mean(0), 1e-7, None), "-", color="C3", lw=1.2,
                  label=f"1 − fit, PoZ order (mean, {len(rs)} seeds)")
        eps = np.mean([r["epsilon"] for r in rs])
        left.axhline(max(eps, 1e-7), color="k", ls="--", lw=1, label=f"ε (mean {eps:.2g})")
        k = np.mean([r["removable_fraction"] for r in rs])
        left.axvline(k, color="C2", lw=1, label=f"removable k*/d (mean {k:.2f})")
        left.set(yscale="log", xlabel="fraction of units removed (PoZ order)",
                 ylabel="change of the RSM, 1 − fit", title=f"{name}: RSM change")
        left.legend(fontsize=7)
        levels = np.asarray(rs[0]["levels"])
        for key, color, label in (("level_r2_full", "C0", "R², all units"),
                                  ("level_r2_kept", "C1", "R², kept units")):
            v = np.asarray([r[key] for r in rs], np.float64)
            sd = v.std(0, ddof=1) if len(rs) > 1 else np.zeros(len(levels))
            right.errorbar(levels, v.mean(0), yerr=sd, fmt="o-", color=color, ms=3, capsize=2,
                           label=label)
        right.plot([k], [np.mean([r["r2_full"] for r in rs])], "*", color="C2", ms=10,
                   label="R², all units, at k*")
        low = min(np.min(np.mean([r["level_r2_kept"] for r in rs], 0)), -0.05)
        right.set(xlabel="fraction of units removed (PoZ order)", ylim=(low - 0.05, 1.02),
                  ylabel="held-out R² from the removed units", title=f"{name}: what they carry")
        right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
