"""Feature-space (Gram) Pearson RSA: equal to the direct n×n path and to float64 references,
constant rows included; reusable target statistics under vmap.

Tolerance: float32 Gram and direct paths agree with a float64 NumPy reference within 1e-5
(absolute, on r) here; the Gram path's sums are centred analytically, so this holds for
strongly positive (post-ReLU) RSMs too.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr

from jaxprune import geometry as g

RNG = np.random.default_rng(1)


def reference_rsm(v: np.ndarray) -> np.ndarray:
    """float64 Pearson RSM with the library's definition: a constant row's z-row is zero."""
    c = v - v.mean(1, keepdims=True)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    const = np.ptp(v, axis=1, keepdims=True) == 0
    z = np.where(const, 0.0, c / np.where(const, 1.0, norm))
    return z @ z.T


def reference_rsa(x: np.ndarray, y: np.ndarray) -> float:
    """float64: Pearson r between the upper triangles of the Pearson RSMs, constant rows → 0."""
    iu = np.triu_indices(len(x), 1)
    a, b = reference_rsm(x)[iu], reference_rsm(y)[iu]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(pearsonr(a, b)[0])


def condition(*xs: np.ndarray) -> float:
    """κ = max over sides of Σ_{i≤j} R² / Σ_{i<j} (R − mean)²: the float32 Gram path's error
    in r is about eps·κ (the diagonal enters its sums and must cancel)."""
    kappa = 0.0
    for x in xs:
        r = reference_rsm(x)
        tri = r[np.triu_indices(len(r), 1)]
        var = np.sum((tri - tri.mean()) ** 2)
        kappa = max(kappa, np.inf if var == 0 else (np.sum(tri**2) + np.sum(np.diag(r) ** 2)) / var)
    return kappa


def gram_reference(x: np.ndarray, y: np.ndarray) -> float:
    """float64, the plain Gram algebra: triangle sums = (full sums − diagonal) / 2 with
    Σ R = ‖Zᵀ1‖², Σ Rx∘Ry = ‖ZxᵀZy‖²_F, diagonal ‖z_i‖² = 1 (no constant rows)."""
    zx, zy = (v - v.mean(1, keepdims=True) for v in (x, y))
    zx, zy = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (zx, zy))
    n = len(x)
    m = n * (n - 1) / 2
    total = {k: (np.sum(v.sum(0) ** 2) - n) / 2 for k, v in (("x", zx), ("y", zy))}
    prod = {
        k: (np.sum((a.T @ b) ** 2) - n) / 2 for k, (a, b) in
        (("xy", (zx, zy)), ("xx", (zx, zx)), ("yy", (zy, zy)))
    }
    cov = prod["xy"] - total["x"] * total["y"] / m
    var_x, var_y = prod["xx"] - total["x"] ** 2 / m, prod["yy"] - total["y"] ** 2 / m
    return float(cov / np.sqrt(var_x * var_y))


def relu_features(n: int, d: int, seed: int) -> np.ndarray:
    """Post-ReLU features with strongly positive mean correlations (a hard case for float32)."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.random((n, 16)) @ rng.normal(size=(16, d)) * 0.2 + 1.0, 0)


def test_paths_match_float64_reference() -> None:
    n, d1, d2 = 600, 40, 24
    x = relu_features(n, d1, 0)
    y = np.maximum(x[:, :d2] + RNG.normal(size=(n, d2)), 0)
    ref = reference_rsa(x, y)
    assert gram_reference(x, y) == pytest.approx(ref, abs=1e-10)  # the algebra itself
    for path in ("gram", "direct", "auto"):
        assert float(g.feature_rsa(x, y, path=path)) == pytest.approx(ref, abs=1e-5)
    assert float(g.feature_rsa(x, y, squared=True)) == pytest.approx(ref**2, abs=1e-5)
    assert float(g.rsa(g.rsm(x), g.rsm(y))) == pytest.approx(ref, abs=1e-5)


