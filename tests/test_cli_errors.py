"""Every failure a user can cause on the command line: ``error: ...`` on stderr, exit code 2
(130 for an interrupt), no traceback, no partial output file — and resume files are never
reused by another run. Each case runs ``python -m jaxprune.cli`` in a subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxprune import checkpoint
from jaxprune.cli import DATASETS, MODELS, POZ_DIRECTIONS, SHARDINGS, build_parser, main


def cli(*args, cwd, timeout=300, env=None):
    """Run the command; returns (exit code, stdout, stderr)."""
    full_env = {**os.environ, "JAXPRUNE_OFFLINE": "1", "MPLBACKEND": "Agg", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "jaxprune.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=full_env)
    return p.returncode, p.stdout, p.stderr


def refused(code, err, *fragments, exit_code=2):
    assert code == exit_code, err
    assert "Traceback" not in err and "Event loop" not in err, err
    assert "error" in err or exit_code == 130, err
    for f in fragments:
        assert f in err, (f, err)


def no_leftovers(folder):
    left = [p.name for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert left == [], left


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two checkpoints of 2 digits MLPs (different epochs, so different weights)."""
    root = tmp_path_factory.mktemp("errors")
    for name, epochs in (("a", 2), ("b", 1)):
        assert main(["train", "--model", "mlp", "--data", "digits", "--seeds", "2", "--epochs",
                     str(epochs), "--out", str(root / name), "--no-progress"]) == 0
    return root


def prune_args(root, ckpt="a", *extra):
    return ["prune", "--checkpoint", root / ckpt / "model", "--no-progress",
            "--layers", "fc2", *extra]


# ----------------------------------------------------------------------------- run identity


def test_resume_file_of_another_checkpoint_or_protocol_is_refused(ckpts, tmp_path):
    resume = tmp_path / "r.json"
    assert main([str(a) for a in prune_args(ckpts, "b", "--resume", resume)]) == 0
    before = resume.read_text()
    code, _, err = cli(*prune_args(ckpts, "a", "--resume", resume, "--json", tmp_path / "o.json"),
                       cwd=tmp_path)
    refused(code, err, "written by another run", "params", "--fresh")
    code, _, err = cli(*prune_args(ckpts, "b", "--resume", resume, "--threshold", "0.95",
                                   "--stimuli", "100"), cwd=tmp_path)
    refused(code, err, "threshold (default/none in the file, 0.95 now)",
            "stimuli (359 in the file, 100")
    assert resume.read_text() == before and not (tmp_path / "o.json").exists()
    assert main([str(a) for a in prune_args(ckpts, "a", "--resume", resume, "--fresh",
                                            "--json", tmp_path / "o.json")]) == 0
    saved = json.loads(resume.read_text())
    assert saved["identity"]["params"] != json.loads(before)["identity"]["params"]
    result = json.loads((tmp_path / "o.json").read_text())
    assert result["inputs"]["data"] == "digits" and result["inputs"]["stimuli"] == 359
    assert result["command"]["options"]["resume"] == str(resume)


def test_rerun_of_the_main_job_with_another_threshold_refuses_then_meets_it(tmp_path, capsys):
    out = tmp_path / "main"
    small = ["--quick", "--seeds", "1", "--epochs", "2", "--out", str(out), "--no-progress"]
    assert main(["run", *small]) == 0
    code, _, err = cli("run", *small, "--threshold", "0.9", cwd=tmp_path)
    refused(code, err, "search.json was written by another run", "threshold", "--fresh")
    capsys.readouterr()
    assert main(["run", *small, "--threshold", "0.9", "--fresh"]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    runs = [r for rs in summary["search"]["results"].values() for r in rs]
    assert all(r["final_score"] >= 0.9 and r["threshold"] == 0.9 for r in runs)
    assert "threshold R² ≥ 0.9" in stdout


@pytest.mark.parametrize("content, fragment", [
    ('{"identity": {"jaxprune": "0.1.0"', "not a readable PoZ resume file"),
    ('{"results": {}}', "records no run identity"),
    ('[1, 2]', "not a readable PoZ resume file"),
])
def test_damaged_or_foreign_resume_files_are_named(ckpts, tmp_path, content, fragment):
    resume = tmp_path / "r.json"
    resume.write_text(content)
    code, _, err = cli(*prune_args(ckpts, "a", "--resume", resume), cwd=tmp_path)
    refused(code, err, str(resume), fragment)


# ----------------------------------------------------------------------------- target RSMs


def _target(tmp_path, name, matrix):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, matrix)
    else:
        path.write_text(matrix)
    return path


