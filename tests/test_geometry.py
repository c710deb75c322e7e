"""PoZ, RSMs and RSA fits against NumPy/SciPy/rsatoolbox; definitions, warnings and errors.

Tolerances: float32 results against float64 references within 1e-5 (RSM entries and fits of
well-conditioned random data; see the individual tests).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rsatoolbox
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

from jaxprune import geometry as g

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 12))
Y = np.maximum(RNG.normal(size=(30, 20)), 0)
IU = np.triu_indices(30, 1)


def rdm(x: np.ndarray, method: str) -> np.ndarray:
    """rsatoolbox RDM as a square matrix."""
    rdms = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)
    return rdms.get_matrices()[0]


# ---------------------------------------------------------------- poz
def test_poz_dense_and_conv() -> None:
    acts = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.5], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    np.testing.assert_allclose(g.poz(acts), [0.75, 0.25, 0.75])
    np.testing.assert_allclose(g.poz(acts, eps=0.6), [0.75, 0.25, 1.0])
    conv = np.maximum(RNG.normal(size=(5, 4, 3, 6)), 0)
    expected = (conv == 0).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(g.poz(conv), expected, rtol=1e-6)
    np.testing.assert_allclose(g.poz(conv[None], conv=True)[0], expected, rtol=1e-6)
    # leading batch axes on dense input need the explicit keyword
    stack = np.stack([acts, acts[::-1] * 0])
    np.testing.assert_allclose(g.poz(stack, conv=False), [[0.75, 0.25, 0.75], [1, 1, 1]])
    assert g.poz(acts).dtype == jnp.float32


def test_poz_errors() -> None:
    with pytest.raises(ValueError, match="conv"):
        g.poz(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="expects"):
        g.poz(np.zeros((3, 4)), conv=True)
    with pytest.raises(ValueError, match="NaN"):
        g.poz(np.array([[0.0, np.nan]]))


# ---------------------------------------------------------------- rsm
def test_rsm_pearson_matches_numpy_and_rsatoolbox() -> None:
    r = np.asarray(g.rsm(X))
    np.testing.assert_allclose(r, np.corrcoef(X), atol=1e-5)
    np.testing.assert_allclose(1 - r, rdm(X, "correlation"), atol=1e-5)  # rsatoolbox: 1 − r
    np.testing.assert_allclose(g.rsm(X, "pearson_sq"), np.corrcoef(X) ** 2, atol=1e-5)


def test_rsm_spearman_cosine_euclidean_match_scipy() -> None:
    ties = np.round(X * 2) / 2  # many ties: average ranks as in scipy
    np.testing.assert_allclose(g.rsm(ties, "spearman"), spearmanr(ties.T)[0], atol=1e-5)
    np.testing.assert_allclose(g.rsm(Y, "cosine"), 1 - squareform(pdist(Y, "cosine")), atol=1e-5)
    d = np.asarray(g.rsm(X, "euclidean"))
    np.testing.assert_allclose(d, squareform(pdist(X)), atol=1e-4)
    assert np.all(np.diag(d) == 0)
    # rsatoolbox's "euclidean" RDM is the squared distance divided by the number of features
    np.testing.assert_allclose(d**2 / X.shape[1], rdm(X, "euclidean"), atol=1e-4)


def test_constant_rows_defined_and_warned() -> None:
    x = X.copy()
    x[3] = 0.0
    x[5] = 0.7  # constant but non-zero: mean is not exactly representable
    with pytest.warns(g.ConstantRowWarning, match="2 of 30"):
        r = np.asarray(g.rsm(x))
    assert np.all(r[3] == 0) and np.all(r[:, 5] == 0)  # diagonal included
    keep = np.setdiff1d(np.arange(30), [3, 5])
    np.testing.assert_allclose(r[np.ix_(keep, keep)], np.corrcoef(x[keep]), atol=1e-5)
    assert int(jax.jit(g.count_constant_rows)(x)) == 2
    with pytest.warns(g.ConstantRowWarning, match="all-zero"):
        c = np.asarray(g.rsm(x, "cosine"))
    assert np.all(c[3] == 0) and c[5, 5] == pytest.approx(1)
    with pytest.warns(g.ConstantRowWarning):
        z = np.asarray(g.standardize_rows(x))
    assert np.all(z[[3, 5]] == 0)
    np.testing.assert_allclose(np.linalg.norm(z[keep], axis=1), 1, atol=1e-6)


def test_tiny_rows_do_not_underflow() -> None:
    x = X * 1e-30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(g.rsm(x), np.corrcoef(X), atol=1e-5)


def test_no_warning_under_jit() -> None:
    x = np.zeros((4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = jax.jit(g.rsm)(x)
        fit = jax.jit(g.rsa)(r, r)
    assert np.all(np.asarray(r) == 0) and float(fit) == 0


def test_condition_means() -> None:
    labels = np.arange(30) % 4
    means = np.asarray(g.condition_means(X, labels, 5))
    np.testing.assert_allclose(means[:4], [X[labels == c].mean(0) for c in range(4)], atol=1e-6)
    assert np.all(means[4] == 0)  # empty class
    batched = g.condition_means(np.stack([X, 2 * X]), labels, 4)
    np.testing.assert_allclose(batched[1], 2 * means[:4], atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        g.condition_means(X, labels + 2, 4)
    with pytest.raises(ValueError, match="labels"):
        g.condition_means(X, labels[:-1], 4)


# ---------------------------------------------------------------- rsa
def test_rsa_matches_scipy_and_rsatoolbox() -> None:
    a, b = np.corrcoef(X), np.corrcoef(Y)
    r = float(g.rsa(a, b))
    assert r == pytest.approx(pearsonr(a[IU], b[IU])[0], abs=1e-6)
    assert float(g.rsa(a, b, squared=True)) == pytest.approx(r**2, abs=1e-6)
    assert float(g.r2(a, b)) == pytest.approx(r**2, abs=1e-6)
    rho = float(g.rsa(a, b, "spearman"))
    assert rho == pytest.approx(spearmanr(a[IU], b[IU])[0], abs=1e-5)
    ra = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="correlation")
    rb = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(Y), method="correlation")
    # Pearson/Spearman of 1 − r equal those of r: RDM and RSM fits agree.
    assert float(g.rsa(g.rsm(X), g.rsm(Y))) == pytest.approx(
        rsatoolbox.rdm.compare(ra, rb, method="corr")[0, 0], abs=1e-5
    )
    assert float(g.rsa(g.rsm(X), g.rsm(Y), "spearman")) == pytest.approx(
        rsatoolbox.rdm.compare(ra, rb, method="spearman")[0, 0], abs=1e-5
    )


def test_rsa_row_blocks_at_large_n() -> None:
    n = 2100  # > 2048: several row blocks, the last one shifted back
    a = RNG.normal(size=(n, n)).astype(np.float32)
    b = (a + RNG.normal(size=(n, n))).astype(np.float32)
    iu = np.triu_indices(n, 1)
    ref = pearsonr(a[iu].astype(np.float64), b[iu].astype(np.float64))[0]
    assert float(g.rsa(a, b)) == pytest.approx(ref, abs=1e-5)


def test_rsa_reads_only_the_strict_upper_triangle() -> None:
    a, b = np.corrcoef(X), np.corrcoef(Y)
    junk = np.tril(RNG.normal(size=a.shape))  # lower triangle and diagonal ignored
    assert float(g.rsa(np.triu(a, 1) + junk, b)) == pytest.approx(float(g.rsa(a, b)), abs=1e-6)


def test_rsa_float64_external_matrix() -> None:
    human = np.corrcoef(RNG.normal(size=(30, 50)))  # float64, like similarity judgments
    out = g.rsa(human, g.rsm(Y))
    assert out.dtype == jnp.float32
    assert float(out) == pytest.approx(pearsonr(human[IU], np.corrcoef(Y)[IU])[0], abs=1e-5)


def test_rsa_undefined_fit_is_zero_and_warned() -> None:
    flat = np.ones((30, 30))
    with pytest.warns(g.UndefinedFitWarning, match="1 of 1"):
        assert float(g.rsa(flat, np.corrcoef(X))) == 0.0
    with pytest.warns(g.UndefinedFitWarning):
        assert float(g.rsa(np.corrcoef(X), flat * 0.3, "spearman")) == 0.0
    assert bool(jax.jit(g.constant_triangle)(flat * 0.1))
    assert not bool(g.constant_triangle(np.corrcoef(X)))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), method=st.sampled_from(["pearson", "spearman"]))
def test_rsa_symmetric(seed: int, method: str) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 9, 9))
    ab, ba = float(g.rsa(a, b, method)), float(g.rsa(b, a, method))
    assert ab == pytest.approx(ba, abs=1e-6)
    assert -1 <= ab <= 1


def test_batching_and_vmap_equal_loops() -> None:
    stack = RNG.normal(size=(3, 2, 10, 6))
    loop = np.array([[np.corrcoef(s) for s in row] for row in stack])
    np.testing.assert_allclose(g.rsm(stack), loop, atol=1e-5)
    target = np.corrcoef(X[:10])
    fits = np.array([[pearsonr(target[np.triu_indices(10, 1)], m[np.triu_indices(10, 1)])[0]
                      for m in row] for row in loop])
    np.testing.assert_allclose(g.rsa(target, loop), fits, atol=1e-5)  # shared target
    np.testing.assert_allclose(g.rsa(loop, target), fits, atol=1e-5)
    flat = loop.reshape(6, 10, 10)
    vm = jax.vmap(g.rsa, in_axes=(None, 0))(target, flat)
    np.testing.assert_allclose(vm, fits.reshape(6), atol=1e-5)
    spear = jax.vmap(lambda m: g.rsa(target, m, "spearman"))(flat)
    np.testing.assert_allclose(spear, [float(g.rsa(target, m, "spearman")) for m in flat],
                               atol=1e-6)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call",
    [
        lambda: g.rsm(X, "kendall"),
        lambda: g.rsa(np.eye(5), np.eye(5), "kendall"),
        lambda: g.feature_rsa(X, Y, path="fast"),
        lambda: g.cka(X, Y, kernel="poly"),
        lambda: g.cka(X, Y, path="fast"),
    ],
)
def test_unknown_method_names(call) -> None:
    with pytest.raises(ValueError, match="unknown"):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda bad: g.rsm(bad),
        lambda bad: g.standardize_rows(bad),
        lambda bad: g.rsa(np.resize(bad, (30, 30)), np.eye(30)),
        lambda bad: g.feature_rsa(bad, Y),
        lambda bad: g.gram_rsa(np.asarray(g.standardize_rows(X)), bad),
        lambda bad: g.gram_stats(bad),
        lambda bad: g.cka(X, bad),
        lambda bad: g.condition_means(bad, np.zeros(30, int), 2),
    ],
)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_inf_rejected_in_eager_calls(call, value: float) -> None:
    bad = X.copy()
    bad[2, 3] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(bad)


def test_values_are_not_checked_under_jit() -> None:
    bad = X.copy()
    bad[2, 3] = np.nan
    assert np.isnan(np.asarray(jax.jit(g.rsm)(bad))[2]).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: g.rsm(X[:2]), "at least 3"),
        (lambda: g.rsm(X[0]), r"\[..., n, d\]"),
        (lambda: g.rsa(np.eye(2), np.eye(2)), "at least 3"),
        (lambda: g.rsa(np.eye(4), np.eye(5)), "different sizes"),
        (lambda: g.rsa(np.ones((4, 5)), np.ones((4, 5))), "square"),
        (lambda: g.feature_rsa(X, Y[:20]), "different numbers of stimuli"),
        (lambda: g.feature_rsa(X[:2], Y[:2]), "at least 3"),
        (lambda: g.gram_rsa(X, Y[:10]), "different numbers of stimuli"),
        (lambda: g.cka(X, Y[:10]), "different numbers of stimuli"),
        (lambda: g.cka(X[:2], Y[:2]), "at least 3"),
        (lambda: g.cka(X[:3], Y[:3], debiased=True), "at least 4"),
        (lambda: g.cka(X, Y, kernel="rbf", sigma=0.0), "sigma"),
        (lambda: g.MinibatchCKA.zeros().update(X[:3], Y[:3]), "at least 4"),
        (lambda: g.minibatch_cka([]), "at least one batch"),
    ],
)
def test_shape_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
