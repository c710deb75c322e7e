"""Human similarity judgments (Peterson, Abbott & Griffiths 2018) with their images.

Layout of the `peterson` folder (searched as `<data root>/peterson`, see
`data_search_paths`, unless `root` is given):
  peterson_similarity.npz        `<set>`: float64 [120, 120] similarity in [0, 1];
                                 `<set>_fnames`: the 120 file names in row order
  images/<set>/<file>            the stimuli (not shipped for every set: pass image_dir)
  turkResults_CogSci2016.mat     the authors' animals file with two split-half batches
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cached
from .core import DataFormatError, DataNotFoundError
from .datasets import data_search_paths
from .files import fingerprint
from .images import LOADER_VERSION, decode_entries, imagenet_normalize

SIMILARITY_FILE = "peterson_similarity.npz"
TURK_FILE = "turkResults_CogSci2016.mat"


@dataclass(frozen=True, eq=False)
class SimilaritySet:
    """One human similarity set.

    similarity: float64 [n, n], symmetric, diagonal 1, values in [0, 1].
    file_names: n image file names in row order.
    images: uint8 [n, size, size, 3] preprocessed (ImageNet style) in row order, or
        None when loaded with `with_images=False`.
    """

    name: str
    similarity: np.ndarray
    file_names: tuple[str, ...]
    images: np.ndarray | None
    image_dir: str = ""

    def __len__(self) -> int:
        return len(self.file_names)

    def float_images(self) -> np.ndarray:
        """float32 [n, size, size, 3], ImageNet-normalised."""
        if self.images is None:
            raise ValueError(f"{self.name}: loaded without images")
        return imagenet_normalize(self.images)


def find_similarity_root(root: str | os.PathLike | None = None) -> Path:
    """Folder holding peterson_similarity.npz: `root` (or root/peterson), else data roots."""
    if root is not None:
        candidates = [Path(root).expanduser(), Path(root).expanduser() / "peterson"]
    else:
        candidates = [r / "peterson" for r in data_search_paths()]
    for c in candidates:
        if (c / SIMILARITY_FILE).is_file():
            return c
    tried = "\n".join(f"  {c / SIMILARITY_FILE}" for c in candidates)
    raise DataNotFoundError(f"no {SIMILARITY_FILE} found; tried:\n{tried}\n"
                            "pass root= or set JAXPRUNE_DATA")


def similarity_sets(root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Names of the sets in peterson_similarity.npz."""
    with np.load(find_similarity_root(root) / SIMILARITY_FILE, allow_pickle=False) as z:
        return tuple(sorted(k for k in z.files if not k.endswith("_fnames")))


def load_similarity_set(
    name: str,
    root: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    size: int = 224,
    *,
    with_images: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> SimilaritySet:
    """A similarity set with its images, preprocessed to uint8 [120, size, size, 3].

    Images come from `image_dir`, else `<root>/images/<name>/`; every file named in
    `<name>_fnames` must be there (the error lists all missing ones). Decoded images
    are cached on disk.
    """
    folder = find_similarity_root(root)
    path = folder / SIMILARITY_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (name, f"{name}_fnames") if k in z.files}
            available = sorted(k for k in z.files if not k.endswith("_fnames"))
    except Exception as e:  # zip/npy errors of a damaged file
        raise DataFormatError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if name not in arrays:
        raise ValueError(f"unknown similarity set {name!r}; available: {', '.join(available)}")
    if f"{name}_fnames" not in arrays:
        raise DataFormatError(f"{path}: lacks key {name}_fnames")
    sim = np.asarray(arrays[name], dtype=np.float64)
    fnames = tuple(str(f) for f in arrays[f"{name}_fnames"])
    n = len(fnames)
    if sim.shape != (n, n):
        raise DataFormatError(f"{path}: {name} is {sim.shape}, but there are {n} file names")
    if not with_images:
        return SimilaritySet(name, sim, fnames, None)

    img_dir = Path(image_dir).expanduser() if image_dir is not None else folder / "images" / name
    missing = [f for f in fnames if not (img_dir / f).is_file()]
    if missing:
        hint = "" if image_dir is not None else " (pass image_dir= with the set's images)"
        raise DataNotFoundError(
            f"{len(missing)} of {n} images of {name!r} are missing from {img_dir}{hint}: "
            + ", ".join(missing))

    def build() -> dict[str, np.ndarray]:
        items = [(f, img_dir / f) for f in fnames]
        return {"images": decode_entries(items, size, desc=f"decoding {name}")}

    key = {"version": LOADER_VERSION, "size": size, "files": list(fnames),
           "sources": [fingerprint(img_dir / f) for f in fnames]}
    images = cached("similarity_images", key, build, cache_dir=cache_dir, enabled=cache)["images"]
    return SimilaritySet(name, sim, fnames, images, str(img_dir))


