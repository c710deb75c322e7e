"""experiments/curves_cifar10.py and experiments/redundant.py: the quick modes (tiny networks
trained once per module and shared), the content of their results, per-seed resume, and the
``error: ...`` exits (status 2, no traceback) on bad input."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxprune.search.curves import FIT_TIE
from jaxprune.search.redundant import removable_count

ROOT = Path(__file__).resolve().parents[1]


def experiment(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_experiment",
                                                  ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_curves(tmp_path_factory, shared_data):
    """curves_cifar10 --quick into one folder (its tiny CIFAR-10 networks are reused there)."""
    out = tmp_path_factory.mktemp("quick")
    args = ["--quick", "--out", str(out), "--data-dir", str(shared_data), "--no-progress"]
    return out, args, experiment("curves_cifar10").main(args)


def test_curves_quick_results(quick_curves):
    out, _, result = quick_curves
    saved = json.loads((out / "curves_cifar10.json").read_text())
    assert saved["complete"] and saved["identity"]["quick"] is True
    seeds = saved["per_seed"]
    assert [s["seed"]["global_id"] for s in seeds] == [0, 1, 2]
    assert [s["seed"]["index"] for s in seeds] == [0, 0, 1]
    assert len({s["seed"]["checkpoint"] for s in seeds}) == 2
    summary = saved["summary"]
    assert summary["levels"] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert summary["kept"] == [14, 12, 11, 9, 8, 6, 4, 3, 1]  # int(p·16)
    beats = []
    for s in seeds:
        c = s["curve"]
        assert c["baseline_fit"] == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= v <= 1.0 + 1e-6 for v in c["fit"])
        assert np.all(np.diff(c["max_kept_poz"]) <= 1e-7)  # removing by PoZ lowers the max
        rf = np.asarray(c["random_fits"])
        assert rf.shape == (20, 9)
        wins = [[r < f - FIT_TIE for r, f in zip(row, c["fit"], strict=True)] for row in rf]
        np.testing.assert_array_equal(c["p_poz_beats_random"], np.mean(wins, axis=0))
        beats.append(np.asarray(c["fit"]) > np.median(rf, 0) + FIT_TIE)
    np.testing.assert_allclose(summary["fraction_of_seeds_poz_beats_median_random"],
                               np.mean(beats, 0))
    np.testing.assert_allclose(summary["fit_mean"], np.mean([s["curve"]["fit"] for s in seeds], 0))
    assert "median" in summary["beats_definition"]
    prov = saved["provenance"]
    assert prov["data"]["stimuli"] == 200 and len(prov["git_commit"] or "x" * 40) == 40
    assert [h for c in prov["checkpoints"] for h in c["params_hashes"]] == \
        [s["seed"]["params_hash"] for s in seeds]
    assert "| 0.9 | 14 |" in (out / "curves_cifar10.md").read_text()
    assert (out / "curves_cifar10.png").stat().st_size > 10_000
    assert result["summary"] == summary


def test_jaxprune_report_writes_the_experiments_own_tables(quick_curves, tmp_path, capsys):
    from jaxprune.cli import main as cli

    out, _, _ = quick_curves
    result = out / "curves_cifar10.json"
    assert cli(["report", str(result), "--out", str(tmp_path), "--name", "c"]) == 0
    assert (tmp_path / "c.md").read_text() == (out / "curves_cifar10.md").read_text()
    assert (tmp_path / "c.png").stat().st_size > 10_000
    capsys.readouterr()
    assert cli(["report", str(result), str(result), "--out", str(tmp_path)]) == 2
    assert "give it alone" in capsys.readouterr().err


def test_curves_resume_and_refusal(quick_curves, capsys):
    out, args, first = quick_curves
    module = experiment("curves_cifar10")
    again = module.main(args)  # every seed is done: nothing is recomputed
    assert [s["seconds"] for s in again["per_seed"]] == [s["seconds"] for s in first["per_seed"]]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        module.main([*args, "--random", "7"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "n_random (20 in the file, 7 now)" in err, err
    assert "--fresh" in err


def test_curves_bad_layer_and_missing_checkpoint(quick_curves, capsys, tmp_path):
    out, _, _ = quick_curves
    module = experiment("curves_cifar10")
    ckpt = out / "checkpoints" / "cifar10" / "seeds_0" / "model"
    cases = [(["--checkpoints", str(ckpt), "--layer", "fc9"],
              "--layer fc9: checkpoint", "its layers are conv1, conv2, fc1, fc2"),
             (["--checkpoints", str(tmp_path / "nope")], "nope: no such folder", "pass folders"),
             (["--checkpoints", str(ckpt), "--stimuli", "20000"], "--stimuli 20000", "10000")]
    for argv, *words in cases:
        with pytest.raises(SystemExit) as e:
            module.main([*argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: "), err
        assert all(w in err for w in words), err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_redundant_quick_results(quick_curves):
    out, _, _ = quick_curves
    data_dir = quick_curves[1][quick_curves[1].index("--data-dir") + 1]
    result = experiment("redundant").main(["--quick", "--datasets", "cifar10", "--out",
                                           str(out), "--data-dir", data_dir, "--no-progress"])
    saved = json.loads((out / "redundant.json").read_text())
    assert saved["complete"] and "bootstrap" in saved["criterion"]
    assert len(saved["per_seed"]) == 3 and result["summary"] == saved["summary"]
    for s in saved["per_seed"]:
        r = s["result"]
        assert s["data"]["name"] == "cifar10" and s["layer"] == "fc2" and r["width"] == 16
        assert 0 < r["epsilon"] < 1 and len(r["resample_fits"]) == 30
        assert r["epsilon"] == pytest.approx(1 - np.mean(r["resample_fits"]))
        assert r["fits"][0] == pytest.approx(1.0, abs=1e-5)
        assert r["removable"] == removable_count(r["fits"], r["epsilon"])
        assert r["removed_units"] == r["order"][: r["removable"]]
        assert r["r2_full"] <= 1 and r["r2_kept"] <= 1 and len(r["ridge_alphas"]) == 5
        assert len(r["r2_full_folds"]) == 5 and r["level_removed"][-1] == 14
    s = saved["summary"]["cifar10"]
    assert s["seeds"] == 3
    assert s["removable_mean"] == pytest.approx(np.mean([e["result"]["removable"]
                                                         for e in saved["per_seed"]]))
    md = (out / "redundant.md").read_text()
    assert "Criterion (a)" in md and "| cifar10 | fc2 | 16 | 3 |" in md
    assert (out / "redundant.png").stat().st_size > 10_000


def test_redundant_errors_need_no_data(tmp_path, capsys):
    module = experiment("redundant")
    module.ROOT = tmp_path  # no runs/aim1 there: the default checkpoints are missing
    for argv, words in [([], "runs/aim1/cifar10/seeds_*/model"),
                        (["--epsilon", "1.5"], "--epsilon 1.5"),
                        (["--checkpoints", str(tmp_path)], "holds no committed checkpoint")]:
        with pytest.raises(SystemExit) as e:
            module.main([*argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and words in err, err
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "redundant.py"),
                           "--checkpoints", str(tmp_path / "missing")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: --checkpoints {tmp_path / 'missing'}: no such "
                                   "folder; pass folders written by jaxprune.checkpoint.save "
                                   "(e.g. <train --out>/model)")
