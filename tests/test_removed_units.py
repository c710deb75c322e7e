"""A removed unit is absent, not zero: every fit of a masked network equals the fit of the
compacted network (``masks.compact``) — RSMs, the Gram path, the searches, the curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    SMALL_NETWORKS,
    compact_readout,
    compacting_poz_search,
    random_masks,
    small_network,
)

from jaxprune import geometry, models
from jaxprune.search.cka import cka_prune
from jaxprune.search.curves import fraction_curve
from jaxprune.search.fit import class_average, make_fit
from jaxprune.search.poz import PoZConfig, poz_search, poz_search_sequential

METHODS = ("pearson", "pearson_sq", "spearman", "cosine", "euclidean")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("keep", [1, 2, 5, 17])
def test_masked_rsm_is_the_rsm_of_the_kept_columns(method, keep):
    rng = np.random.default_rng(keep)
    x = np.maximum(rng.normal(size=(30, 20)), 0).astype(np.float32)  # ReLU-like, ties at 0
    mask = np.zeros(20, np.float32)
    mask[rng.choice(20, keep, replace=False)] = 1
    with _quiet():
        masked = geometry.rsm(x * mask, method, mask=mask)
        kept = geometry.rsm(x[:, mask > 0], method)
    # a Euclidean distance near 0 carries the Gram form's sqrt(eps) rounding (both sides)
    np.testing.assert_allclose(masked, kept, atol=1e-3 if method == "euclidean" else 1e-5)


class _quiet:
    """Silence the constant-row warnings a 1- or 2-unit readout gives (both sides warn)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", geometry.GeometryWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_zero_columns_change_the_pearson_rsm_unless_masked():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 6)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((10, 4), np.float32)], axis=1)
    mask = np.r_[np.ones(6), np.zeros(4)].astype(np.float32)
    assert not np.allclose(geometry.rsm(padded), geometry.rsm(x), atol=1e-3)
    np.testing.assert_allclose(geometry.rsm(padded, mask=mask), geometry.rsm(x), atol=1e-6)


@pytest.mark.parametrize("keep", [2, 3, 9])
def test_masked_gram_path_equals_the_direct_path_on_kept_columns(keep):
    rng = np.random.default_rng(keep)
    x = np.maximum(rng.normal(size=(200, 12)), 0).astype(np.float32)
    y = rng.normal(size=(200, 7)).astype(np.float32)
    mask = np.zeros(12, np.float32)
    mask[rng.choice(12, keep, replace=False)] = 1
    gram = geometry.gram_rsa(geometry.gram_stats(geometry.standardize_rows(y)),
                             geometry.standardize_rows(x, mask))
    direct = geometry.rsa(geometry.rsm(y), geometry.rsm(x[:, mask > 0]))
    np.testing.assert_allclose(gram, direct, atol=1e-5)
    # vmapped over candidate masks, as the searches use it
    masks = jnp.stack([jnp.asarray(mask), jnp.ones(12)])
    zs = jax.vmap(lambda m: geometry.standardize_rows(x, m))(masks)
    both = jax.vmap(lambda z: geometry.gram_rsa(geometry.gram_stats(
        geometry.standardize_rows(y)), z))(zs)
    np.testing.assert_allclose(both[0], direct, atol=1e-5)


def _readouts(arch, params, x, unit_masks):
    """(masked readout features, readout mask, the compacted network's readout features)."""
    _, acts = models.apply(arch, params, {k: jnp.asarray(v) for k, v in unit_masks.items()}, x)
    mask = jnp.asarray(unit_masks[arch.readout_layer])
    return acts[arch.readout_layer], mask, compact_readout(arch, params, unit_masks, x)