def split_half_reliability(
    root: str | os.PathLike | None = None, name: str = "animals", method: str = "pearson",
) -> float:
    """Spearman-Brown corrected split-half reliability of the human similarity matrix.

    From `turkResults_CogSci2016.mat` (animals only): the judgments were collected in
    two batches, `simMatrixFirstBatch` and `simMatrixSecondBatch` (each 120x120 on the
    0-10 scale; their mean is `simMatrix`). r = correlation (Pearson, or Spearman with
    method="spearman") of their upper triangles (k=1, 7,140 pairs); the reliability of
    the full (two-batch) matrix is 2r / (1 + r). For the shared file: r = 0.913,
    corrected 0.955 (Pearson).
    """
    import scipy.io
    from scipy import stats

    if name != "animals":
        raise ValueError(f"split-half batches exist only for 'animals', not {name!r}")
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', not {method!r}")
    folder = find_similarity_root(root)
    path = folder / TURK_FILE
    if not path.is_file():
        raise DataNotFoundError(f"split-half data {path} not found")
    try:
        mat = scipy.io.loadmat(path)
        a = np.asarray(mat["simMatrixFirstBatch"], dtype=np.float64)
        b = np.asarray(mat["simMatrixSecondBatch"], dtype=np.float64)
    except Exception as e:  # loadmat raises many kinds for bad files
        raise DataFormatError(f"{path}: no readable split-half batches "
                              f"({type(e).__name__}: {e})") from e
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise DataFormatError(f"{path}: batch shapes {a.shape} and {b.shape} differ")
    iu = np.triu_indices(a.shape[0], k=1)
    x, y = a[iu], b[iu]
    if method == "pearson":
        r = float(stats.pearsonr(x, y).statistic)
    else:
        r = float(stats.spearmanr(x, y).statistic)
    return 2.0 * r / (1.0 + r)


#: File formats :func:`load_target_rsm` reads.
MATRIX_FORMATS = (".npy", ".npz (one array, or PATH.npz:KEY)", ".csv / .txt of numbers")


def load_target_rsm(spec: str | os.PathLike) -> np.ndarray:
    """An external target RSM ``[n, n]`` (float64) from ``.npy``, ``.npz`` (its only array, or
    ``PATH.npz:KEY``) or ``.csv``/``.txt`` (numbers separated by commas or spaces).

    Refused with ``ValueError`` (naming the file): other formats, non-numeric entries, a
    matrix that is not square, has fewer than 3 rows, has NaN/Inf, is not symmetric (to
    ``1e-6`` of its largest entry), or whose off-diagonal entries are all equal (a constant
    target has no geometry to fit: every fit to it would be undefined)."""
    return check_target_rsm(_read_matrix(str(spec)), str(spec))


def check_target_rsm(m: np.ndarray, where: str) -> np.ndarray:
    """The checks of :func:`load_target_rsm` on a matrix in memory (``where`` names it in the
    errors): square, at least 3×3, finite, symmetric, not constant off the diagonal."""
    m = np.asarray(m, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"target RSM {where} has shape {m.shape}; it must be square [n, n]")
    if m.shape[0] < 3:
        raise ValueError(f"target RSM {where} is {m.shape[0]}×{m.shape[0]}; at least 3×3")
    bad = ~np.isfinite(m)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"target RSM {where} has {int(bad.sum())} NaN/Inf entries "
                         f"(first at row {i}, column {j})")
    scale = max(float(np.abs(m).max()), 1e-300)
    asym = float(np.abs(m - m.T).max())
    if asym > 1e-6 * scale:
        raise ValueError(f"target RSM {where} is not symmetric (largest |m - mᵀ| = {asym:.3g}); "
                         "give a similarity or dissimilarity matrix")
    upper = m[np.triu_indices(m.shape[0], 1)]
    if np.ptp(upper) <= 1e-12 * scale:
        raise ValueError(f"target RSM {where} is constant off the diagonal ({upper[0]:.6g}): "
                         "it has no geometry to fit")
    return m


def matrix_file(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``(file, npz key or None)`` of a :func:`load_target_rsm` spec (``PATH.npz:KEY``)."""
    spec = str(spec)
    if ".npz:" in spec:
        path, key = spec.rsplit(":", 1)
        return Path(path), key
    return Path(spec), None


def _read_matrix(spec: str) -> np.ndarray:
    p, key = matrix_file(spec)
    if not p.is_file():
        raise FileNotFoundError(f"target RSM {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            m = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            m = _npz_array(p, key)
        elif suffix in (".csv", ".txt"):
            text = p.read_text().replace(",", " ")
            m = np.loadtxt(text.splitlines(), ndmin=2)
        else:
            raise ValueError(f"target RSM {p}: unknown format {suffix or '(none)'}; accepted: "
                             + ", ".join(MATRIX_FORMATS))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"target RSM {p} cannot be read as {suffix} ({e})") from None
    except ValueError as e:
        if "unknown format" in str(e) or "has keys" in str(e):
            raise
        raise ValueError(f"target RSM {p} does not hold numbers ({e}); accepted: "
                         + ", ".join(MATRIX_FORMATS)) from None
    if not np.issubdtype(np.asarray(m).dtype, np.number) or np.asarray(m).dtype == bool:
        raise ValueError(f"target RSM {p} holds {np.asarray(m).dtype} values, not numbers")
    return np.asarray(m, np.float64)


def _npz_array(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if key is None and len(keys) == 1:
            key = keys[0]
        if key not in keys:
            raise ValueError(f"target RSM {path} has keys {keys}; name one as {path}:KEY")
        return z[key]
