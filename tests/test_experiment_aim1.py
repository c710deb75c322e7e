"""experiments/aim1.py (quick mode) and ``jaxprune report`` on its results: rows per seed and
direction that hold together, resumption by seed chunk, refusal of another protocol's
chunk, and a report merged from shares that equals the report of the whole."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxprune.cli import main as cli
from jaxprune.sweep_report import load_sweep, sweep_summary

ROOT = Path(__file__).resolve().parents[1]
DIRECTIONS = ["bottom-up", "top-down", "alternate", "global", "global-alternate"]


def experiment():
    spec = importlib.util.spec_from_file_location("aim1", ROOT / "experiments" / "aim1.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["aim1"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("aim1")
    args = ["--quick", "--data", "mnist", "--runs", str(tmp / "runs"), "--out",
            str(tmp / "out"), "--data-dir", str(shared_data), "--no-progress"]
    assert experiment().main(args) == 0
    return tmp, args


def test_rows_per_seed_and_direction_hold_together(quick_run):
    tmp, _ = quick_run
    result = json.loads((tmp / "out" / "aim1_mnist.json").read_text())
    assert (tmp / "out" / "aim1_mnist.png").stat().st_size > 0
    rows = result["rows"]
    assert [(r["seed"], r["direction"]) for r in rows] == \
        [(s, d) for s in (0, 1) for d in DIRECTIONS]
    for r in rows:
        assert r["fit"] >= r["threshold"] == 0.8 and r["compression_rate"] >= 1.0
        assert all(1 <= r["kept"][n] <= w for n, w in r["widths"].items())
        acc = r["test_accuracy"]
        assert 0.1 < acc["unpruned"] <= 1 and 0 <= acc["pruned"] <= 1
        paper = r["direction"] in ("bottom-up", "top-down")
        assert (acc["fine_tuned"] is not None) == paper == (r["jaccard"] is not None)
    by = {(r["seed"], r["direction"]): r for r in rows}
    for s in (0, 1):  # alternate continues top-down; global-alternate continues global
        for a, b in [("alternate", "top-down"), ("global-alternate", "global")]:
            assert all(by[s, a]["kept"][n] <= by[s, b]["kept"][n] for n in by[s, a]["kept"])
    table = (tmp / "out" / "aim1_mnist.md").read_text()
    assert "| global-alternate |" in table and "Jaccard" in table


def test_committed_results_stand_for_seeds_whose_working_folder_is_gone(quick_run, tmp_path):
    tmp, args = quick_run
    out = tmp_path / "out"
    out.mkdir()
    whole = json.loads((tmp / "out" / "aim1_mnist.json").read_text())
    (out / "aim1_mnist.json").write_text(json.dumps(whole))
    runs = tmp_path / "runs"  # a fresh working folder: nothing of the earlier run's chunks
    argv = [*args[:args.index("--runs")], "--runs", str(runs), "--out", str(out),
            *args[args.index("--out") + 2:]]
    assert experiment().main(argv) == 0  # nothing trained: both chunks are in the results
    assert not runs.exists() or not any(runs.rglob("rows.json"))
    again = json.loads((out / "aim1_mnist.json").read_text())
    assert again["rows"] == whole["rows"]
    assert again["kept_from_earlier_results"]["seeds"] == [0, 1]


def test_rerun_reuses_finished_chunks_and_refuses_another_protocol(quick_run, capsys):
    tmp, args = quick_run
    before = (tmp / "out" / "aim1_mnist.json").read_text()
    assert experiment().main(args) == 0  # nothing retrained or searched again
    assert json.loads((tmp / "out" / "aim1_mnist.json").read_text())["rows"] == \
        json.loads(before)["rows"]
    done = tmp / "runs" / "mnist" / "seeds_001-001" / "rows.json"
    saved = json.loads(done.read_text())
    saved["identity"]["protocol"]["threshold"] = 0.9
    done.write_text(json.dumps(saved))
    assert experiment().main(args) == 2
    assert "error:" in capsys.readouterr().err and "threshold" in done.read_text()


def test_report_of_shares_equals_report_of_the_whole(quick_run, tmp_path, capsys):
    tmp, _ = quick_run
    whole = json.loads((tmp / "out" / "aim1_mnist.json").read_text())
    shares = []
    for s in (0, 1):
        part = {**whole, "rows": [r for r in whole["rows"] if r["seed"] == s]}
        shares.append(tmp_path / f"share{s}.json")
        shares[-1].write_text(json.dumps(part))
    assert cli(["report", *map(str, shares), "--out", str(tmp_path / "rep")]) == 0
    merged = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert merged["summary"] == json.loads(json.dumps(sweep_summary(whole["rows"])))
    stats = merged["summary"]["directions"]["bottom-up"]["compression_rate"]
    values = [r["compression_rate"] for r in whole["rows"] if r["direction"] == "bottom-up"]
    assert stats["mean"] == pytest.approx(np.mean(values))
    assert stats["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (tmp_path / "rep" / "report.png").stat().st_size > 0
    capsys.readouterr()
    assert cli(["report", str(shares[0]), str(shares[0]), "--out", str(tmp_path / "x")]) == 2
    assert "more than one file" in capsys.readouterr().err
    other = {**whole, "protocol": {**whole["protocol"], "threshold": 0.9}}
    shares[1].write_text(json.dumps(other))
    with pytest.raises(ValueError, match="another protocol"):
        load_sweep(shares)
