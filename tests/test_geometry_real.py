"""Geometry on real data: MNIST pixels and random ReLU features against rsatoolbox and SciPy;
the Peterson et al. human similarity judgments (120×120 float64) as an external RSM.

Tolerances (float32 against float64): RSM entries 1e-5, fits 1e-5 (Spearman against
rsatoolbox's float64 RDMs, whose near-ties can rank differently: 1e-4), CKA 1e-5.
"""

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import rsatoolbox
from scipy.stats import pearsonr, spearmanr

from jaxprune import geometry as g

N = 300


@pytest.fixture(scope="module")
def mnist(shared_data: Path) -> np.ndarray:
    """The first N test images as float64 pixels in [0, 1], ``[N, 784]``."""
    path = shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with gzip.open(path) as f:
        magic, count, rows, cols = np.frombuffer(f.read(16), ">i4")
        assert magic == 2051 and count >= N
        pixels = np.frombuffer(f.read(N * rows * cols), np.uint8)
    return pixels.reshape(N, rows * cols) / 255.0


@pytest.fixture(scope="module")
def features(mnist: np.ndarray) -> np.ndarray:
    """A random projection + ReLU of the pixels, ``[N, 84]`` (LeNet's penultimate width)."""
    w = np.random.default_rng(0).normal(size=(784, 84)) / np.sqrt(784)
    return np.maximum(mnist @ w - 0.2, 0)


def rdms(x: np.ndarray, method: str) -> rsatoolbox.rdm.RDMs:
    return rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)


def test_rsm_matches_rsatoolbox(mnist: np.ndarray, features: np.ndarray) -> None:
    for x in (mnist, features):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", g.ConstantRowWarning)
            r = np.asarray(g.rsm(x))
        ok = np.ptp(x, axis=1) > 0  # rsatoolbox gives NaN for constant rows
        ref = rdms(x[ok], "correlation").get_matrices()[0]
        np.testing.assert_allclose(1 - r[np.ix_(ok, ok)], ref, atol=1e-5)
    d = np.asarray(g.rsm(mnist, "euclidean"))
    ref = rdms(mnist, "euclidean").get_matrices()[0]  # ‖x_i − x_j‖² / d
    np.testing.assert_allclose(d**2 / mnist.shape[1], ref, rtol=1e-4, atol=1e-5)


def test_rsa_matches_rsatoolbox_and_scipy(mnist: np.ndarray, features: np.ndarray) -> None:
    a, b = rdms(mnist, "correlation"), rdms(features, "correlation")
    ra, rb = g.rsm(mnist), g.rsm(features)
    iu = np.triu_indices(N, 1)
    va, vb = np.asarray(ra, np.float64)[iu], np.asarray(rb, np.float64)[iu]
    r = float(g.rsa(ra, rb))
    assert r == pytest.approx(rsatoolbox.rdm.compare(a, b, method="corr")[0, 0], abs=1e-5)
    assert r == pytest.approx(pearsonr(va, vb)[0], abs=1e-5)
    rho = float(g.rsa(ra, rb, "spearman"))
    assert rho == pytest.approx(rsatoolbox.rdm.compare(a, b, method="spearman")[0, 0], abs=1e-4)
    assert rho == pytest.approx(spearmanr(va, vb)[0], abs=1e-5)
    # the feature-space path and the direct path on the same pair
    for path in ("gram", "direct"):
        assert float(g.feature_rsa(mnist, features, path=path)) == pytest.approx(r, abs=1e-5)


def test_human_similarity_as_target(shared_data: Path, features: np.ndarray) -> None:
    path = shared_data / "peterson" / "peterson_similarity.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    sets = np.load(path, allow_pickle=False)
    human, other = sets["animals"], sets["fruits"]  # float64 [120, 120]
    assert human.dtype == np.float64
    model = np.corrcoef(features[:120])
    iu = np.triu_indices(120, 1)
    for target in (model, other):
        assert float(g.rsa(human, target)) == pytest.approx(
            pearsonr(human[iu], target[iu])[0], abs=1e-5
        )
        # The ratings hold float64 rounding noise (175 distinct values, 133 after rounding to
        # 9 decimals); ranks are taken after the cast to float32, where those are ties.
        h32, t32 = human.astype(np.float32)[iu], target.astype(np.float32)[iu]
        assert float(g.rsa(human, target, "spearman")) == pytest.approx(
            spearmanr(h32, t32)[0], abs=1e-5
        )


def test_cka_on_real_features(mnist: np.ndarray, features: np.ndarray) -> None:
    x, y = mnist - mnist.mean(0), features - features.mean(0)
    k, l = x @ x.T, y @ y.T
    ref = np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))  # ⟨HKH, HLH⟩ normalised
    assert float(g.cka(mnist, features)) == pytest.approx(ref, abs=1e-5)
    assert float(g.cka(mnist, features, path="kernel")) == pytest.approx(ref, abs=1e-5)


def test_poz_on_real_features(features: np.ndarray) -> None:
    np.testing.assert_allclose(g.poz(features), (features == 0).mean(0), atol=1e-6)
