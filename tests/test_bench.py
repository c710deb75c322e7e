"""``jaxprune bench`` (:mod:`jaxprune.bench`): the vectorised search timed against its
sequential twin on the user's network, with the same masks, and its bad inputs refused."""

import json

import numpy as np
import pytest
from helpers import small_network

from jaxprune.bench import bench_search, candidates_evaluated, machine_info, network_and_stimuli
from jaxprune.cli import main
from jaxprune.search.poz import PoZConfig, poz_search


def test_bench_search_counts_candidates_and_compares_the_twins():
    arch, params, x = small_network("lenet5_cifar")
    out = bench_search(arch, params, x, ["top-down"], PoZConfig(threshold=0.9))
    assert out["same_masks"] is True and out["speedup_vs_sequential"] > 0
    plain = poz_search(arch, params, x, PoZConfig(direction="top-down", threshold=0.9))
    row = out["results"][0]
    assert row["direction"] == "top-down"
    assert row["candidates"] == candidates_evaluated(plain) > 0
    assert row["kept"] == [{k: int(v.sum()) for k, v in plain[0].masks.items()}]
    for stage in ("vectorised_cold", "vectorised_warm", "sequential"):
        assert row[stage]["wall_s"] > 0 and row[stage]["peak_rss_mib"] > 0
    assert row["candidates_per_s"] == pytest.approx(row["candidates"]
                                                    / row["vectorised_warm"]["wall_s"])
    assert out["machine"]["jax_backend"] == "cpu" and "load_average_end" in out["machine"]


def test_random_stimuli_are_recorded_and_seeded():
    arch, params, x, inputs = network_and_stimuli(model="lenet5_cifar", stimuli=5, seed=3)
    again = network_and_stimuli(model="lenet5_cifar", stimuli=5, seed=3)
    np.testing.assert_array_equal(x, again[2])
    assert x.shape == (5, 32, 32, 3) and "standard-normal" in inputs["images"]
    assert inputs["weights"] == "random init, seed 3" and inputs["params_hash"]


def test_bench_command_writes_json_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "mlp", "--stimuli", "20", "--direction",
                 "top-down", "--no-sequential", "--no-progress", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["direction"] for r in data["results"]] == ["top-down"]
    assert "sequential" not in data["results"][0] and data["stimuli"] == 20
    assert data["command"]["subcommand"] == "bench"
    capsys.readouterr()
    assert main(["bench", "--model", "lenet5_cifar", "--checkpoint", str(tmp_path)]) == 2
    assert "either --checkpoint or --model" in capsys.readouterr().err
    assert main(["bench", "--model", "lenet5_cifar", "--direction", "global", "--shard",
                 "seeds"]) == 2
    assert "sharding='seeds' does not apply" in capsys.readouterr().err


def test_machine_info_names_the_versions():
    info = machine_info("numpy")
    assert info["numpy"] == np.__version__ and info["cpu_count"] >= 1
