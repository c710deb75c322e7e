"""Tables and figures of the experiments' per-seed result files, shared by the scripts in
``experiments/`` and ``jaxprune report``: PoZ fraction curves (``curves_cifar10``) and what
removed features still carry (``redundant``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Per-seed keys of a redundant-features result summarised as mean and sd over seeds.
SUMMARY_KEYS = ("epsilon", "removable", "removable_fraction", "dead_units", "removed_min_poz",
                "r2_full", "r2_kept", "removed_variance_share")
LEVEL_KEYS = ("level_fit", "level_r2_full", "level_r2_kept")


# ----------------------------------------------------------------------------- fraction curves


def curves_of(entries: list[dict[str, Any]]) -> list:
    from jaxprune.search.curves import FractionCurve

    return [FractionCurve(**e["curve"]) for e in entries]


def curves_summary(entries: list[dict[str, Any]], width: int) -> dict[str, Any]:
    """Per level over seeds: mean ± sd of the fit and of the largest kept PoZ, the fraction of
    seeds whose PoZ fit beats their median random fit, and the mean/sd of the share of random
    orders below the PoZ order; the random orders' median fit (mean over seeds)."""
    from jaxprune.search.curves import summarize as curve_summary

    cs = curves_of(entries)
    out = {"seeds": len(cs), "width": width, **curve_summary(cs)}
    out["kept"] = [width - k for k in out["removed"]]
    if cs[0].random_fits:
        p = np.asarray([c.p_poz_beats_random for c in cs])
        med = np.asarray([np.median(np.asarray(c.random_fits), 0) for c in cs])
        out["p_random_below_poz_mean"] = p.mean(0).tolist()
        out["p_random_below_poz_sd"] = (p.std(0, ddof=1) if len(cs) > 1 else 0 * p[0]).tolist()
        out["random_median_fit_mean"] = med.mean(0).tolist()
    out["beats_definition"] = ("PoZ order beats random at a level for a seed when its fit is "
                               "above the median of that seed's random-order fits")
    return out


def curves_markdown(result: dict[str, Any]) -> str:
    """The summary as a markdown table with a header naming networks, data and options."""
    from jaxprune.report import markdown_table, mean_sd

    s, o = result["summary"], result["provenance"]["options"]
    cs = curves_of(result["per_seed"])
    rows = []
    for i, level in enumerate(s["levels"]):
        beats = s.get("fraction_of_seeds_poz_beats_median_random")
        rows.append([f"{level:.1f}", s["kept"][i], mean_sd([c.fit[i] for c in cs], 3),
                     f"{s['random_median_fit_mean'][i]:.3f}" if beats else "-",
                     mean_sd([c.max_kept_poz[i] for c in cs], 3),
                     f"{beats[i]:.2f}" if beats else "-",
                     mean_sd([c.p_poz_beats_random[i] for c in cs], 2) if beats else "-"])
    acc = [e["test_accuracy"] for e in result["per_seed"] if e["test_accuracy"] is not None]
    d = result["provenance"]["data"]
    quick = " (QUICK MODE: tiny networks)" if o["quick"] else ""
    rsm = "class-averaged (10×10)" if o["class_means"] else "per-image"
    head = (f"# PoZ fraction curves: {o['layer']}, {s['seeds']} seeds of "
            f"{len(result['provenance']['checkpoints'])} checkpoint(s){quick}\n\n"
            f"{d['note']}; {d['stimuli']} {d['split']} images, {rsm} {o['rsm_method']} RSMs, "
            f"fit = {o['metric']} of the upper triangles; {o['n_random']} random orders per "
            "seed; mean ± sd over seeds (ddof=1)"
            + (f"; test accuracy {mean_sd(acc, 3)}" if acc else "") + ".\n\n"
            f"*{s['beats_definition']}*; P(random < PoZ): share of a seed's random orders "
            "whose fit is below the PoZ order's.\n\n")
    return head + markdown_table(
        ["fraction kept", "units kept", "fit (PoZ order)", "random median fit",
         "max kept PoZ", "seeds where PoZ beats random", "P(random < PoZ)"], rows) + "\n"


def write_curves_report(result: dict[str, Any], out: Path,
                        name: str = "curves_cifar10") -> None:
    """``out/<name>.md`` and ``.png`` from a curves result; the table printed."""
    from jaxprune.outputs import write_atomic
    from jaxprune.report import plot_fraction_summary

    text = curves_markdown(result)
    write_atomic(out / f"{name}.md", lambda tmp: tmp.write_text(text))
    s, o = result["summary"], result["provenance"]["options"]
    plot_fraction_summary(curves_of(result["per_seed"]), out / f"{name}.png",
                          title=f"PoZ fraction curves, LeNet-5 {o['layer']} "
                                f"({s['seeds']} seeds{', quick' if o['quick'] else ''})",
                          note=f"{result['provenance']['data']['note']}; "
                               f"{result['provenance']['data']['stimuli']} test images, "
                               "class-mean RSMs")
    print(text)



# ----------------------------------------------------------------------------- redundant features


def _mean_sd(values: list) -> tuple[float | None, float | None]:
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)] if v.ndim == 1 else v
    if v.size == 0:
        return None, None
    sd = v.std(0, ddof=1) if len(v) > 1 else np.zeros_like(v[0])
    return np.asarray(v.mean(0)).tolist(), np.asarray(sd).tolist()