@pytest.mark.parametrize("name, matrix, fragment", [
    ("nan.npy", np.where(np.eye(359) > 0, np.nan, 0.5), "NaN/Inf"),
    ("const.npy", np.full((359, 359), 0.3), "constant off the diagonal"),
    ("asym.npy", np.triu(np.random.default_rng(0).random((359, 359))), "not symmetric"),
    ("small.npy", np.corrcoef(np.random.default_rng(1).normal(size=(10, 4))),
     "shape (10, 10) but there are 359 stimuli"),
    ("words.npy", np.array([["a", "b", "c"]] * 3), "not numbers"),
    ("words.csv", "a,b,c\n1,2,3\n", "does not hold numbers"),
    ("m.pkl", "junk", "unknown format .pkl; accepted: .npy"),
])
def test_bad_target_rsms_are_refused_before_the_search(ckpts, tmp_path, name, matrix, fragment):
    path = _target(tmp_path, name, matrix)
    code, _, err = cli(*prune_args(ckpts, "a", "--target-rsm", path, "--json",
                                   tmp_path / "o.json"), cwd=tmp_path)
    refused(code, err, fragment)
    assert not (tmp_path / "o.json").exists()


def test_csv_and_npz_targets_are_read(tmp_path):
    from jaxprune.data import load_target_rsm

    m = np.corrcoef(np.random.default_rng(0).normal(size=(5, 8)))
    (tmp_path / "m.csv").write_text("\n".join(",".join(f"{v:.17g}" for v in row) for row in m))
    np.savez(tmp_path / "m.npz", animals=m, other=m)
    np.testing.assert_allclose(load_target_rsm(tmp_path / "m.csv"), m)
    np.testing.assert_allclose(load_target_rsm(f"{tmp_path / 'm.npz'}:animals"), m)
    with pytest.raises(ValueError, match=r"has keys \['animals', 'other'\]"):
        load_target_rsm(tmp_path / "m.npz")


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("flag", ["--json", "--figure", "--resume"])
def test_outputs_that_are_folders_fail_before_the_search(ckpts, tmp_path, flag):
    (tmp_path / "folder").mkdir()
    code, _, err = cli(*prune_args(ckpts, "a", flag, tmp_path / "folder"), cwd=tmp_path)
    refused(code, err, f"{flag} {tmp_path / 'folder'} is a folder")
    no_leftovers(tmp_path)


@pytest.mark.parametrize("command", ["train", "run"])
def test_an_out_folder_that_cannot_be_created_fails_before_training(tmp_path, command):
    (tmp_path / "file").write_text("x")
    extra = ["--model", "mlp", "--data", "digits"] if command == "train" else ["--quick"]
    code, _, err = cli(command, *extra, "--out", tmp_path / "file" / "sub", "--no-progress",
                       cwd=tmp_path)
    refused(code, err, "--out", "is a file")


