"""jaxprune.search.redundant against slow, obvious NumPy twins: the PoZ-order fits, the
removable count (one removal at a time), the resampling ε, the ridge cross-validation (per-fold
least squares, explicit leave-one-out), and the readout features of a network."""

import jax
import numpy as np
import pytest
from helpers import SMALL_NETWORKS, numpy_params, numpy_stimuli

from jaxprune import models
from jaxprune.search.redundant import (
    ALPHAS,
    explained_by_removed,
    fold_ids,
    fold_r2,
    layer_features,
    redundancy,
    removable_count,
    removal_fits,
    resample_epsilon,
    ridge_oof,
    unit_order,
)

LABELS = np.arange(60) % 4


def sparse_features(seed: int = 0, n: int = 60, d: int = 8) -> np.ndarray:
    """Positive features, column j exactly zero on a growing share of the stimuli (distinct
    PoZ), so no row is constant over two or more columns."""
    rng = np.random.default_rng(seed)
    f = np.abs(rng.normal(size=(n, d))) + 0.1
    for j in range(d):
        f[rng.permutation(n)[: int(n * j / (d + 2))], j] = 0.0
    return f


def numpy_fit(full: np.ndarray, kept: np.ndarray, labels=None) -> float:
    """R² between the upper triangles of the Pearson RSMs (class means first with labels);
    0 when fewer than two columns are kept (every row constant)."""
    def rows(f):
        if labels is None:
            return f
        return np.stack([f[labels == c].mean(0) for c in np.unique(labels)])

    if kept.shape[1] < 2:
        return 0.0
    a, b = np.corrcoef(rows(full)), np.corrcoef(rows(kept))
    iu = np.triu_indices(len(a), 1)
    return float(np.corrcoef(a[iu], b[iu])[0, 1] ** 2)


@pytest.mark.parametrize("labels", [None, LABELS])
def test_removal_fits_match_numpy(labels):
    f = sparse_features()
    order, poz = unit_order(f)
    np.testing.assert_allclose(poz, (f == 0).mean(0))
    assert np.all(np.diff(poz[order]) <= 0)
    fits = removal_fits(f, order, labels=labels, class_means=labels is not None)
    twin = [numpy_fit(f, f[:, order[k:]], labels) for k in range(f.shape[1])]
    np.testing.assert_allclose(fits, twin, atol=2e-5)
    assert fits[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("fits, eps, expected", [
    ([1.0, 0.99, 0.98, 0.97, 0.99], 0.025, 2),   # stops at the first step below
    ([1.0, 0.99, 0.98, 0.99, 0.99], 0.025, 4),   # never below: every unit but one
    ([1.0, 0.90, 0.99, 0.99], 0.05, 0),          # the first removal already changes it
    ([1.0, 0.95, 0.95], 0.05, 2),                # exactly at 1 − ε counts as no change
])
def test_removable_count_cases(fits, eps, expected):
    assert removable_count(fits, eps) == expected


def one_at_a_time(f: np.ndarray, labels, eps: float) -> int:
    """Remove units in decreasing PoZ order one by one (NumPy fit each time); stop at the
    first removal whose fit falls below 1 − eps; the count removed before it."""
    poz = (f == 0).mean(0)
    order = sorted(range(f.shape[1]), key=lambda j: (-poz[j], j))
    removed = 0
    for k in range(1, f.shape[1]):
        if numpy_fit(f, f[:, order[k:]], labels) < 1.0 - eps:
            break
        removed = k
    return removed


@pytest.mark.parametrize("eps", [0.001, 0.02, 0.2])
def test_removable_count_matches_one_at_a_time_loop(eps):
    f = sparse_features(seed=3)
    r = redundancy(f, LABELS, epsilon=eps, folds=3)
    assert r.removable == one_at_a_time(f, LABELS, eps)
    assert r.removed_units == r.order[: r.removable] and r.epsilon_kind == "fixed"
    assert r.removable_fraction == r.removable / f.shape[1]


def test_resample_epsilon_matches_numpy_draws():
    f, labels, seed, boots = sparse_features(seed=1), LABELS, 7, 5
    eps, fits = resample_epsilon(f, labels, n_boot=boots, seed=seed)
    rng = np.random.default_rng(seed)  # the same draws, class means from repeated rows
    means = []
    for c in range(4):
        rows = f[labels == c]
        counts = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=2 * boots)
        means.append([np.repeat(rows, k, axis=0).mean(0) for k in counts])
    means = np.asarray(means).transpose(1, 0, 2)  # [2B, C, d]
    twin = [numpy_fit(means[b], means[boots + b]) for b in range(boots)]
    np.testing.assert_allclose(fits, twin, atol=2e-5)
    assert eps == pytest.approx(1 - np.mean(twin), abs=2e-5)


