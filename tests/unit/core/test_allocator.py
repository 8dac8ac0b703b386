"""The run's allocator: tcmalloc preloaded by re-executing the command where the machine has it; a bad setting named."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

from domain_embed.tasks.core.allocator import ALLOCATOR_ENV, wanted_library

PROBE = (
    "from domain_embed.tasks.core.allocator import allocator_in_use, preload_allocator; "
    "preload_allocator(); print(allocator_in_use())"
)
TCMALLOC = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def in_process(setting: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (ALLOCATOR_ENV, "LD_PRELOAD")}
    env.update({ALLOCATOR_ENV: setting} if setting else {})
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    sys.platform != "linux" or TCMALLOC is None, reason="no tcmalloc (apt-get install libtcmalloc-minimal4)"
)
def test_auto_re_executes_the_command_with_tcmalloc_and_system_keeps_the_c_librarys():
    assert in_process(None).stdout.split() == ["tcmalloc"]
    assert in_process("auto").stdout.split() == ["tcmalloc"]
    assert in_process("system").stdout.split() == ["system"]
    assert wanted_library("system") is None


def test_a_missing_library_is_an_error_naming_the_setting_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=f"{ALLOCATOR_ENV}='.*nowhere.so': not a file"):
        wanted_library(str(tmp_path / "nowhere.so"))
    command = [os.path.join(os.path.dirname(sys.executable), "domain-embed"), "plan", str(tmp_path)]
    env = {**os.environ, ALLOCATOR_ENV: str(tmp_path / "nowhere.so")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"error: {ALLOCATOR_ENV}=" in done.stderr and "nowhere.so" in done.stderr
