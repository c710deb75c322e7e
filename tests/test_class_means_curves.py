"""Class-averaged RSMs in the PoZ search and the fraction curves; curves with levels kept,
without random orders, and of stacked seeds; bad input refused before any work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compact_readout, small_network

from jaxprune import geometry, models
from jaxprune.search.curves import FIT_TIE, fraction_curve, removed_counts, share_below
from jaxprune.search.fit import class_average, make_fit
from jaxprune.search.poz import PoZConfig, poz_search, poz_search_sequential

LABELS = np.arange(40) % 5


def class_mean_fit_by_hand(target_feats, feats, labels):
    """R² between the Pearson RSMs of the class-mean features, in NumPy."""
    def means(f):
        return np.stack([f[labels == c].mean(0) for c in range(labels.max() + 1)])

    def rsm(f):
        return np.corrcoef(f)

    a, b = rsm(means(target_feats)), rsm(means(feats))
    iu = np.triu_indices(len(a), 1)
    return np.corrcoef(a[iu], b[iu])[0, 1] ** 2


def test_class_average_matrix():
    a = class_average(np.array([0, 1, 1, 2, 2, 2]))
    np.testing.assert_allclose(a @ np.arange(6.0), [0, 1.5, 4])
    np.testing.assert_allclose(a.sum(1), 1)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1, 1]), "at least 3 classes"),
    (np.array([0, 2, 2, 3]), r"classes \[1\] have no stimulus"),
    (np.array([0.0, 1.0, 2.0]), "integer"),
    (np.array([-1, 0, 1, 2]), "non-negative"),
])
def test_class_average_refuses_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        class_average(labels)


def test_class_mean_search_matches_numpy_and_the_twin():
    arch, params, x = small_network("mlp", seed=2)
    cfg = PoZConfig(class_means=True, threshold=0.9, direction="top-down")
    vec = poz_search(arch, params, x, cfg, labels=LABELS)[0]
    seq = poz_search_sequential(arch, params, x, cfg, labels=LABELS)[0]
    for name in arch.layer_names:
        np.testing.assert_array_equal(vec.masks[name], seq.masks[name])
    _, acts = models.apply(arch, params, None, x)
    full = np.asarray(acts[arch.readout_layer], np.float64)
    pruned = compact_readout(arch, params, vec.masks, x).astype(np.float64)
    assert vec.final_score == pytest.approx(class_mean_fit_by_hand(full, pruned, LABELS),
                                            abs=1e-5)
    assert vec.final_score >= 0.9 and vec.config["class_means"]
    assert sum(m.sum() for m in vec.masks.values()) < sum(arch.widths.values())


def test_class_mean_search_takes_a_class_by_class_external_target():
    arch, params, x = small_network("mlp", seed=2)
    human = np.asarray(geometry.rsm(np.random.default_rng(0).normal(size=(5, 4))))
    r = poz_search(arch, params, x, PoZConfig(class_means=True), labels=LABELS,
                   target_rsm=human)[0]
    assert r.threshold == pytest.approx(r.baseline_score)
    with pytest.raises(ValueError, match=r"shape \(40, 40\) but there are 5 classes"):
        poz_search(arch, params, x, PoZConfig(class_means=True), labels=LABELS,
                   target_rsm=np.eye(40))


@pytest.mark.parametrize("labels, match", [
    (None, "class means need labels"),
    (LABELS[:30], r"labels have shape \(30,\), but there are 40 stimuli"),
    (np.arange(40) % 2, "at least 3 classes"),
    (np.where(LABELS == 3, 4, LABELS), r"classes \[3\] have no stimulus"),
])
def test_class_mean_search_refuses_bad_labels_before_work(labels, match):
    arch, params, x = small_network("mlp")
    with pytest.raises(ValueError, match=match):
        poz_search(arch, params, x, PoZConfig(class_means=True), labels=labels)
    with pytest.raises(ValueError, match=match):
        fraction_curve(arch, params, x, "fc2", class_means=True, labels=labels)


def test_removed_counts_kept_and_removed_levels():
    assert removed_counts(84, keep=(0.9, 0.5, 0.1))[1] == [84 - 75, 84 - 42, 84 - 8]
    assert removed_counts(84, keep=(0.001,))[1] == [83]  # at least one unit kept
    assert removed_counts(10, levels=(0.0, 0.25, 0.99))[1] == [0, 2, 9]
    for bad in ((0.0,), (1.2,), (-0.1,), ()):
        with pytest.raises(ValueError, match=r"keep fractions must lie in \(0, 1\]"):
            removed_counts(10, keep=bad)
    with pytest.raises(ValueError, match="not both"):
        removed_counts(10, levels=(0.1,), keep=(0.9,))


def test_a_tie_within_rounding_is_no_win_for_the_poz_order():
    fits = np.array([0.9, 0.5], np.float32)
    random_fits = np.array([[0.9 - FIT_TIE / 4, 0.4],  # a tie (dead units, another order)
                            [0.9 - 4 * FIT_TIE, 0.6],  # below: a win
                            [0.9 + FIT_TIE / 4, 0.5]], np.float32)
    np.testing.assert_array_equal(share_below(random_fits, fits), [1 / 3, 1 / 3])


def test_curve_with_kept_levels_and_no_random_orders_matches_compacted_fits():
    arch, params, x = small_network("mlp", seed=5)
    curve = fraction_curve(arch, params, x, "fc3", keep=(0.9, 0.5, 0.25), n_random=0,
                           class_means=True, labels=LABELS)
    assert curve.level_kind == "kept" and curve.removed == [12 - 10, 12 - 6, 12 - 3]
    assert curve.random_fits == [] and curve.p_poz_beats_random == []
    _, acts = models.apply(arch, params, None, x)
    poz = np.asarray(geometry.poz(acts["fc3"]))
    order = np.argsort(-poz, kind="stable")
    full = np.asarray(acts["fc3"], np.float64)
    for k, value, top in zip(curve.removed, curve.fit, curve.max_kept_poz, strict=True):
        masks = {n: np.ones(w, np.float32) for n, w in arch.widths.items()}
        masks["fc3"][order[:k]] = 0.0
        pruned = compact_readout(arch, params, masks, x).astype(np.float64)
        assert value == pytest.approx(class_mean_fit_by_hand(full, pruned, LABELS), abs=1e-5)
        assert top == pytest.approx(poz[order[k:]].max())


def test_stacked_curves_equal_one_seed_at_a_time():
    arch, _, x = small_network("mlp")
    params = models.init_stack(arch, [0, 1, 2])
    together = fraction_curve(arch, params, x, "fc2", levels=(0.25, 0.5), n_random=4,
                              stacked=True, seed=7)
    for s, curve in enumerate(together.curves):
        one = jax.tree.map(lambda p, s=s: p[s], params)
        alone = fraction_curve(arch, one, x, "fc2", levels=(0.25, 0.5), n_random=0)
        np.testing.assert_allclose(curve.fit, alone.fit, atol=1e-6)
        assert len(curve.random_fits) == 4
    fits = np.array([c.fit for c in together.curves])
    np.testing.assert_allclose(together.summary["fit_mean"], fits.mean(0))
    np.testing.assert_allclose(together.summary["fit_sd"], fits.std(0, ddof=1))
    assert len(together.summary["fraction_of_seeds_poz_beats_median_random"]) == 2


def test_gram_and_direct_class_mean_fits_agree():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(np.maximum(rng.normal(size=(60, 6)), 0), jnp.float32)
    labels = np.arange(60) % 20  # 20 class means of 6 features: auto picks the Gram path
    avg = class_average(labels)
    mask = jnp.asarray([1, 1, 0, 1, 1, 0], jnp.float32)
    gram = make_fit(feats, average=avg, path="gram")
    direct = make_fit(feats, average=avg, path="direct")
    assert gram.target_stats is not None and direct.target_rsm is not None
    masked = feats * mask[None, :]
    assert float(gram(masked, mask)) == pytest.approx(float(direct(masked, mask)),
                                                             abs=1e-5)
