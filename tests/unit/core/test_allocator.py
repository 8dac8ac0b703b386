"""The run's allocator: tcmalloc preloaded by re-executing the command where the machine has it; a bad setting named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from domain_embed.tasks.core.allocator import ALLOCATOR_ENV, wanted_library

PROBE = (
    "import json, os, sys\n"
    "from domain_embed.tasks.core.allocator import allocator_in_use, preload_allocator\n"
    "preload_allocator()\n"
    "print(json.dumps([allocator_in_use(), os.environ.get('LD_PRELOAD', ''), sys.argv[1:]]))\n"
)
TCMALLOC = wanted_library("auto")
linux = pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")


def probe(setting: str | None, preload: str = "") -> list:
    env = {k: v for k, v in os.environ.items() if k not in (ALLOCATOR_ENV, "LD_PRELOAD")}
    env.update({ALLOCATOR_ENV: setting} if setting is not None else {}, LD_PRELOAD=preload)
    command = [sys.executable, "-X", "utf8", "-c", PROBE, "run", "a folder", "--out", "x"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


@linux
@pytest.mark.skipif(TCMALLOC is None, reason="no tcmalloc (apt-get install libtcmalloc-minimal4)")
def test_auto_re_executes_the_command_line_with_tcmalloc_and_system_takes_an_inherited_one_out():
    arguments = ["run", "a folder", "--out", "x"]
    assert probe(None) == ["tcmalloc", TCMALLOC, arguments]
    assert probe("auto", preload=TCMALLOC) == ["tcmalloc", TCMALLOC, arguments]  # already there: no second start
    assert probe("system") == ["system", "", arguments]
    assert probe("system", preload=TCMALLOC) == ["system", "", arguments]


@linux
def test_a_missing_library_is_an_error_naming_the_setting_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=f"{ALLOCATOR_ENV}='.*nowhere.so': not a file"):
        wanted_library(str(tmp_path / "nowhere.so"))
    command = [os.path.join(os.path.dirname(sys.executable), "domain-embed"), "plan", str(tmp_path)]
    env = {**os.environ, ALLOCATOR_ENV: str(tmp_path / "nowhere.so")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"error: {ALLOCATOR_ENV}=" in done.stderr and "nowhere.so" in done.stderr
