"""A docs folder's own configuration and output folder; `domain-embed config save/show`; a flow run dies with its worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from conftest import ROOT, wait_for

from domain_embed.flows.cli import main
from domain_embed.tasks.publishing.folder_config import (
    choose_config,
    default_out_dir,
    load_folder_config,
    save_folder_config,
    settle,
)
from domain_embed.tasks.settings import PipelineConfig


def folders(tmp_path: Path) -> tuple[Path, Path, str]:
    a, b = tmp_path / "a" / "docs", tmp_path / "b" / "docs"  # same folder name, different paths
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    return a, b, str(tmp_path / "store")


def test_each_docs_folder_gets_its_own_output_folder_beside_the_store(tmp_path, monkeypatch):
    a, b, store = folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    out_a = settle(PipelineConfig(docs_dir="a/docs", store_url=store)).out_dir
    assert out_a == default_out_dir(str(a), store) == settle(PipelineConfig(docs_dir=str(a), store_url=store)).out_dir
    assert out_a.startswith(str(tmp_path / "store" / "outputs" / "docs-"))
    assert out_a != settle(PipelineConfig(docs_dir=str(b), store_url=store)).out_dir
    assert settle(PipelineConfig(docs_dir=str(a), store_url=store, out_dir="mine")).out_dir == str(tmp_path / "mine")
    assert Path(default_out_dir(str(a), "s3://bucket/store")).parts[-2:-1] == ("outputs",)


def test_unattended_runs_use_the_folders_saved_configuration(tmp_path):
    a, b, store = folders(tmp_path)
    ran = settle(
        PipelineConfig(
            docs_dir=str(a), store_url=store, llm={"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}
        )
    )
    save_folder_config(ran)
    assert load_folder_config(store, str(a)) == ran and load_folder_config(store, str(b)) is None
    deployment_defaults = PipelineConfig(docs_dir=str(a), store_url=store, train={"deployment": "train-embedder/gpu"})
    config, source = choose_config(deployment_defaults, use_saved=True)
    assert config == ran and "saved for" in source
    config, source = choose_config(deployment_defaults, use_saved=False)
    assert config.train.deployment == "train-embedder/gpu" and source == "the run's parameters"
    config, source = choose_config(PipelineConfig(docs_dir=str(b), store_url=store), use_saved=True)
    assert config.docs_dir == str(b) and "no configuration saved" in source


def test_config_save_and_show(tmp_path, capsys):
    a, _, store = folders(tmp_path)
    assert main(["config", "show", str(a), "--store", store]) == 1
    assert main(["config", "save", str(a), "--store", store, "--llm", "openai/x", "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["config", "show", str(a), "--store", store]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["llm"]["model"] == "openai/x" and shown["train"]["epochs"] == 2.0
    assert shown["out_dir"] == default_out_dir(str(a), store) and shown["docs_dir"] == str(a)
    assert main(["config", "save", str(a), "--store", store, "--epochs", "-1"]) == 2
    assert main(["config", "save", str(tmp_path / "missing"), "--store", store]) == 2


WORKER = """
import subprocess, sys, time
run = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)  # as a process worker starts a flow run
print(run.pid, flush=True)
time.sleep(600)
"""
FLOW_RUN = """
import subprocess, sys, time
from domain_embed.tasks.core.lifeline import die_with_worker
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
assert die_with_worker() and not die_with_worker()
time.sleep(600)
"""


def test_a_flow_run_and_its_children_die_with_their_worker_killed_with_9(tmp_path):
    env = {**os.environ, "DOMAIN_EMBED_LIFELINE": "1", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "out"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), textwrap.dedent(FLOW_RUN)],
            env=env,
            stdout=out,
            cwd=ROOT,
            start_new_session=True,
        )
    pids = wait_for(
        lambda: [int(p) for p in log.read_text().split()] if len(log.read_text().split()) == 2 else None,
        120,
        "the run",
    )
    procs = [psutil.Process(pid) for pid in pids]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    gone, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, [p.pid for p in alive]


API_FLOW_RUN = """
import subprocess, sys, time
from domain_embed.tasks.core import lifeline
lifeline.API_GONE_S, lifeline.API_POLL_S = 3.0, 0.5
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
assert lifeline.die_with_worker()
time.sleep(600)
"""


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_flow_run_and_its_children_end_once_the_prefect_api_stops_answering(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "DOMAIN_EMBED_LIFELINE": "1", "PREFECT_API_URL": f"http://127.0.0.1:{server.server_port}/api"}
    run = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(API_FLOW_RUN)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        procs = [psutil.Process(run.pid), psutil.Process(int(run.stdout.readline()))]
        time.sleep(6)  # twice the 3 s allowed silence: the API answers, the run goes on
        assert run.poll() is None and procs[1].status() != psutil.STATUS_ZOMBIE
        server.shutdown()
        server.server_close()
        _, alive = psutil.wait_procs(procs, timeout=60)
        assert not alive, [p.pid for p in alive]
        assert "has not answered for 3 s: ending this flow run" in run.stderr.read()
    finally:
        run.kill()


def test_without_up_a_run_does_not_watch_its_parent(monkeypatch):
    from domain_embed.tasks.core.lifeline import die_with_worker

    monkeypatch.delenv("DOMAIN_EMBED_LIFELINE", raising=False)
    assert not die_with_worker()


def test_crash_detection_marks_runs_crashed_after_four_missed_heartbeats():
    from domain_embed.deployments.crash_detection import crash_detection

    automation = crash_detection(30)
    trigger = automation.trigger
    assert (
        trigger.posture == "Proactive"
        and trigger.within.total_seconds() == 120
        and trigger.for_each == {"prefect.resource.id"}
    )
    assert trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.Completed" in trigger.expect
    assert automation.actions[0].state.value == "CRASHED"
    assert automation.trigger.match_related.model_dump() == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": "prefect.tag.domain-embed",
    }
