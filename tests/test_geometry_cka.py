"""CKA against the published formulas written plainly in NumPy float64; invariances; minibatch.

Tolerance: float32 CKA within 1e-5 (absolute) of the float64 formulas on random data.
"""

import warnings

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ortho_group

from jaxprune import geometry as g

RNG = np.random.default_rng(2)
X = RNG.normal(size=(40, 10))
Y = np.maximum(X @ RNG.normal(size=(10, 25)) + RNG.normal(size=(40, 25)), 0)


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """tr(K H L H) / (n − 1)² (Gretton et al. 2005; Kornblith et al. 2019)."""
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, as used by Nguyen et al. (2021)."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    term = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(term) / (n * (n - 3))


def cka_reference(k: np.ndarray, l: np.ndarray, debiased: bool) -> float:
    h = hsic_unbiased if debiased else hsic_biased
    return h(k, l) / np.sqrt(h(k, k) * h(l, l))


def rbf(x: np.ndarray, sigma: float) -> np.ndarray:
    d = squareform(pdist(x))
    s = sigma * np.median(pdist(x))
    return np.exp(-(d**2) / (2 * s**2))


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_formulas_in_both_forms(debiased: bool) -> None:
    ref = cka_reference(X @ X.T, Y @ Y.T, debiased)  # raw (uncentred) features
    for path in ("feature", "kernel", "auto"):
        value = float(g.cka(X, Y, debiased=debiased, path=path))
        assert value == pytest.approx(ref, abs=1e-5), path
    n = len(X)
    hsic = hsic_unbiased(X @ X.T, Y @ Y.T) if debiased else hsic_biased(X @ X.T, Y @ Y.T)
    assert float(g.hsic(X, Y, debiased=debiased)) == pytest.approx(hsic, rel=1e-4)
    if not debiased:  # the feature-space identity of Kornblith et al.
        xc, yc = X - X.mean(0), Y - Y.mean(0)
        feat = np.sum((yc.T @ xc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
        assert float(g.cka(X, Y)) == pytest.approx(feat, abs=1e-5)
        assert n > 0


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_rbf_cka_matches_formula(debiased: bool, sigma) -> None:
    s = 1.0 if sigma is None else sigma
    ref = cka_reference(rbf(X, s), rbf(Y, s), debiased)
    assert float(g.cka(X, Y, "rbf", debiased, sigma)) == pytest.approx(ref, abs=1e-5)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 100.0),
    kernel=st.sampled_from(["linear", "rbf"]),
    debiased=st.booleans(),
)
def test_cka_invariances(seed: int, scale: float, kernel: str, debiased: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 6))
    y = x @ rng.normal(size=(6, 6)) + 0.5 * rng.normal(size=(16, 6))
    q = ortho_group.rvs(6, random_state=seed)
    base = float(g.cka(x, y, kernel, debiased))
    moved = float(g.cka(x, scale * y @ q, kernel, debiased))
    assert moved == pytest.approx(base, abs=1e-4)
    assert float(g.cka(y, x, kernel, debiased)) == pytest.approx(base, abs=1e-5)  # symmetric


def test_cka_self_and_batched() -> None:
    assert float(g.cka(X, X)) == pytest.approx(1.0, abs=1e-6)
    stack = np.stack([Y, Y * (RNG.random(25) > 0.5), Y[:, ::-1]])
    loop = [float(g.cka(X, s)) for s in stack]
    np.testing.assert_allclose(g.cka(X, stack), loop, atol=1e-6)  # shared x, leading axis
    vm = jax.jit(jax.vmap(lambda s: g.cka(X, s, debiased=True)))(stack)
    np.testing.assert_allclose(vm, [float(g.cka(X, s, debiased=True)) for s in stack], atol=1e-6)


def test_constant_representation_is_undefined_zero() -> None:
    same = np.ones((10, 4)) * np.arange(4.0)  # every stimulus identical
    with pytest.warns(g.UndefinedFitWarning):
        assert float(g.cka(X[:10], same)) == 0.0
    with pytest.warns(g.UndefinedFitWarning):
        assert float(g.cka(X[:10], same, "rbf", debiased=True)) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(jax.jit(g.cka)(X[:10], same)) == 0.0


def test_minibatch_cka_matches_mean_of_unbiased_hsic() -> None:
    batches = [(X[i : i + 10], Y[i : i + 10]) for i in range(0, 40, 10)]
    k = [(a @ a.T, b @ b.T) for a, b in batches]
    xy = np.mean([hsic_unbiased(a, b) for a, b in k])
    xx = np.mean([hsic_unbiased(a, a) for a, _ in k])
    yy = np.mean([hsic_unbiased(b, b) for _, b in k])
    ref = xy / np.sqrt(xx * yy)
    assert float(g.minibatch_cka(batches)) == pytest.approx(ref, abs=1e-5)
    acc = g.MinibatchCKA.zeros()
    for a, b in batches:
        acc = acc.update(a, b)
    assert int(acc.count) == 4 and float(acc.result()) == pytest.approx(ref, abs=1e-5)
    # as a lax.scan carry, jitted
    xs, ys = np.stack([a for a, _ in batches]), np.stack([b for _, b in batches])

    def step(state, batch):
        return state.update(*batch), None

    final, _ = jax.jit(lambda s: jax.lax.scan(step, s, (xs, ys)))(g.MinibatchCKA.zeros())
    assert float(final.result()) == pytest.approx(ref, abs=1e-5)
    # one large batch equals debiased CKA
    assert float(g.minibatch_cka([(X, Y)])) == pytest.approx(
        float(g.cka(X, Y, debiased=True)), abs=1e-6
    )
