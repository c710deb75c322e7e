"""The alignment job: a human RSM and a readout (a feature matrix, or a network on images) →
the embedding-level curve, cross-validated PoZ and supervised selection, the noise ceiling
and (for a network) the whole-network PoZ search against the human target.

Every user error is a ``ValueError`` raised before any long work: a human matrix that is not
square, symmetric or finite, or whose size is not the number of images; image / row names
that do not match the matrix's name list; fewer than 5 images per fold.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.align.curve import alignment_curve
from jaxprune.align.selection import CVConfig, check_folds, poz_selection, supervised_selection


@dataclass(frozen=True)
class HumanTarget:
    """A human similarity matrix ``[n, n]`` with its row names (None: unnamed rows)."""

    matrix: np.ndarray
    names: tuple[str, ...] | None
    spec: str
    set_name: str | None = None


@dataclass(frozen=True)
class AlignConfig:
    """Options of :func:`align_embedding`: ``n_random`` random removal orders, the CV folds,
    the seed of the random orders, orders per vectorised batch."""

    n_random: int = 1000
    cv: CVConfig = field(default_factory=CVConfig)
    seed: int = 0
    batch: int = 64


def load_human(spec: str, root: str | None = None) -> HumanTarget:
    """A human RSM from a Peterson set name (``animals`` …, from the shared data), or a file
    as :func:`jaxprune.data.load_target_rsm` reads it (``.npy``, ``.npz``, ``PATH.npz:KEY``,
    ``.csv``/``.txt``); an ``.npz`` key ``K`` brings its names from ``K_fnames`` if present."""
    from jaxprune.data import load_similarity_set, load_target_rsm, similarity_sets
    from jaxprune.data.core import DataNotFoundError
    from jaxprune.data.similarity import check_target_rsm, matrix_file

    path, key = matrix_file(spec)
    if not path.exists() and "/" not in spec and path.suffix == "":
        try:
            known = similarity_sets(root)
        except DataNotFoundError as e:
            raise ValueError(f"--human {spec}: not a file, and no shared similarity sets "
                             f"were found ({e})") from None
        if spec not in known:
            raise ValueError(f"--human {spec}: no such file or similarity set; sets: "
                             + ", ".join(known))
        s = load_similarity_set(spec, root, with_images=False)
        m = check_target_rsm(s.similarity, f"similarity set {spec}")
        return HumanTarget(m, s.file_names, spec, spec)
    m = load_target_rsm(spec)
    names = None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            key = key or next(k for k in z.files if not k.endswith("_fnames"))
            if f"{key}_fnames" in z.files:
                names = tuple(str(v) for v in z[f"{key}_fnames"])
    if names is not None and len(names) != len(m):
        raise ValueError(f"--human {spec}: {len(names)} names for a {len(m)}×{len(m)} matrix")
    return HumanTarget(m, names, spec, key)


def match_rows(row_names: tuple[str, ...] | None, human: HumanTarget, what: str) -> np.ndarray:
    """Indices putting rows named ``row_names`` in the human matrix's row order (identity
    when either side has no names). ``ValueError`` naming missing and extra names."""
    n = len(human.matrix)
    if row_names is None or human.names is None:
        return np.arange(n)
    rows = [str(r) for r in row_names]
    if len(set(rows)) != len(rows):
        raise ValueError(f"{what}: names repeat; every row needs its own name")
    missing = sorted(set(human.names) - set(rows))
    extra = sorted(set(rows) - set(human.names))
    if missing or extra:
        show = lambda v: ", ".join(v[:5]) + (f" … ({len(v)})" if len(v) > 5 else "")  # noqa: E731
        raise ValueError(f"{what} do not match the names of --human {human.spec}: "
                         + "; ".join(s for s in (f"missing {show(missing)}" if missing else "",
                                                 f"not in the matrix {show(extra)}"
                                                 if extra else "") if s)
                         + "; give the images (or labels) the matrix was measured on")
    where = {r: i for i, r in enumerate(rows)}
    return np.asarray([where[nm] for nm in human.names])


def check_alignment_inputs(n: int, human: HumanTarget, config: AlignConfig) -> None:
    """Sizes agree and the folds are large enough (before any work)."""
    m = len(human.matrix)
    if m != n:
        raise ValueError(f"--human {human.spec} is {m}×{m}, but there are {n} images/rows of "
                         "features; give the matrix of exactly these stimuli")
    check_folds(n, config.cv)
    if config.n_random < 0:
        raise ValueError(f"random orders must be >= 0, got {config.n_random}")


def check_features(features: np.ndarray, where: str) -> np.ndarray:
    """float32 ``[n, d]`` features, finite, d ≥ 2 (``ValueError`` otherwise)."""
    x = np.asarray(features)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: features must be a numeric [n, d] matrix, got "
                         f"{x.dtype} {x.shape}")
    if x.shape[1] < 2:
        raise ValueError(f"{where}: {x.shape[1]} feature column(s); at least 2 are needed")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: {int((~np.isfinite(x)).sum())} NaN/Inf entries")
    return x.astype(np.float32)


def align_embedding(features: np.ndarray, human: np.ndarray,
                    config: AlignConfig = AlignConfig()) -> dict[str, Any]:
    """Methods 1–3 on ``features [n, d]`` (rows in the order of ``human [n, n]``): the PoZ
    curve with its random control, CV PoZ selection and the supervised baseline."""
    times = {}
    t0 = time.perf_counter()
    curve = alignment_curve(features, human, n_random=config.n_random, seed=config.seed,
                            batch=config.batch)
    times["curve_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    poz = poz_selection(features, human, config.cv).summary()
    times["cv_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sup = supervised_selection(features, human, config.cv).summary()
    times["supervised_s"] = time.perf_counter() - t0
    c = curve.to_dict()
    return {"width": int(np.shape(features)[1]), "stimuli": int(np.shape(features)[0]),
            "unpruned_fit": c["fit"][0], "curve": c["fit"], "best_level": c["best_level"],
            "best_fit": c["best_fit"], "curve_detail": c, "cv": poz, "supervised": sup,
            "options": {"n_random": config.n_random, "seed": config.seed,
                        "cv": asdict(config.cv)}, "wall_time_s": times}


def chain_widths(family: str, state: dict[str, np.ndarray]) -> tuple[int, ...] | None:
    """Widths of a VGG/AlexNet-layout state dict, read from its bias lengths (so narrowed
    networks load too); None when a layer's bias is absent (the import then names it)."""
    from jaxprune.models import architecture
    from jaxprune.weights import TORCHVISION_PREFIXES

    arch = architecture(family)
    keys = [f"{TORCHVISION_PREFIXES[family][la.name]}.bias" for la in arch.layers]
    if not all(k in state for k in keys):
        return None
    return tuple(int(np.shape(state[k])[0]) for k in keys)


