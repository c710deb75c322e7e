"""Strict JAX for every test: broadcasting or dtype mistakes fail loudly."""

import os
from pathlib import Path

import jax
import pytest

# Commands run in tests (in process or in subprocesses) keep no compiled programs in the user's
# cache; tests/test_compilation.py turns it on for its own subprocesses.
os.environ.setdefault("JAXPRUNE_NO_COMPILE_CACHE", "1")

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
