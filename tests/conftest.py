"""Strict JAX for every test: broadcasting or dtype mistakes fail loudly."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Commands run in tests (in process or in subprocesses) keep no compiled programs in the user's
# cache; tests/test_compilation.py turns it on for its own subprocesses. Instead, every process
# of one test session (xdist workers and the command lines the tests start) shares one
# throw-away JAX compilation cache, so a program the suite compiled once is not compiled again.
os.environ.setdefault("JAXPRUNE_NO_COMPILE_CACHE", "1")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the session's first process owns it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxprune-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

# The command lines the tests start get the huge-page malloc they would relaunch for
# (jaxprune.malloc) from the start, rather than paying one relaunch each.
from jaxprune.malloc import huge_page_environment  # noqa: E402

os.environ.update(huge_page_environment(os.environ) or {})

# Most of the suite's time is XLA:CPU compiling many small programs, which LLVM's lowest
# optimisation level roughly halves (a mini EfficientNet search: 36 s -> 17 s cold). The
# programs (HLO) are the same, only their machine code is less optimised; a user's own
# setting wins, and tests/test_default_compiler.py checks the exactness claims at XLA's
# default level in a process of its own (JAXPRUNE_TEST_XLA_DEFAULT=1).
if ("--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
        and os.environ.get("JAXPRUNE_TEST_XLA_DEFAULT") != "1"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (after the cache folder, which JAX reads on import)
import pytest  # noqa: E402

jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JAXPRUNE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set JAXPRUNE_DATA)")
    return SHARED_DATA
