"""The persistent compilation cache: entries after a jitted call, none when opted out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jaxprune import cli, compilation

REPO = Path(__file__).resolve().parents[1]

JIT = """
from jaxprune.compilation import enable_compile_cache
path = enable_compile_cache(min_compile_seconds=0)
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.ones(7)).block_until_ready()
print(path)
"""


def _run(tmp_path: Path, **env: str) -> str:
    full = {k: v for k, v in os.environ.items()
            if k not in ("JAXPRUNE_NO_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    full.update(JAXPRUNE_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu",
                PYTHONPATH=str(REPO), **env)
    done = subprocess.run([sys.executable, "-c", JIT], env=full, capture_output=True, text=True,
                          timeout=300, check=True)
    return done.stdout.strip().splitlines()[-1]


def _entries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def test_cache_gets_entries_under_the_cache_root(tmp_path):
    xla = tmp_path / "cache" / "xla"
    assert _run(tmp_path) == str(xla)
    assert _entries(xla), "no compiled program was stored"


def test_opt_out_by_environment_leaves_no_entries(tmp_path):
    assert _run(tmp_path, JAXPRUNE_NO_COMPILE_CACHE="1") == "None"
    assert not _entries(tmp_path / "cache")


def test_a_folder_set_for_jax_itself_is_kept(tmp_path):
    own = tmp_path / "own"
    assert _run(tmp_path, JAX_COMPILATION_CACHE_DIR=str(own)) == str(own)
    assert _entries(own) and not _entries(tmp_path / "cache")


def test_cli_flag_skips_the_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(compilation, "enable_compile_cache", lambda: calls.append(1))
    parser = cli.build_parser()
    cli._setup(parser.parse_args(["models", "--no-compile-cache"]))
    assert calls == []
    cli._setup(parser.parse_args(["models"]))
    assert calls == [1]


def test_compile_cache_dir_follows_jaxprune_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPRUNE_CACHE", str(tmp_path))
    assert compilation.compile_cache_dir() == tmp_path / "xla"
    assert compilation.compile_cache_dir(tmp_path / "x") == tmp_path / "x" / "xla"