# Few shapes (each is compiled once for each path), many data / constant-row patterns.
@settings(max_examples=16, deadline=None)
@given(
    shape=st.sampled_from([(3, 1, 4), (4, 6, 30), (13, 2, 3)]),
    n_const=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
@example(shape=(4, 6, 30), n_const=2, seed=2)  # κ ≈ 8000: two constant rows of four
def test_gram_equals_direct_with_constant_rows(shape, n_const, seed) -> None:
    n, d1, d2 = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d1))
    y = np.maximum(rng.normal(size=(n, d2)), 0)
    rows = rng.choice(n, size=min(n_const, n), replace=False)
    y[rows] = rng.choice([0.0, 0.3], size=(len(rows), 1))  # all-zero or constant rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", g.GeometryWarning)
        gram = float(g.feature_rsa(x, y, path="gram"))
        direct = float(g.feature_rsa(x, y, path="direct"))
    assert direct == pytest.approx(reference_rsa(x, y), abs=2e-5)
    kappa = condition(x, y)  # few stimuli, mostly constant rows: κ can be large
    if np.isinf(kappa):
        assert gram == direct == 0.0
    else:
        assert gram == pytest.approx(direct, abs=2e-5 + 8 * np.finfo(np.float32).eps * kappa)


def test_constant_rows_warn_and_undefined_fit_is_zero() -> None:
    x = RNG.normal(size=(20, 5))
    y = np.zeros((20, 6))
    y[0] = RNG.normal(size=6)  # one non-constant row: every off-diagonal entry is 0
    for path in ("gram", "direct"):
        with pytest.warns(g.ConstantRowWarning, match="19 of 40"):
            with pytest.warns(g.UndefinedFitWarning):
                assert float(g.feature_rsa(x, y, path=path)) == 0.0
    same = np.tile(RNG.normal(size=(1, 5)), (20, 1)) * RNG.uniform(1, 2, size=(20, 1))
    with pytest.warns(g.UndefinedFitWarning):  # all rows proportional: every r_ij = 1
        assert float(g.gram_rsa(g.standardize_rows(same), g.standardize_rows(x))) == 0.0


def test_target_stats_reused_under_vmap() -> None:
    n = 64
    x = relu_features(n, 32, 1)
    candidates = relu_features(n, 20, 2)[None] * (RNG.random((5, 1, 20)) > 0.3)  # unit masks
    candidates[0, 7] = 0.0  # a constant row in one candidate
    target = g.gram_stats(g.standardize_rows(x))  # computed once
    loop = np.array([reference_rsa(x, c) for c in candidates])
    with pytest.warns(g.ConstantRowWarning, match="1 of 320"):
        zc = g.standardize_rows(candidates)
    fits = jax.vmap(g.gram_rsa, in_axes=(None, 0))(target, zc)
    np.testing.assert_allclose(fits, loop, atol=1e-5)
    np.testing.assert_allclose(g.gram_rsa(target, zc), loop, atol=1e-5)  # leading axes
    # the whole pipeline from raw features, jitted and vmapped over candidates
    fn = jax.jit(jax.vmap(lambda c: g.gram_rsa(target, g.standardize_rows(c), squared=True)))
    np.testing.assert_allclose(fn(jnp.asarray(candidates)), loop**2, atol=1e-5)


def test_large_n_does_not_overflow() -> None:
    n = 50_000  # n² and n(n−1)/2 exceed int32
    x = RNG.normal(size=(n, 3))
    y = x + RNG.normal(size=(n, 3))
    assert float(g.feature_rsa(x, y)) == pytest.approx(gram_reference(x, y), abs=1e-5)
    assert 0 < float(g.cka(x, y, debiased=True)) <= 1


def test_auto_rule() -> None:
    assert g.use_feature_space(1000, 84, 84)
    assert not g.use_feature_space(100, 84, 84)
    assert not g.use_feature_space(5000, 4096, 4096)
    assert g.use_feature_space(20000, 4096, 4096)
