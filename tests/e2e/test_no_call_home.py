"""No call home: the network guard that tests/e2e/test_first_run.py puts on every process of two whole pipeline runs
(CLI, ephemeral Prefect server, LLM through litellm), and its own check that it records and refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import NETGUARD, ROOT


def guarded_env(home: Path, log: Path) -> dict[str, str]:
    """The environment of a fresh machine (no Prefect or telemetry settings) with the network guard on every Python child."""
    drop = ("PREFECT_", "DO_NOT_TRACK", "HF_", "TRANSFORMERS_", "LITELLM_", "SCARF_", "UNSTRUCTURED_")
    drop += ("LD_PRELOAD", "DOMAIN_EMBED_ALLOCATOR")  # the allocator a fresh machine's run picks itself
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PREFECT_HOME=str(home),
        STUB_LLM_KEY="sk-stub",
        NETGUARD_LOG=str(log),
        PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def test_the_guard_records_and_refuses_an_outside_connection(tmp_path):
    log = tmp_path / "net.log"
    probe = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 443), timeout=1)\nexcept OSError as e:\n    print(e)\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=guarded_env(tmp_path / "home", log), capture_output=True, text=True
    )
    assert "netguard" in out.stdout and "192.0.2.1" in log.read_text()
