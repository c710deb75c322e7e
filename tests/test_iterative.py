"""Iterative prune / fine-tune: records, masks that stay applied, the command entry point, the
experiment's quick mode."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxprune.models import apply, architecture
from jaxprune.pipeline import iterative_job, load_splits
from jaxprune.search.iterative import (
    RECORD_FIELDS,
    IterativeConfig,
    Splits,
    iterative_prune,
    summarize,
)
from jaxprune.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
MLP = architecture("mlp", input_dim=64, widths=(24, 16), dropout=0.25)


@pytest.fixture(scope="module")
def digits():
    data = load_splits("digits")
    return Splits(data.x_train[:600], data.y_train[:600], data.x_test[:200], data.y_test[:200],
                  name="digits")


@pytest.fixture(scope="module")
def trained(digits):
    cfg = TrainConfig(seeds=(0, 1), epochs=4, batch_size=64, patience=2, learning_rate=3e-3)
    return fit(MLP, digits.x_train, digits.y_train, cfg, progress=False, verbose=False)


@pytest.mark.parametrize("method", ["cka", "l1"])
def test_records_and_pruned_units_stay_zero(digits, trained, method):
    tune = TrainConfig(seeds=(0, 1), epochs=2, batch_size=64, patience=2, learning_rate=3e-3)
    config = IterativeConfig(method, fraction=0.25, iterations=2, stimuli=100, probe=100)
    result = iterative_prune(MLP, trained.params, digits, config, tune, progress=False)
    assert [(r["iteration"], r["seed"]) for r in result.records] == [
        (t, s) for t in range(3) for s in (0, 1)]
    for r in result.records:
        assert set(RECORD_FIELDS) <= set(r) and r["method"] == method
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["agreement"] <= 1
        assert set(r["layer_cka"]) == {"fc1", "fc2"}
        assert all(0 <= v <= 1 + 1e-6 for v in r["layer_cka"].values())
    first, last = result.records[0], result.records[-1]
    assert first["kept"] == {"fc1": 24, "fc2": 16} and first["agreement"] == 1.0
    assert last["kept"] == {"fc1": 13, "fc2": 9}  # 24 -> 18 -> 13 (4.5 rounds up), 16 -> 12 -> 9
    assert last["compression_rate"] > 1 and last["fine_tune_epochs"] >= 1
    # masks only grow more restrictive, and removed units' incoming weights never moved
    removed_early = {k: 1 - np.stack([r.masks[k] for r in result.prunes[0]]) for k in ("fc1",)}
    assert np.all(result.masks["fc1"] <= 1 - removed_early["fc1"])
    before = np.asarray(trained.params["fc1"]["kernel"])
    after = np.asarray(result.params["fc1"]["kernel"])
    for s in range(2):
        gone = removed_early["fc1"][s] > 0
        np.testing.assert_array_equal(after[s][:, gone], before[s][:, gone])
        assert not np.allclose(after[s][:, ~gone], before[s][:, ~gone])  # the rest trained
        params = jax.tree.map(lambda a, s=s: a[s], result.params)
        _, acts = apply(MLP, params, {k: v[s] for k, v in result.masks.items()},
                        digits.x_test)
        for k in ("fc1", "fc2"):
            assert np.all(np.asarray(acts[k])[:, result.masks[k][s] == 0] == 0)
    rows = summarize(result.records)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for row in rows:  # mean and sample sd over the seeds of each iteration
        acc = [r["test_accuracy"] for r in result.records if r["iteration"] == row["iteration"]]
        assert row["n"] == len(acc) == 2
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(acc))
        assert row["test_accuracy_sd"] == pytest.approx(np.std(acc, ddof=1))


def test_prune_command_one_shot_is_json(digits, trained):
    out = iterative_job(MLP, trained.params, digits, "random", 0.5, stimuli=50, probe=50,
                        progress=False, seeds=(0, 1))
    assert set(out) >= {"config", "seeds", "records", "summary", "masks", "prunes"}
    json.dumps(out)
    assert out["records"][-1]["kept"] == {"fc1": 12, "fc2": 8}
    assert out["records"][-1]["fine_tune_epochs"] == 0
    assert out["summary"][-1]["kept_fraction_mean"] == pytest.approx(0.5)


def test_bad_configuration(digits, trained):
    with pytest.raises(ValueError, match="method"):
        IterativeConfig("magnitude")
    with pytest.raises(ValueError, match="fraction"):
        IterativeConfig("cka", fraction=1.0)
    with pytest.raises(ValueError, match="iterations"):
        IterativeConfig("cka", iterations=0)
    with pytest.raises(ValueError, match=r"fc1.*fc2"):
        iterative_prune(MLP, trained.params, digits, IterativeConfig("l1", layers=("fc9",)))
    with pytest.raises(ValueError, match="seeds"):
        iterative_prune(MLP, trained.params, digits, IterativeConfig("l1"), seeds=(0,))


def test_experiment_quick_mode(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import cka_mlp_mnist
    finally:
        sys.path.pop(0)
    out = cka_mlp_mnist.main(["--quick", "--out", str(tmp_path)])
    for name in ("records.json", "records.csv", "summary.csv", "summary.json", "summary.txt",
                 "training.json", "config.json", "curves.png", "variations.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    methods = {r["method"] for r in summary}
    assert methods == {"cka", "l1", "random"}
    for r in summary:
        assert 0 <= r["test_accuracy_mean"] <= 1 and 0 <= r["agreement_mean"] <= 1
        if r["iteration"] == 0:
            assert r["agreement_mean"] == 1.0 and r["kept_fraction_mean"] == 1.0
        else:
            assert r["kept_fraction_mean"] < 1.0
    assert all(t["test_accuracy"][0] > 0.3 for t in out["training"])  # it learned something
