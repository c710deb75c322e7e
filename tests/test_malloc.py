"""The huge-page relaunch of entry points (jaxprune.malloc)."""

import os
import platform
import subprocess
import sys

import pytest

from jaxprune import malloc

GLIBC = ("glibc", "2.36")


@pytest.mark.skipif(platform.system() != "Linux", reason="the tunable is Linux (glibc) only")
def test_environment_adds_the_tunable_once():
    env = malloc.huge_page_environment({"PATH": "/bin"}, libc=GLIBC, thp=True)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": malloc.TUNABLE}
    assert malloc.huge_page_environment(env, libc=GLIBC, thp=True) is None  # no second relaunch
    other = malloc.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                         libc=GLIBC, thp=True)
    assert other["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{malloc.TUNABLE}"


@pytest.mark.parametrize("environ, libc, thp", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, True),  # the user's choice wins
    ({}, ("glibc", "2.34"), True),  # the tunable came with glibc 2.35
    ({}, ("musl", "1.2"), True),
    ({}, ("", ""), True),
    ({}, GLIBC, False),  # transparent huge pages off in the kernel
])
def test_environment_declines(environ, libc, thp):
    assert malloc.huge_page_environment(environ, libc=libc, thp=thp) is None


def test_thp_mode_file(tmp_path):
    mode = tmp_path / "enabled"
    mode.write_text("always [madvise] never\n")
    assert malloc.thp_available(mode)
    mode.write_text("always madvise [never]\n")
    assert not malloc.thp_available(mode)
    assert not malloc.thp_available(tmp_path / "absent")


def test_relaunch_reexecutes_the_command_once():
    code = ("import os; from jaxprune.malloc import relaunch_with_huge_pages as r; r(); "
            "print(repr(os.environ.get('GLIBC_TUNABLES')))")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    expected = malloc.huge_page_environment(env)
    assert out == repr(None if expected is None else malloc.TUNABLE)