def test_stale_temporaries_of_a_killed_save_are_removed(ckpts, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(ckpts / "a", out)
    stale = out / "train" / "3.orbax-checkpoint-tmp-1733000000"  # a save killed mid-write
    stale.mkdir()
    (stale / "half").write_text("x")
    assert main(["train", "--model", "mlp", "--data", "digits", "--seeds", "2", "--epochs",
                 "3", "--out", str(out), "--json", str(tmp_path / "t.json"),
                 "--no-progress"]) == 0
    assert not stale.exists()
    from jaxprune import checkpoint

    summary = json.loads((tmp_path / "t.json").read_text())
    before = checkpoint.read_metadata(ckpts / "a" / "model")["train_seconds"]
    assert summary["epochs_run"] == 3  # resumed after the fixture's 2 epochs
    assert summary["train_seconds"] > before > 0  # summed over both calls
    assert min(summary["best_epoch"]) >= 1  # counted from 1


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("args, fragment", [
    (["prune", "--checkpoint", "x", "--stimuli", "-5"], "argument --stimuli: -5 is not in [3"),
    (["prune", "--checkpoint", "x", "--method", "l1", "--stimuli", "0"], "--stimuli: 0"),
    (["curve", "--checkpoint", "x", "--layer", "fc1", "--seed", "-1"], "--seed: -1"),
    (["train", "--model", "mlp", "--data", "digits", "--out", "o", "--lr", "-1"], "--lr: -1"),
    (["train", "--model", "mlp", "--data", "digits", "--out", "o", "--lr", "nan"], "--lr: nan"),
    (["train", "--model", "mlp", "--data", "digits", "--out", "o", "--epochs", "-3"],
     "argument --epochs: -3 is not in [1"),
    (["run", "--threshold", "1.5"], "--threshold: 1.5 is not in (0.0, 1.0]"),
    (["train", "--model", "resnet9", "--data", "digits", "--out", "o"], "invalid choice"),
])
def test_bad_arguments_are_refused_at_once(tmp_path, args, fragment):
    code, _, err = cli(*args, cwd=tmp_path)
    refused(code, err, fragment)
    assert not (tmp_path / "o").exists()


def test_bad_keep_fraction_is_a_clear_error(ckpts, tmp_path):
    code, _, err = cli("curve", "--checkpoint", ckpts / "a" / "model", "--layer", "fc2",
                       "--keep", "0.5,1.5", "--no-progress", cwd=tmp_path)
    refused(code, err, "keep fractions must lie in (0, 1]")


def test_too_many_stimuli_fail_before_training(tmp_path):
    code, _, err = cli("run", "--quick", "--stimuli", "5000", "--out", tmp_path / "r",
                       cwd=tmp_path)
    refused(code, err, "digits has 359 test images", "at most 359")
    assert not (tmp_path / "r").exists()


def test_seed_outside_the_checkpoint_and_unknown_layer(ckpts, tmp_path):
    code, _, err = cli("curve", "--checkpoint", ckpts / "a" / "model", "--layer", "fc2",
                       "--seed", "7", cwd=tmp_path)
    refused(code, err, "--seed 7 is not a seed of this checkpoint (it has 2")
    code, _, err = cli("curve", "--checkpoint", ckpts / "a" / "model", "--layer", "fc9",
                       cwd=tmp_path)
    refused(code, err, "fc9")


def test_curve_without_random_orders_works(ckpts, tmp_path):
    code, out, err = cli("curve", "--checkpoint", ckpts / "a" / "model", "--layer", "fc2",
                         "--random", "0", "--no-progress", cwd=tmp_path)
    assert code == 0, err
    assert "P(PoZ > random)" in out


def test_missing_data_names_the_flag(ckpts, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(*prune_args(ckpts, "a", "--data", "mnist", "--data-dir", empty),
                       cwd=tmp_path, env={"JAXPRUNE_DATA": str(empty)})
    refused(code, err, "--data-dir")
    assert "data_dir=" not in err.replace("(data_dir= in Python)", "")


def test_damaged_checkpoint_is_an_error_without_asyncio_noise(ckpts, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpts / "a" / "model", bad)
    for f in bad.rglob("*"):
        if f.is_file() and f.name != "metadata.json" and f.stat().st_size > 100:
            f.write_bytes(b"\0" * 16)
    for _ in range(2):
        code, _, err = cli("prune", "--checkpoint", bad, "--no-progress", cwd=tmp_path)
        refused(code, err)


def test_interrupt_says_how_to_resume(tmp_path):
    out = tmp_path / "t"
    env = {**os.environ, "JAXPRUNE_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, "-m", "jaxprune.cli", "train", "--model", "mlp",
                          "--data", "digits", "--epochs", "500", "--out", str(out),
                          "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not checkpoint.steps(out / "train"):  # an epoch is saved
        time.sleep(0.2)
    assert p.poll() is None, "training ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    refused(p.returncode, err, "interrupted; rerun the same command to resume",
            exit_code=130)


# ----------------------------------------------------------------------------- help


def test_every_option_has_help_and_every_subcommand_an_example(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, (name, action.dest)
        assert p.epilog and "jaxprune " + name in p.epilog
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("jaxprune ")


def test_listed_names_are_the_registries_and_the_models_table_is_narrow(capsys):
    from jaxprune import models
    from jaxprune.data import available_datasets
    from jaxprune.search._common import POZ_DIRECTIONS as search_directions
    from jaxprune.sharding import SHARDINGS as sharding_axes

    assert MODELS == tuple(models.available())
    assert POZ_DIRECTIONS == search_directions
    assert SHARDINGS == sharding_axes
    assert DATASETS == available_datasets()
    assert main(["models"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 110


def test_shard_flag_keeps_the_search_and_is_refused_where_it_does_not_apply(ckpts, tmp_path,
                                                                           capsys):
    outs = {}
    for extra in ([], ["--shard", "seeds"], ["--shard", "candidates"]):
        out = tmp_path / f"prune{len(extra)}{extra[-1:]}.json"
        assert main([str(a) for a in prune_args(ckpts, "a", *extra, "--direction", "top-down",
                                                "--json", out)]) == 0
        results = json.loads(out.read_text())["results"]
        outs[tuple(extra)] = {d: [(r["masks"], r["final_score"]) for r in rs]
                              for d, rs in results.items()}
    assert outs[()] == outs[("--shard", "seeds")] == outs[("--shard", "candidates")]
    capsys.readouterr()
    for method, shard in (("l1", "candidates"), ("cka", "seeds")):
        code = main([str(a) for a in prune_args(ckpts, "a", "--method", method, "--shard",
                                                shard)])
        err = capsys.readouterr().err
        refused(code, err, f"--shard {shard} does not apply to --method {method}")