@pytest.mark.parametrize("name", sorted(SMALL_NETWORKS))
def test_fit_of_masked_network_equals_fit_of_compacted(name):
    arch, params, x = small_network(name)
    _, acts = models.apply(arch, params, None, x)
    readout = acts[arch.readout_layer]
    labels = np.arange(x.shape[0]) % 4
    human = np.asarray(geometry.rsm(jax.random.normal(jax.random.key(5), (x.shape[0], 6))))
    fits = {
        "readout": make_fit(readout),
        "gram": make_fit(readout, path="gram"),
        "spearman rsm": make_fit(readout, rsm_method="spearman"),
        "spearman fit": make_fit(readout, metric="spearman"),
        "spearman both": make_fit(readout, rsm_method="spearman", metric="spearman"),
        "cosine": make_fit(readout, rsm_method="cosine"),
        "euclidean": make_fit(readout, rsm_method="euclidean"),
        "external": make_fit(target_rsm=human),
        "class means": make_fit(readout, average=class_average(labels)),
    }
    rng = np.random.default_rng(len(name))
    with _quiet():
        for readout_keep in (1, 2, None):
            masked_feats, mask, compact_feats = _readouts(arch, params, x,
                                                          random_masks(arch, rng, readout_keep))
            for what, fit in fits.items():
                masked, compacted = float(fit(masked_feats, mask)), float(fit(compact_feats))
                # A Spearman fit ranks the RSM entries: where a degenerate random network
                # packs them closer than float32 rounding (~3e-7 here), their order is noise.
                tol = 1e-3 if what in ("spearman fit", "spearman both") else 1e-5
                assert masked == pytest.approx(compacted, abs=tol), (what, readout_keep)


@pytest.mark.parametrize("direction", ["bottom-up", "top-down"])
@pytest.mark.parametrize("name", ["mlp", "lenet5_mnist"])
def test_search_equals_a_twin_that_compacts_every_candidate(name, direction):
    arch, params, x = small_network(name, seed=3)
    _, acts = models.apply(arch, params, None, x)
    fit = make_fit(acts[arch.readout_layer])
    threshold = 0.85
    expected = compacting_poz_search(arch, params, x, fit, threshold, direction)
    cfg = PoZConfig(direction=direction, threshold=threshold, chunk_size=4)
    for result in (poz_search(arch, params, x, cfg)[0],
                   poz_search_sequential(arch, params, x, cfg)[0]):
        for layer in arch.layer_names:
            np.testing.assert_array_equal(result.masks[layer], expected[layer], err_msg=layer)
        assert result.final_score == pytest.approx(
            float(fit(compact_readout(arch, params, result.masks, x))), abs=1e-5)
        assert result.final_score >= threshold
    assert sum(m.sum() for m in expected.values()) < sum(arch.widths.values())


def test_removing_dead_readout_units_is_judged_on_the_kept_units():
    arch = models.architecture("mlp", input_dim=10, widths=(16, 12), dropout=0.0)
    params = models.init_params(arch, jax.random.key(1))
    # fc2 bias strongly negative on half the units: they never fire
    b = np.asarray(params["fc2"]["bias"]).copy()
    b[:6] = -100.0
    params = {**params, "fc2": {**params["fc2"], "bias": jnp.asarray(b)}}
    x = jax.random.normal(jax.random.key(2), (50, 10))
    r = poz_search(arch, params, x, PoZConfig(layers=("fc2",), threshold=0.5))[0]
    assert r.masks["fc2"][:6].sum() == 0  # the dead units go first (PoZ = 1)
    _, acts = models.apply(arch, params, None, x)
    fit = make_fit(acts["fc2"])
    assert r.final_score == pytest.approx(
        float(fit(compact_readout(arch, params, r.masks, x))), abs=1e-5)


def test_fraction_curve_fits_equal_compacted_fits():
    arch, params, x = small_network("lenet5_mnist", seed=4)
    _, acts = models.apply(arch, params, None, x)
    fit = make_fit(acts[arch.readout_layer])
    for layer in ("fc2", "conv2"):
        curve = fraction_curve(arch, params, x, layer, n_random=0)
        poz = np.asarray(geometry.poz(acts[layer], conv=acts[layer].ndim == 4))
        order = np.argsort(-poz, kind="stable")
        for k, value in zip(curve.removed, curve.fit, strict=True):
            unit_masks = {n: np.ones(w, np.float32) for n, w in arch.widths.items()}
            unit_masks[layer][order[:k]] = 0.0
            expected = float(fit(compact_readout(arch, params, unit_masks, x)))
            assert value == pytest.approx(expected, abs=1e-5), (layer, k)


def test_cka_readout_score_equals_the_compacted_network():
    arch, params, x = small_network("mlp", seed=6)
    r = cka_prune(arch, params, x, fraction=0.5, compare="readout")
    _, acts = models.apply(arch, params, None, x)
    expected = float(geometry.cka(acts[arch.readout_layer],
                                  compact_readout(arch, params, r.masks, x)))
    assert r.final_score == pytest.approx(expected, abs=1e-5)
