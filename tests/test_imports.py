"""Import cost: the package, the command line's parsing and the data loaders stay light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HEAVY = ("orbax", "tensorflow_datasets", "tensorflow", "matplotlib")
NO_JAX = (*HEAVY, "jax", "flax", "optax")

PROBE = """
import contextlib, io, json, sys
{code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""


def _loaded(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("code, absent", [
    ("import jaxprune", NO_JAX),
    ("import jaxprune.cli", NO_JAX),
    ("import jaxprune.data", NO_JAX),
    ("import jaxprune.report, jaxprune.provenance, jaxprune.compilation", NO_JAX),
    ("from jaxprune.cli import main\n"
     "with contextlib.redirect_stderr(io.StringIO()):\n"
     "    assert main(['prune', '--threshold', '5']) == 2", NO_JAX),
    ("from jaxprune.cli import main\n"
     "with contextlib.redirect_stdout(io.StringIO()):\n"
     "    assert main(['prune', '--help']) == 0", NO_JAX),
])
def test_light_imports(code, absent):
    loaded = _loaded(code)
    assert not loaded & set(absent), f"{code!r} loaded {sorted(loaded & set(absent))}"
