"""The ``jaxprune`` command end to end on the embedded digits: train, prune (PoZ and the
baselines), curve, and clear errors on bad input."""

import json

import numpy as np
import pytest

from jaxprune import checkpoint
from jaxprune.cli import main


def _json(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    code = main(["train", "--model", "mlp", "--data", "digits", "--seeds", "2", "--epochs", "3",
                 "--out", str(out / "run"), "--json", str(out / "train.json"), "--no-progress"])
    assert code == 0
    return out


def test_models_lists_the_families(tmp_path, capsys):
    assert main(["models", "--json", str(tmp_path / "m.json")]) == 0
    listing = _json(tmp_path / "m.json")
    assert listing["lenet5_cifar"]["parameters"] == 62_006
    assert [la["name"] for la in listing["alexnet"]["layers"]][-1] == "fc2"
    assert "vgg16" in capsys.readouterr().out


def test_train_saves_every_seed_with_its_accuracy(trained):
    summary = _json(trained / "train.json")
    assert summary["seeds"] == [0, 1]
    assert len(summary["test_accuracy"]) == 2
    assert min(summary["test_accuracy"]) > 0.8  # digits, 3 epochs of a 512-512 MLP
    params = checkpoint.restore(trained / "run" / "model").params
    assert params["fc1"]["kernel"].shape == (2, 64, 512)


def test_prune_poz_both_directions(trained, tmp_path):
    out = tmp_path / "poz.json"
    code = main(["prune", "--checkpoint", str(trained / "run" / "model"), "--stimuli", "120",
                 "--direction", "both", "--threshold", "0.8", "--json", str(out),
                 "--figure", str(tmp_path / "trace.png"), "--no-progress"])
    assert code == 0
    result = _json(out)
    runs = [r for rs in result["results"].values() for r in rs]
    assert sorted((r["direction"], r["seed"]) for r in runs) == [
        ("bottom-up", 0), ("bottom-up", 1), ("top-down", 0), ("top-down", 1)]
    for r in runs:
        assert r["final_score"] >= 0.8
        for layer, mask in r["masks"].items():
            assert 1 <= int(np.sum(mask)) == r["kept"][layer] <= 512
    assert len(result["jaccard"]) == 2
    assert all(0.0 <= v <= 1.0 for per_seed in result["jaccard"] for v in per_seed.values())
    assert (tmp_path / "trace.png").stat().st_size > 0


@pytest.mark.parametrize("method, extra", [("cka", []), ("l1", []), ("random", []),
                                           ("cka", ["--compare", "preact", "--greedy", "once"])])
def test_prune_baselines_remove_the_fraction(trained, tmp_path, method, extra):
    out = tmp_path / f"{method}.json"
    code = main(["prune", "--checkpoint", str(trained / "run" / "model"), "--stimuli", "100",
                 "--method", method, "--fraction", "0.25", "--layers", "fc1",
                 "--json", str(out), "--no-progress", *extra])
    assert code == 0
    result = _json(out)
    (runs,) = result["prunes"]  # one round, one result per seed
    assert len(runs) == 2 and {r["method"] for r in runs} == {method}
    for r in runs:
        assert r["kept"]["fc1"] == 512 - 128
        assert r["kept"]["fc2"] == 512
        if extra:
            assert r["config"]["compare"] == "preact" and r["config"]["greedy"] == "once"
    assert [rec["iteration"] for rec in result["records"]] == [0, 0, 1, 1]


def test_prune_iterative_with_fine_tuning_keeps_units_removed(trained, tmp_path):
    out = tmp_path / "iter.json"
    code = main(["prune", "--checkpoint", str(trained / "run" / "model"), "--method", "l1",
                 "--fraction", "0.5", "--iterations", "2", "--fine-tune-epochs", "1",
                 "--layers", "fc2", "--stimuli", "64", "--json", str(out), "--no-progress"])
    assert code == 0
    result = _json(out)
    kept = [[r["kept"]["fc2"] for r in rs] for rs in result["prunes"]]
    assert kept == [[256, 256], [128, 128]]
    last = [r for r in result["records"] if r["iteration"] == 2]
    assert all(r["fine_tune_epochs"] >= 1 and r["test_accuracy"] > 0.5 for r in last)


def test_curve_levels_and_random_orders(trained, tmp_path):
    out = tmp_path / "curve.json"
    code = main(["curve", "--checkpoint", str(trained / "run" / "model"), "--layer", "fc2",
                 "--stimuli", "100", "--levels", "0.25,0.5", "--random", "8", "--seed", "1",
                 "--json", str(out)])
    assert code == 0
    curve = _json(out)
    assert curve["levels"] == [0.25, 0.5] and curve["seed"] == 0  # the one network given
    assert curve["removed"] == [128, 256]
    assert all(0.0 <= p <= 1.0 for p in curve["p_poz_beats_random"])


def test_curve_of_every_seed_with_kept_levels_and_class_means(trained, tmp_path):
    out = tmp_path / "curves.json"
    code = main(["curve", "--checkpoint", str(trained / "run" / "model"), "--layer", "fc2",
                 "--stimuli", "100", "--stimuli-split", "train", "--keep", "0.9,0.5,0.1",
                 "--random", "0", "--class-means", "--figure", str(tmp_path / "c.png"),
                 "--json", str(out), "--no-progress"])
    assert code == 0
    result = _json(out)
    assert len(result["curves"]) == 2
    assert result["summary"]["removed"] == [512 - 460, 512 - 256, 512 - 51]
    assert len(result["summary"]["fit_sd"]) == 3
    assert result["curves"][0]["random_fits"] == []
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize("extra,message", [
    (["--threshold", "1.5"], "threshold"),
    (["--layers", "conv9"], "conv9"),
    (["--stimuli", "2"], "3"),
    (["--stimuli", "5000"], "at most 359"),
    (["--class-means", "--method", "l1"], "--class-means applies to the PoZ search"),
])
def test_bad_prune_input_is_a_clear_error(trained, capsys, extra, message):
    code = main(["prune", "--checkpoint", str(trained / "run" / "model"), "--no-progress",
                 *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["prune", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