def test_resample_epsilon_is_zero_without_within_class_spread_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6))
    labels = np.arange(400) % 4
    same = centres[labels]
    assert resample_epsilon(same, labels, n_boot=5)[0] == pytest.approx(0.0, abs=1e-5)
    noisy = same + rng.normal(size=same.shape)
    small = resample_epsilon(noisy[:40], labels[:40], n_boot=40)[0]
    large = resample_epsilon(noisy, labels, n_boot=40)[0]
    assert 0 < large < small


def test_fold_ids_balanced_and_deterministic():
    ids = fold_ids(23, 5, seed=2)
    assert sorted(np.bincount(ids)) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(ids, fold_ids(23, 5, seed=2))
    with pytest.raises(ValueError, match="folds"):
        fold_ids(6, 4)


def regression_data(seed=0, n=60, k=4, m=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    return x, x @ rng.normal(size=(k, m)) + 0.5 * rng.normal(size=(n, m)) + 3.0


def lstsq_ridge(x, y, ids, alpha):
    """Per fold: centre on the training part, solve the augmented least-squares problem
    [Xc; √λ I] W = [Yc; 0] with λ = α·tr(XcᵀXc)/k, predict the held-out part."""
    pred = np.empty_like(y)
    for f in np.unique(ids):
        tr, te = ids != f, ids == f
        mx, my = x[tr].mean(0), y[tr].mean(0)
        xc, yc = x[tr] - mx, y[tr] - my
        lam = alpha * np.sum(xc * xc) / x.shape[1]
        a = np.vstack([xc, np.sqrt(lam) * np.eye(x.shape[1])])
        b = np.vstack([yc, np.zeros((x.shape[1], y.shape[1]))])
        pred[te] = (x[te] - mx) @ np.linalg.lstsq(a, b, rcond=None)[0] + my
    return pred


def r2_by_hand(y, pred, ids, cols=None):
    cols = np.arange(y.shape[1]) if cols is None else cols
    out = []
    for f in np.unique(ids):
        yt, pt = y[ids == f][:, cols], pred[ids == f][:, cols]
        out.append(1 - ((yt - pt) ** 2).sum() / ((yt - yt.mean(0)) ** 2).sum())
    return np.asarray(out)


@pytest.mark.parametrize("alpha", [1e-3, 1.0])
def test_ridge_with_one_penalty_matches_lstsq(alpha):
    x, y = regression_data()
    ids = fold_ids(len(x), 5, seed=1)
    pred, chosen = ridge_oof(x, y, ids, alphas=(alpha,))
    np.testing.assert_allclose(pred, lstsq_ridge(x, y, ids, alpha), rtol=1e-9, atol=1e-9)
    assert chosen == [alpha] * 5
    np.testing.assert_allclose(fold_r2(y, pred, ids), r2_by_hand(y, pred, ids), rtol=1e-12)
    np.testing.assert_allclose(fold_r2(y, pred, ids, np.array([1, 4])),
                               r2_by_hand(y, pred, ids, np.array([1, 4])), rtol=1e-12)


def loo_error_by_refits(xc, yc, lam):
    """Σ_i ‖yc_i − ŷ_i‖², ŷ_i from the ridge fitted on the other rows (no re-centring)."""
    err = 0.0
    for i in range(len(xc)):
        rest = np.arange(len(xc)) != i
        w = np.linalg.solve(xc[rest].T @ xc[rest] + lam * np.eye(xc.shape[1]),
                            xc[rest].T @ yc[rest])
        err += np.sum((yc[i] - xc[i] @ w) ** 2)
    return err


def test_penalty_choice_is_the_explicit_leave_one_out_minimum():
    x, y = regression_data(seed=4, n=40, k=6)
    y[:, :3] = 0.2 * y[:, :3] + 4 * np.random.default_rng(9).normal(size=(40, 3))  # noisy
    ids = fold_ids(len(x), 4, seed=0)
    pred, chosen = ridge_oof(x, y, ids)
    for f, alpha in zip(np.unique(ids), chosen, strict=True):
        tr = ids != f
        xc, yc = x[tr] - x[tr].mean(0), y[tr] - y[tr].mean(0)
        scale = np.sum(xc * xc) / xc.shape[1]
        errs = {a: loo_error_by_refits(xc, yc, a * scale) for a in ALPHAS}
        assert alpha == min(errs, key=errs.get)
        np.testing.assert_allclose(pred[ids == f], lstsq_ridge(x, y, ids, alpha)[ids == f],
                                   rtol=1e-9, atol=1e-9)


def test_explained_by_removed_edge_cases():
    f = sparse_features(seed=2)
    ids = fold_ids(len(f), 3)
    full, kept, chosen = explained_by_removed(f, np.array([], int), ids)  # nothing removed
    np.testing.assert_allclose(full, r2_by_hand(f, ridge_oof(f[:, :0], f, ids)[0], ids))
    assert np.all(full <= 0) and np.all(full > -0.2) and chosen == [None] * 3
    f2 = f.copy()
    f2[:, 0] = 0.0  # a dead predictor carries nothing: the training mean is predicted
    full0 = explained_by_removed(f2, np.array([0]), ids)[0]
    np.testing.assert_allclose(full0, explained_by_removed(f2, np.array([], int), ids)[0])
    with pytest.raises(ValueError, match="constant"):
        fold_r2(np.ones((9, 2)), np.ones((9, 2)), fold_ids(9, 3))


def test_redundancy_record_is_consistent():
    f = sparse_features(seed=5, n=80, d=10)
    labels = np.arange(80) % 4
    r = redundancy(f, labels, n_boot=20, folds=4, seed=3)
    fits = removal_fits(f, np.asarray(r.order), labels=labels, class_means=True)
    np.testing.assert_allclose(r.fits, fits)
    assert r.epsilon_kind == "resample" and len(r.resample_fits) == 20
    assert r.epsilon == pytest.approx(1 - np.mean(r.resample_fits))
    assert r.removable == removable_count(fits, r.epsilon)
    ids = fold_ids(80, 4, seed=3)
    full, kept, _ = explained_by_removed(f, np.asarray(r.order[: r.removable]), ids)
    assert r.r2_full == pytest.approx(full.mean()) and r.r2_kept == pytest.approx(kept.mean())
    assert r.level_removed == [int(np.floor(p * 10 + 1e-9)) for p in r.levels]
    assert r.level_fit == [r.fits[k] for k in r.level_removed]
    share = f.var(0)[r.order[: r.removable]].sum() / f.var(0).sum()
    assert r.removed_variance_share == pytest.approx(share)
    assert set(r.to_dict()) >= {"fits", "epsilon", "removable", "r2_full", "options"}


@pytest.mark.parametrize("kwargs, match", [
    ({"class_means": False}, "fixed epsilon"),
    ({"epsilon": 1.5}, r"epsilon must lie in \[0, 1\)"),
    ({"alphas": (0.0,)}, "positive"),
    ({"metric": "tau"}, "unknown metric"),
])
def test_redundancy_refuses_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        redundancy(sparse_features(), LABELS, **kwargs)


def test_layer_features_match_one_forward_pass():
    arch = models.architecture("lenet5_cifar", **SMALL_NETWORKS["lenet5_cifar"])
    params, x = numpy_params(arch, scale="fan_in"), numpy_stimuli(arch, n=40)
    _, acts = jax.jit(models.apply, static_argnums=0)(arch, params, None, x)
    want = np.asarray(acts[arch.readout_layer])
    got = layer_features(arch, params, x, batch=16)  # 16 + 16 + 8 padded to 16
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (40, arch.widths["fc2"]) and (got == 0).any() and (got > 0).any()