def network(model: str, pretrained: bool, weights: str | None,
            image_size: int | None) -> tuple[Any, dict]:
    """``(arch, params)`` of a registered network: the packaged weights (``pretrained``) or a
    torchvision-layout state dict ``weights`` (a VGG/AlexNet of any width)."""
    from jaxprune import models
    from jaxprune import weights as weight_io

    if (weights is None) == (not pretrained):
        raise ValueError(f"--model {model} needs exactly one of --pretrained and --weights PATH")
    try:
        path = weights or weight_io.pretrained_path(model)
    except ImportError as e:
        raise ValueError(str(e)) from None
    state = weight_io.read_state_dict(path)
    config: dict[str, Any] = {}
    if image_size is not None:
        config["input_shape"] = (image_size, image_size, 3)
    if model in weight_io.TORCHVISION_PREFIXES:
        widths = chain_widths(model, state)
        if widths is not None:
            config["widths"] = widths
    arch = models.architecture(model, **config)
    models.preprocessing(arch)  # a family without a stated preprocessing fails here
    return arch, weight_io.from_torchvision(arch, state)


def readout_features(arch: Any, params: dict, x: np.ndarray, batch: int = 40) -> np.ndarray:
    """The readout layer's post-ReLU features ``[n, d]`` (flattened), ``batch`` images per
    forward pass."""
    import jax

    from jaxprune import models

    fwd = jax.jit(lambda p, xb: models.apply(arch, p, None, xb)[1][arch.readout_layer])
    parts = [np.asarray(fwd(params, x[i:i + batch])) for i in range(0, len(x), batch)]
    f = np.concatenate(parts)
    return f.reshape(len(f), -1)


