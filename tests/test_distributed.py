"""Several processes sharing a sweep (:mod:`jaxprune.distributed`): two processes on 127.0.0.1
with 4 forced CPU devices each, joined by ``jax.distributed``, search their shares of a
checkpoint's seeds; the merged results equal one process's search of every seed."""

import json
import os
import socket
import subprocess
import sys

import pytest

from jaxprune import distributed
from jaxprune.cli import main
from jaxprune.sweep_report import load_sweep


@pytest.mark.parametrize("options, message", [
    (("h:1", 2, None, False), "together"),
    (("h:1", 2, 0, True), "do not also give"),
    (("host", 2, 0, False), "expected HOST:PORT"),
    (("h:1", 2, 2, False), "need 0 <= id < --num-processes"),
])
def test_incomplete_or_contradictory_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        distributed.check_options(*options)


def test_nothing_asked_means_one_process_and_plain_names():
    assert distributed.initialize() is False
    assert distributed.process_share() is None
    assert distributed.process_path("r/out.json", None).name == "out.json"
    assert distributed.process_path("r/out.json", (1, 4)).name == "out.process1-of-4.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prune(checkpoint, out, *extra):
    return [sys.executable, "-m", "jaxprune.cli", "prune", "--checkpoint", str(checkpoint),
            "--layers", "fc2", "--direction", "top-down", "--no-progress", "--json", str(out),
            *extra]


def test_two_processes_search_their_shares_and_merge_to_one_run(tmp_path):
    assert main(["train", "--model", "mlp", "--data", "digits", "--seeds", "3", "--epochs",
                 "1", "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    checkpoint = tmp_path / "c" / "model"
    env = {**os.environ, "JAXPRUNE_OFFLINE": "1",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
           + " --xla_force_host_platform_device_count=4"}
    port, out = free_port(), tmp_path / "shared.json"
    procs = [subprocess.Popen(prune(checkpoint, out, "--shard", "seeds", "--coordinator",
                                    f"127.0.0.1:{port}", "--num-processes", "2",
                                    "--process-id", str(i)),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    parts = [tmp_path / f"shared.process{i}-of-2.json" for i in range(2)]
    assert [json.loads(p.read_text())["inputs"]["seeds"] for p in parts] == [[0, 1], [2]]
    single = tmp_path / "single.json"
    assert main([str(a) for a in prune(checkpoint, single)[3:]]) == 0
    merged, _ = load_sweep(parts)
    alone, _ = load_sweep([single])
    assert [(r["seed"], r["direction"], r["kept"]) for r in merged] == \
        [(r["seed"], r["direction"], r["kept"]) for r in alone]
    masks = {(d, r["seed"]): r["masks"] for p in parts
             for d, rs in json.loads(p.read_text())["results"].items() for r in rs}
    for d, rs in json.loads(single.read_text())["results"].items():
        for r in rs:
            assert masks[(d, r["seed"])] == r["masks"]
