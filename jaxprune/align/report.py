"""Figures and tables of alignment results (:func:`jaxprune.align.job.align_embedding`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.report import _save, table


def _fmt(s: Mapping[str, float], digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _p(v: float | None) -> str:
    return "–" if v is None else (f"{v:.2g}" if v < 0.001 else f"{v:.3f}")


def summary_rows(results: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """One row per (set, method): unpruned and pruned test fit (mean ± sd over folds), t, p,
    units kept."""
    rows = []
    for name, r in results.items():
        for key, label in (("cv", "PoZ"), ("supervised", "supervised")):
            c = r[key]
            t = "–" if c["t"] is None else f"{c['t']:.2f}"
            rows.append([name, label, f"{r['unpruned_fit']:.3f}",
                         f"{r['best_level']} / {r['best_fit']:.3f}" if key == "cv" else "",
                         _fmt(c["test_fit_unpruned"]), _fmt(c["test_fit_pruned"]), t,
                         _p(c["p"]), _fmt(c["units_kept"], 1)])
    return rows


HEADERS = ["set", "selection", "fit (all images)", "best level / fit", "test fit unpruned",
           "test fit pruned", "t", "p (one-sided)", "units kept"]


def text_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain-text summary table."""
    return table(HEADERS, summary_rows(results))


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as a markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in summary_rows(results)]
    return "\n".join(lines)


def plot_alignment(result: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Three panels: (a) fit against units removed in PoZ order, random orders (median and
    5–95 %), best level, PoZ quantiles, noise ceiling; (b) P(PoZ order beats random) per
    level; (c) cross-validated test fits, unpruned vs PoZ vs supervised selection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curve_detail"]
    fit = np.asarray(c["fit"])
    levels = np.arange(len(fit))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), gridspec_kw={"width_ratios": [3, 2, 1.4]})
    ax = axes[0]
    q = c["random_quantiles"]
    if q["q50"]:
        ax.fill_between(levels, q["q05"], q["q95"], color="0.85", label="random 5–95 %")
        ax.plot(levels, q["q50"], color="0.5", lw=1, label=f"random median ({c['n_random']})")
    ax.plot(levels, fit, color="C3", lw=1.5, label="PoZ order")
    ax.plot(c["best_level"], c["best_fit"], "k*", ms=12,
            label=f"best: {c['best_level']} removed, R² {c['best_fit']:.3f}")
    for pq in c["poz_quantiles"]:
        ax.axvline(pq["level"], color="C0", ls=":", lw=1)
        ax.text(pq["level"], ax.get_ylim()[0], f" PoZ q{int(pq['quantile'] * 100)}"
                f"={pq['poz']:.2f}", rotation=90, va="bottom", fontsize=7, color="C0")
    _ceiling(ax, result)
    ax.set(xlabel="readout units removed (PoZ order)", ylabel="R² to human RSM", title=title)
    ax2 = ax.twinx()
    ax2.plot(levels, c["max_kept_poz"], color="C0", lw=0.8, alpha=0.6)
    ax2.set_ylabel("largest kept PoZ", color="C0")
    ax.legend(fontsize=7, loc="upper left")
    if c["p_poz_beats_random"]:
        axes[1].plot(levels, c["p_poz_beats_random"], color="C2", lw=1)
    axes[1].axhline(0.5, color="k", ls="--", lw=0.8)
    axes[1].set(xlabel="readout units removed", ylabel="P(PoZ order beats random)",
                ylim=(-0.02, 1.02), title="random-order control")
    _cv_panel(axes[2], result)
    return _save(fig, path)


def _ceiling(ax, result) -> None:
    ceil = result.get("noise_ceiling")
    if ceil:
        ax.axhline(ceil["ceiling_r2"], color="k", ls="--", lw=1,
                   label=f"noise ceiling {ceil['ceiling_r2']:.3f}")


def _cv_panel(ax, result) -> None:
    cv, sup = result["cv"], result["supervised"]
    vals = [cv["per_fold"]["test_fit_unpruned"], cv["per_fold"]["test_fit_pruned"],
            sup["per_fold"]["test_fit_pruned"]]
    ax.boxplot(vals, showmeans=True)
    ax.set_xticks([1, 2, 3], ["unpruned", "PoZ", "supervised"])
    _ceiling(ax, result)
    ax.set(ylabel="test-pair R² (40 folds)", title="cross-validated")
    if result.get("noise_ceiling"):
        ax.legend(fontsize=7)


def plot_poz_cdf(pozs: Mapping[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Cumulative histograms of the readout units' PoZ, one line per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, poz in pozs.items():
        v = np.sort(np.asarray(poz))
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=name)
    ax.set(xlabel="PoZ of a readout unit over the set's images", ylabel="fraction of units",
           title=title or "cumulative PoZ histogram", xlim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_search_groups(results: Mapping[str, Mapping[str, Any]], path: str | Path,
                       title: str = "") -> Path | None:
    """One panel per set: the fraction of each unit group kept by the whole-network search in
    each finished direction (``results[set]["search"][direction]["fraction_kept"]``), with
    the compression rate and fit in the legend. None when no search has finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {name: {d: s for d, s in r["search"].items()
                   if isinstance(s, dict) and s.get("status") == "done"}
            for name, r in results.items()}
    done = {name: d for name, d in done.items() if d}
    if not done:
        return None
    fig, axes = plt.subplots(len(done), 1, figsize=(13, 2.6 * len(done)), squeeze=False)
    for ax, (name, searches) in zip(axes[:, 0], done.items(), strict=True):
        groups = list(next(iter(searches.values()))["fraction_kept"])
        step = 0.8 / len(searches)
        for i, (d, s) in enumerate(searches.items()):
            xs = np.arange(len(groups)) + (i - (len(searches) - 1) / 2) * step
            ax.bar(xs, [s["fraction_kept"][g] for g in groups], step,
                   label=f"{d}: {s['compression_rate']:.3f}×, fit {s['fit']:.4f}")
        low = min(min(s["fraction_kept"].values()) for s in searches.values())
        ax.set(ylabel="fraction kept", title=name, ylim=(max(0.0, low - 0.05), 1.01),
               xticks=range(len(groups)))
        ax.set_xticklabels(groups, rotation=45, ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(title)
    return _save(fig, path)