def whole_network_search(arch: Any, params: dict, x: np.ndarray, human: np.ndarray,
                         directions: tuple[str, ...] = ("bottom-up", "top-down"),
                         layers: tuple[str, ...] | None = None,
                         progress: bool = False, resume: str | Path | None = None
                         ) -> dict[str, Any]:
    """The PoZ search of every unit group with the human RSM as target and the unpruned
    network's own fit as threshold (``PoZConfig(threshold=None)`` with an external target),
    in each direction: units kept and fraction kept per group, compression rate, fit reached.
    ``resume``: a folder for one resume file per direction (``search_<direction>.json``,
    identity-checked by :func:`~jaxprune.search.poz_search_directions`), so a finished
    direction is read back instead of searched again."""
    import jax

    from jaxprune.masks import jaccard
    from jaxprune.search import PoZConfig, poz_search_directions

    stacked = jax.tree.map(lambda a: a[None], params)
    config = PoZConfig(layers=tuple(layers) if layers else None)
    out: dict[str, Any] = {"layers": list(layers) if layers else "all",
                           "threshold": "the unpruned network's fit to the human RSM"}
    masks = {}
    for d in directions:
        path = None if resume is None else str(Path(resume) / f"search_{d}.json")
        t0 = time.perf_counter()
        search = poz_search_directions(arch, stacked, x, config, directions=(d,), stacked=True,
                                       target_rsm=human, progress=progress, resume_path=path)
        (r,) = search.results[d]
        masks[d] = r.masks
        out[d] = {"kept": r.kept, "fraction_kept": {k: r.kept[k] / r.widths[k] for k in r.kept},
                  "compressed_groups": [k for k in r.kept if r.kept[k] < r.widths[k]],
                  "compression_rate": r.compression_rate, "threshold": r.threshold,
                  "unpruned_fit": r.baseline_score, "fit": r.final_score,
                  "search_wall_time_s": r.wall_time_s, "this_call_s": time.perf_counter() - t0}
    if len(masks) == 2:
        out["jaccard"] = jaccard(*masks.values())
    return out


def load_features(spec: str) -> np.ndarray:
    """A feature matrix from ``.npy``, ``.npz`` (its only array, or ``PATH.npz:KEY``) or
    ``.csv``/``.txt``."""
    from jaxprune.data.similarity import _read_matrix

    try:
        return _read_matrix(spec)
    except FileNotFoundError:
        raise ValueError(f"--features {spec}: no such file") from None
    except ValueError as e:
        raise ValueError(str(e).replace("target RSM", "--features")) from None


