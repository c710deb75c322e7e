"""The suite compiles at LLVM's lowest optimisation level (tests/conftest.py) to save compile
time. The exactness claims users rely on — the vectorised searches equal their sequential
twins, a masked network's fit equals the fit of the network without those units — are checked
again here with XLA's default level, in a pytest process of its own."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EXACTNESS_TESTS = [
    "tests/test_search_poz.py::test_vectorised_equals_sequential[0-bottom-up]",
    "tests/test_search_directions.py::test_vectorised_equals_sequential[global-alternate]",
    "tests/test_removed_units.py::test_fit_of_masked_network_equals_fit_of_compacted[lenet5_mnist]",
]


def test_exactness_claims_hold_at_the_default_optimisation_level():
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_backend_optimization_level")]
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAXPRUNE_TEST_XLA_DEFAULT": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", *EXACTNESS_TESTS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(EXACTNESS_TESTS)} passed" in done.stdout
