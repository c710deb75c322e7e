"""Sharding over devices (:mod:`jaxprune.sharding`): the option's checks in this process (one
CPU device), and in a process of its own with 8 forced CPU devices, the PoZ search, stacked
training, fraction curves and CKA pruning giving the results of the unsharded runs, with a seed
count (5) that does not divide the device count."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import small_network

from jaxprune import sharding
from jaxprune.search import CKAConfig, fraction_curve
from jaxprune.search.poz import PoZConfig, poz_search
from jaxprune.train import TrainConfig

HERE = Path(__file__).resolve().parent


def test_pad_leading_repeats_the_last_seed_and_round_up():
    tree = {"w": np.arange(6.0).reshape(3, 2), "b": np.arange(3)}
    padded = sharding.pad_leading(tree, 5)
    np.testing.assert_array_equal(padded["w"][3:], [[4.0, 5.0], [4.0, 5.0]])
    np.testing.assert_array_equal(padded["b"], [0, 1, 2, 2, 2])
    assert sharding.pad_leading(tree, 3)["w"] is tree["w"]
    assert [sharding.round_up(n, 8) for n in (1, 8, 9)] == [8, 8, 16]


def test_one_device_sharding_changes_nothing():
    arch, params, x = small_network("lenet5_cifar")
    config = PoZConfig(threshold=0.9, layers=("fc1", "fc2"))
    base = poz_search(arch, params, x, config)
    for mode in sharding.SHARDINGS:
        got = poz_search(arch, params, x, dataclasses.replace(config, sharding=mode))
        for name in base[0].masks:
            np.testing.assert_array_equal(got[0].masks[name], base[0].masks[name])
    assert sharding.candidate_sharding("candidates") is None  # one device: nothing to lay out


@pytest.mark.parametrize("make, message", [
    (lambda: PoZConfig(sharding="layers"), "sharding must be one of seeds, candidates"),
    (lambda: TrainConfig(sharding="candidates"), "training shards its seeds only"),
    (lambda: TrainConfig(sharding="seeds", seed_batching="loop"), "needs seed_batching"),
    (lambda: CKAConfig(sharding="seeds"), "one network at a time"),
])
def test_bad_sharding_values_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        config = make()
        if isinstance(config, PoZConfig):
            arch, params, x = small_network("lenet5_cifar")
            poz_search(arch, params, x, config)


def test_refusals_of_searches_that_cannot_shard_seeds():
    arch, params, x = small_network("lenet5_cifar")
    with pytest.raises(ValueError, match="sharding='seeds' does not apply"):
        poz_search(arch, params, x, PoZConfig(direction="global", sharding="seeds"))
    with pytest.raises(ValueError, match="fraction curves shard their seeds only"):
        fraction_curve(arch, params, x, "fc2", sharding="candidates")


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    """The report of tests/sharded_runs.py run with 8 forced CPU devices."""
    out = tmp_path_factory.mktemp("sharded") / "report.json"
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
           + " --xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "sharded_runs.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["devices"] == 8
    return report


def test_search_on_eight_devices_equals_one(eight_devices):
    runs = eight_devices["search"]
    for key, run in runs.items():
        direction, mode = key.split("/")
        base = runs[f"{direction}/None"]["results"]
        assert len(run["results"]) == len(base)
        for got, want in zip(run["results"], base, strict=True):
            assert got["masks"] == want["masks"] and got["seed"] == want["seed"]
            assert got["final_score"] == pytest.approx(want["final_score"], abs=1e-6)
        spans = {devices for devices, _ in run["layouts"]}
        assert spans == ({1} if mode == "None" else {8}), key
        if mode == "candidates":
            assert all(spec == "P(None, 'candidates')" for _, spec in run["layouts"])
        if mode == "seeds":
            assert all(spec == "P('seeds',)" for _, spec in run["layouts"])


def test_training_on_eight_devices_equals_one(eight_devices):
    plain, sharded = eight_devices["train"]["None"], eight_devices["train"]["seeds"]
    assert sharded["best_epoch"] == plain["best_epoch"]
    for a, b in zip(sharded["params"], plain["params"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for name, values in plain["history"].items():
        np.testing.assert_allclose(sharded["history"][name], values, atol=1e-6, err_msg=name)
    assert np.shape(plain["history"]["train_loss"])[1] == 5


def test_curves_and_cka_on_eight_devices_equal_one(eight_devices):
    other = eight_devices["other"]
    assert len(other["curves/seeds"]) == 5
    for got, want in zip(other["curves/seeds"], other["curves/None"], strict=True):
        np.testing.assert_allclose(got[0], want[0], atol=1e-6)
        np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    assert other["cka/candidates"] == other["cka/None"]


def test_jax_here_has_one_device():
    assert jax.local_device_count() == 1  # the 8 devices live in the subprocess only


def test_seed_share_covers_every_seed_once():
    shares = [sharding.seed_share(10, (i, 4)).tolist() for i in range(4)]
    assert shares == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    with pytest.raises(ValueError, match="need 0 <= i < n"):
        sharding.seed_share(10, (4, 4))
    with pytest.raises(ValueError, match="only 3 seeds to share"):
        sharding.seed_share(3, (0, 4))


def test_job_array_shares_train_search_and_merge(tmp_path, capsys):
    """``train --seeds-slice`` and ``prune --seeds-slice`` run shares of a sweep with the
    sweep's seed ids; ``jaxprune report`` merges the shares' results into one sweep."""
    from jaxprune.cli import main

    results = []
    for i in range(2):
        out = tmp_path / f"share{i}"
        assert main(["train", "--model", "mlp", "--data", "digits", "--seeds", "3",
                     "--seeds-slice", f"{i}/2", "--epochs", "1", "--out", str(out),
                     "--no-progress"]) == 0
        results.append(tmp_path / f"search{i}.json")
        assert main(["prune", "--checkpoint", str(out / "model"), "--layers", "fc2",
                     "--no-progress", "--json", str(results[-1])]) == 0
    seeds = [[r["seed"] for r in json.loads(p.read_text())["results"]["bottom-up"]]
             for p in results]
    assert seeds == [[0, 1], [2]]
    assert json.loads(results[1].read_text())["inputs"]["seeds"] == [2]
    assert main(["report", *map(str, results), "--out", str(tmp_path / "report")]) == 0
    merged = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted({row["seed"] for row in merged["rows"]}) == [0, 1, 2]
    one = tmp_path / "one.json"
    assert main(["prune", "--checkpoint", str(tmp_path / "share0" / "model"), "--layers",
                 "fc2", "--seeds-slice", "1/2", "--no-progress", "--json", str(one)]) == 0
    searched = json.loads(one.read_text())
    assert [r["seed"] for r in searched["results"]["top-down"]] == [1]
    assert searched["inputs"]["seeds_slice"] == "1/2"
    capsys.readouterr()
    assert main(["prune", "--checkpoint", str(tmp_path / "share0" / "model"), "--layers",
                 "fc2", "--seeds-slice", "0/3", "--no-progress"]) == 2
    assert "only 2 seeds to share" in capsys.readouterr().err