def load_labels(path: str) -> tuple[str, ...]:
    """Row names: a text file with one name per line, or a ``.npy`` of strings."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--labels {path}: no such file")
    if p.suffix == ".npy":
        return tuple(str(v) for v in np.load(p, allow_pickle=False).ravel())
    return tuple(line.strip() for line in p.read_text().splitlines() if line.strip())


def noise_ceiling(human: HumanTarget, root: str | None = None) -> dict[str, Any] | None:
    """The split-half reliability of the animals judgments (Spearman-Brown corrected, from the
    two batches of ``turkResults_CogSci2016.mat``) as the ceiling of the R² fit; None for
    other sets or without the file."""
    from jaxprune.data import split_half_reliability
    from jaxprune.data.core import DataNotFoundError
    from jaxprune.data.similarity import matrix_file

    if human.set_name != "animals":
        return None
    path, _ = matrix_file(human.spec)
    folder = str(path.parent) if path.is_file() else root
    try:
        rel = split_half_reliability(folder, "animals")
    except (DataNotFoundError, ValueError):
        return None
    return {"reliability": rel, "ceiling_r2": rel,
            "note": "Spearman-Brown corrected split-half reliability of the two batches; "
                    "under classical test theory the largest expected R² of any model"}


@dataclass(frozen=True)
class AlignInputs:
    """What ``jaxprune align`` reads: a feature matrix (``features``, optional ``labels``
    naming its rows) or a network (``model`` with ``pretrained`` or ``weights``) on the
    images of ``images`` (``image_size``: the input size, default the network's)."""

    human: str
    features: str | None = None
    labels: str | None = None
    model: str | None = None
    pretrained: bool = False
    weights: str | None = None
    images: str | None = None
    image_size: int | None = None
    data_root: str | None = None


def prepare(inputs: AlignInputs, config: AlignConfig, progress: bool = True) -> tuple:
    """Load and check everything: ``(features or None, x or None, arch, params, human,
    provenance)`` with rows in the human matrix's order. Network features are not computed
    here; every check is done before."""
    from jaxprune.data import load_image_folder
    from jaxprune.provenance import fingerprint

    if (inputs.features is None) == (inputs.model is None):
        raise ValueError("give either --features F.npy or --model NAME (with --images DIR)")
    human = load_human(inputs.human, inputs.data_root)
    if inputs.features is not None:
        for flag in ("pretrained", "weights", "images", "image_size"):
            if getattr(inputs, flag):
                raise ValueError(f"--{flag.replace('_', '-')} goes with --model, not --features")
        x = check_features(load_features(inputs.features), f"--features {inputs.features}")
        names = load_labels(inputs.labels) if inputs.labels else None
        if names is not None and len(names) != len(x):
            raise ValueError(f"--labels {inputs.labels}: {len(names)} names for {len(x)} rows")
        check_alignment_inputs(len(x), human, config)
        idx = match_rows(names, human, f"--labels {inputs.labels}")
        return x[idx], None, None, None, human, {"features_hash": fingerprint(x)}
    if inputs.labels:
        raise ValueError("--labels goes with --features; with --images the file names are used")
    if inputs.images is None or not Path(inputs.images).is_dir():
        raise ValueError(f"--model {inputs.model} needs --images DIR (a folder of the stimulus "
                         f"images); {inputs.images!r} is not a folder")
    arch, params = network(inputs.model, inputs.pretrained, inputs.weights, inputs.image_size)
    ds = load_image_folder(inputs.images, model=arch, progress=progress)
    check_alignment_inputs(len(ds.file_names), human, config)
    idx = match_rows(ds.file_names, human, f"the images of {inputs.images}")
    prov = {"params_hash": fingerprint(params), "images_hash": fingerprint(ds.images),
            "input_shape": list(arch.input_shape), "readout": arch.readout_layer}
    return None, ds.float_images()[idx], arch, params, human, prov


def align_command(inputs: AlignInputs, config: AlignConfig = AlignConfig(), *,
                  search: tuple[str, ...] = (), search_layers: tuple[str, ...] | None = None,
                  figure: str | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """``jaxprune align``: methods 1–3 (and, for a network, the whole-network search in the
    ``search`` directions), the noise ceiling where known, a figure; the JSON payload."""
    from jaxprune.provenance import file_hash, fingerprint, identity

    features, x, arch, params, human, prov = prepare(inputs, config, progress)
    if search and arch is None:
        raise ValueError("--search needs --model (a network to prune), not --features")
    t0 = time.perf_counter()
    if features is None:
        features = readout_features(arch, params, x)
    feature_s = time.perf_counter() - t0
    result = align_embedding(features, human.matrix, config)
    result["wall_time_s"]["features_s"] = feature_s
    result["noise_ceiling"] = noise_ceiling(human, inputs.data_root)
    if search:
        result["search"] = whole_network_search(arch, params, x, human.matrix, search,
                                                search_layers, progress)
    from jaxprune.data.similarity import matrix_file

    hpath, _ = matrix_file(human.spec)
    result["network"] = inputs.model or "features"
    result["provenance"] = identity(
        command="align", **asdict(inputs), options=result["options"],
        human_hash=file_hash(str(hpath)) if hpath.is_file() else None,
        human_matrix_hash=fingerprint(human.matrix),
        search=list(search), search_layers=list(search_layers or []), **prov)
    from jaxprune.align.report import plot_alignment, text_table

    print(text_table({human.set_name or human.spec: result}))
    if figure:
        plot_alignment(result, figure, title=f"{result['network']} vs {human.spec}")
    return result
