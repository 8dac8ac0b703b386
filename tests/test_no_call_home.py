"""No call home: a whole pipeline run (CLI, ephemeral Prefect server, LLM through litellm) opens no connection off 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from llm_stub import LLMStub

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = Path(__file__).resolve().parent / "netguard"


def guarded_env(home: Path, log: Path) -> dict[str, str]:
    """The environment of a fresh machine (no Prefect or telemetry settings) with the network guard on every Python child."""
    drop = ("PREFECT_", "DO_NOT_TRACK", "HF_", "TRANSFORMERS_", "LITELLM_", "SCARF_", "UNSTRUCTURED_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PREFECT_HOME=str(home), STUB_LLM_KEY="sk-stub", NETGUARD_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))  # fmt: skip
    return env


def test_the_guard_records_and_refuses_an_outside_connection(tmp_path):
    log = tmp_path / "net.log"
    probe = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 443), timeout=1)\nexcept OSError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", probe], env=guarded_env(tmp_path / "home", log), capture_output=True, text=True)
    assert "netguard" in out.stdout and "192.0.2.1" in log.read_text()


@pytest.mark.slow
def test_a_pipeline_run_connects_to_nothing_but_loopback(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("wal-intro.html", "tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, docs)
    log = tmp_path / "net.log"
    with LLMStub() as stub:
        args = [sys.executable, "-m", "flows.cli", "run", str(docs), "--out", str(tmp_path / "out"), "--store", str(tmp_path / "store"),
                "--llm", "openai/stub-model", "--api-base", stub.api_base, "--api-key-env", "STUB_LLM_KEY", "--batch-size", "8",
                "--config", str(write_config(tmp_path))]  # fmt: skip
        run = subprocess.run(args, cwd=ROOT, env=guarded_env(tmp_path / "home", log), capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["evaluation"]["synthetic"]["results"]["tuned"]
    assert not log.exists(), f"outbound network use:\n{log.read_text()}"
    assert "telemetry" not in (run.stdout + run.stderr).lower()


def write_config(folder: Path) -> Path:
    """Training settings small enough for a test run (no teacher model to embed with)."""
    path = folder / "config.json"
    path.write_text(json.dumps({"train": {"teacher": None, "max_seq_length": 64, "epochs": 1}}))
    return path
