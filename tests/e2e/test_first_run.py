"""A first run on a new machine: a fresh Prefect home, both cores busy, two runs starting at once on one run store,
no call home. The two runs share the store's per-chunk work: each chunk is asked once, by one of them.

The two runs are also the project's no-call-home check (tests/e2e/test_no_call_home.py holds the guard's own test):
every Python process they start records and refuses any connection or lookup beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from conftest import FIXTURES
from llm_stub import LLMStub
from test_no_call_home import ROOT, guarded_env

from domain_embed.tasks.core.allocator import wanted_library

BUSY = "import time\nend = time.time() + 900\nwhile time.time() < end: pass\n"


class OutputReader:
    """Collects a process's output in a thread; `started` is set once its flow run has begun (the API is up)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines, self.started = proc, [], threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Beginning flow run" in line:
                self.started.set()
        self.started.set()  # ended without beginning: the assertions on its output say why

    def text(self, timeout: float) -> str:
        """All the output, once the process has ended."""
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=30)
        return "".join(self.lines)


@pytest.mark.slow
@pytest.mark.extended  # minutes with both cores kept busy: `make test-all`
def test_two_first_runs_on_a_fresh_prefect_home_with_busy_cores_succeed_and_call_no_one(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("wal-intro.html", "tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, docs)
    home = tmp_path / "prefect-home"  # never used before: no database yet
    net_log = tmp_path / "net.log"
    small = tmp_path / "small.json"  # what is tested is the start-up, not the recipe: one short epoch
    small.write_text(json.dumps({"train": {"teacher": None, "max_seq_length": 64, "epochs": 1, "evaluations": 0}}))
    burners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 2)]
    try:
        with LLMStub() as stub:
            runs, readers = [], []
            for i in range(2):
                args = [
                    sys.executable,
                    "-m",
                    "domain_embed.flows.cli",
                    "run",
                    str(docs),
                    "--out",
                    str(tmp_path / f"out{i}"),
                    "--store",
                    str(tmp_path / "store"),
                    "--llm",
                    "openai/stub-model",
                    "--api-base",
                    stub.api_base,
                    "--api-key-env",
                    "STUB_LLM_KEY",
                    "--batch-size",
                    "8",
                    "--config",
                    str(small),
                ]
                runs.append(
                    subprocess.Popen(
                        args,
                        cwd=ROOT,
                        env=guarded_env(home, net_log),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
                readers.append(OutputReader(runs[-1]))
            # the cores stay busy through what timed out before: the Prefect database's creation and the server's start-up
            for reader in readers:
                reader.started.wait(timeout=900)
            for burner in burners:
                burner.kill()
            outputs = [reader.text(timeout=1500) for reader in readers]
            asked = dict(stub.chunks_seen)
    finally:
        for burner in burners:
            burner.kill()
    reports = []
    for i, (run, output) in enumerate(zip(runs, outputs)):
        assert run.returncode == 0, output[-4000:]
        assert "Timed out" not in output
        assert "telemetry" not in output.lower()
        reports.append(json.loads((tmp_path / f"out{i}" / "report.json").read_text()))
        assert reports[-1]["evaluation"]["synthetic"]["results"]["tuned"]
        assert reports[-1]["allocator"] == ("tcmalloc" if wanted_library("auto") else "system")  # the re-executed CLI
    assert asked and set(asked.values()) == {1}, asked  # no chunk paid twice
    assert sum(r["llm_usage"]["llm_calls"] for r in reports) == len(asked)
    assert reports[0]["store"] == reports[1]["store"]  # the same corpus, pairs, tuples and model as one run would make
    assert (home / "prefect.db").is_file()
    assert not net_log.exists(), f"outbound network use:\n{net_log.read_text()}"