def redundant_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per data set: mean and sd (ddof=1) over seeds of ε, k*, its fraction, the dead units,
    the lowest PoZ among the k* removed units, both R² and the removed variance share; per
    level the fit and both R²."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(e["data"]["name"] for e in entries):
        rs = [e["result"] for e in entries if e["data"]["name"] == name]
        s: dict[str, Any] = {"seeds": len(rs), "width": rs[0]["width"],
                             "layer": next(e["layer"] for e in entries
                                           if e["data"]["name"] == name),
                             "levels": rs[0]["levels"], "level_removed": rs[0]["level_removed"]}
        for key in SUMMARY_KEYS + LEVEL_KEYS:
            s[f"{key}_mean"], s[f"{key}_sd"] = _mean_sd([r[key] for r in rs])
        out[name] = s
    return out


def _cell(s: dict[str, Any], key: str, digits: int = 3) -> str:
    m, sd = s[f"{key}_mean"], s[f"{key}_sd"]
    if m is None:
        return "n/a"
    return f"{m:.{digits}f}" if s["seeds"] == 1 else f"{m:.{digits}f} ± {sd:.{digits}f}"


def redundant_markdown(result: dict[str, Any]) -> str:
    """Both tables (per data set; per data set and level) with a header stating the
    criterion, the data and the options."""
    from jaxprune.report import markdown_table

    o, summary = result["provenance"]["options"], result["summary"]
    quick = " (QUICK MODE: tiny networks)" if o["quick"] else ""
    notes = "; ".join(f"{d['note']}, {d['stimuli']} {d['split']} images"
                      for d in result["provenance"]["data"].values())
    head = (f"# What the removed features still carry{quick}\n\n{notes}. Penultimate layer, "
            f"{'class-averaged' if o['class_means'] else 'per-image'} {o['rsm_method']} RSMs, "
            f"fit = {o['metric']} of the upper triangles; ridge penalty λ = α·tr(XᵀX)/k, α "
            f"from {o['alphas']} by leave-one-out on each training part, {o['folds']}-fold "
            "cross-validated R² "
            "(variance-weighted over the target units); mean ± sd over seeds (ddof=1).\n\n"
            f"**Criterion (a):** {result['criterion']} (n_boot = {o['n_boot']}).\n\n")
    rows = [[name, s["layer"], s["width"], s["seeds"], _cell(s, "epsilon", 4),
             _cell(s, "removable", 1), _cell(s, "removable_fraction"), _cell(s, "dead_units", 1),
             _cell(s, "removed_min_poz"), _cell(s, "r2_full"), _cell(s, "r2_kept"),
             _cell(s, "removed_variance_share")] for name, s in summary.items()]
    text = head + markdown_table(
        ["data", "layer", "units", "seeds", "ε", "removable k*", "fraction", "dead units",
         "lowest removed PoZ", "R² all units", "R² kept units", "removed variance share"],
        rows) + "\n\n## Per level (fraction removed in PoZ order)\n\n"
    level_rows = []
    for name, s in summary.items():
        for i, level in enumerate(s["levels"]):
            level_rows.append([name, f"{level:.1f}", s["level_removed"][i]] + [
                _level_cell(s, key, i) for key in LEVEL_KEYS])
    return text + markdown_table(["data", "removed", "units", "fit", "R² all units",
                                  "R² kept units"], level_rows) + "\n"


def _level_cell(s: dict[str, Any], key: str, i: int) -> str:
    m, sd = s[f"{key}_mean"][i], s[f"{key}_sd"][i]
    return f"{m:.3f}" if s["seeds"] == 1 else f"{m:.3f} ± {sd:.3f}"


def write_redundant_report(result: dict[str, Any], out: Path,
                           name: str = "redundant") -> None:
    """``out/<name>.md`` and ``.png`` from a redundant-features result; the tables
    printed."""
    from jaxprune.outputs import write_atomic
    from jaxprune.report import plot_redundancy

    text = redundant_markdown(result)
    write_atomic(out / f"{name}.md", lambda tmp: tmp.write_text(text))
    per_data: dict[str, list[dict[str, Any]]] = {}
    for e in result["per_seed"]:
        per_data.setdefault(e["data"]["name"], []).append(e["result"])
    quick = " (quick)" if result["provenance"]["options"]["quick"] else ""
    plot_redundancy(per_data, out / f"{name}.png", title=f"What removed units carry{quick}")
    print(text)


# ----------------------------------------------------------------------------- dispatch


def write_report(paths: list[str | Path], out: str | Path, name: str = "report") -> dict:
    """``jaxprune report``: the tables and figure of result files into ``out/<name>.*``.

    One fraction-curves or redundant-features result (``experiments/curves_cifar10.py``,
    ``experiments/redundant.py``) gets its experiment's tables and figure; sweep results
    (``experiments/aim1.py``, ``jaxprune prune --json``/``--resume``; one file or several
    shares) get :func:`jaxprune.sweep_report.write_sweep_report`. Returns a summary."""
    from jaxprune.sweep_report import _read_json, write_sweep_report

    first = _read_json(paths[0])
    kind = first.get("experiment")
    writers = {"curves_cifar10": write_curves_report, "redundant": write_redundant_report}
    if kind not in writers:
        return write_sweep_report(paths, out, name)
    if len(paths) > 1:
        raise ValueError(f"{paths[0]} is a {kind} result, which holds every seed: give it "
                         "alone (its experiment resumes and adds seeds to one file)")
    if not first.get("per_seed"):
        raise ValueError(f"{paths[0]} holds no finished seed yet")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers[kind](first, out, name)
    return {"summary": first["summary"]}
