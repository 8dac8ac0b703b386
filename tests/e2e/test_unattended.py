"""Server mode unattended, for real: `domain-embed up`, a document lands, the watcher's schedule, docs.landed, the
automation's pipeline run with the folder's saved configuration; then kill -9 of the cpu worker, and of the server, in the middle of a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, ROOT, free_port, wait_for
from conftest import api_post as post
from llm_stub import LLMStub
from test_pipeline import NEW_DOC

from domain_embed.flows.watch import fingerprint_variable, resource_id
from domain_embed.tasks.core.objects import read_jsonl, sha256_bytes
from domain_embed.tasks.publishing.folder_config import default_out_dir, load_folder_config

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RUN_S = 1200  # one pipeline run on a busy 2-core machine, worker start-up included


def run_config(stub: LLMStub, **llm) -> dict:
    """A small, fast pipeline configuration asking the stub LLM."""
    return {
        "llm": {
            "model": "openai/stub-model",
            "api_base": stub.api_base,
            "api_key_env": "STUB_LLM_KEY",
            "questions_per_chunk": 2,
            **llm,
        },
        "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
        "filter": {"roundtrip_top_k": 10},
        "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 96},
        "split": {"eval_fraction": 0.4},
    }


def cli(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domain_embed.flows.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`domain-embed up` on a copy of the fixture docs, a run store and a stub LLM; yields what the tests need."""
    root = tmp_path_factory.mktemp("unattended")
    docs, store, state, port = root / "docs", root / "store", root / "state", free_port()
    shutil.copytree(FIXTURES / "docs", docs)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")}
    env.update(
        STUB_LLM_KEY="sk-stub", PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5"
    )
    up = [
        "up",
        "--port",
        str(port),
        "--state",
        str(state),
        "--docs",
        str(docs),
        "--store",
        str(store),
        "--timeout",
        "600",
    ]
    with LLMStub(latency_s=0.0) as stub:
        started = cli(*up, env=env, timeout=900)
        try:
            assert started.returncode == 0, started.stdout + started.stderr
            yield {
                "root": root,
                "docs": docs,
                "store": str(store),
                "state": state,
                "api": f"http://127.0.0.1:{port}/api",
                "env": env,
                "up": up,
                "stub": stub,
            }
        finally:
            cli("down", "--state", str(state), env=env, timeout=300)


def deployment(api: str, name: str) -> dict:
    flows = {f["id"]: f["name"] for f in post(api, "/flows/filter")}
    return next(d for d in post(api, "/deployments/filter") if f"{flows[d['flow_id']]}/{d['name']}" == name)


def runs_of(api: str, deployment_id: str) -> list[dict]:
    return post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})


def log_tail(state: Path, name: str) -> str:
    return "\n".join((state / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-60:])


@pytest.mark.slow
@pytest.mark.extended
def test_a_landed_document_rebuilds_with_the_folders_configuration_and_pays_only_for_its_chunks(served):
    api, docs, store, stub, env = served["api"], served["docs"], served["store"], served["stub"], served["env"]
    poll = deployment(api, "watch-docs/poll")
    post(api, f"/deployments/{poll['id']}/schedules", [{"schedule": {"interval": 15}, "active": True}])

    config_file = served["root"] / "config.json"
    config_file.write_text(json.dumps(run_config(stub)))
    first = cli(
        "run",
        str(docs),
        "--store",
        store,
        "--config",
        str(config_file),
        env={**env, "PREFECT_API_URL": api},
        timeout=RUN_S,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out_dir = Path(default_out_dir(str(docs), store))
    ran = json.loads((out_dir / "report.json").read_text())
    saved = load_folder_config(store, str(docs))
    assert saved is not None and ran["config"] == saved.model_dump(mode="json")

    variable = fingerprint_variable(str(docs))  # the watcher's schedule has fingerprinted the folder
    wait_for(
        lambda: post(api, "/variables/filter", {"variables": {"name": {"any_": [variable]}}}),
        300,
        "the first fingerprint",
    )
    stub.reset()
    (docs / "tablespaces.md").write_text(NEW_DOC)

    build = deployment(api, "build-embedder/scheduled")

    def triggered_run() -> dict | None:
        runs = [r for r in runs_of(api, build["id"]) if r["parameters"].get("use_saved_config")]
        return runs[0] if runs and runs[0]["state_type"] in TERMINAL else None

    run = wait_for(triggered_run, RUN_S, "the docs.landed automation's build-embedder run")
    assert run["state_type"] == "COMPLETED", log_tail(served["state"], "worker-cpu")
    assert not run["auto_scheduled"] and run["parameters"]["config"]["docs_dir"] == str(docs.resolve())
    landed = post(
        api,
        "/events/filter",
        {"filter": {"event": {"name": ["docs.landed"]}, "resource": {"id": [resource_id(str(docs))]}}},
    )
    assert landed["events"][0]["payload"]["added"] == ["tablespaces.md"]

    report = json.loads((out_dir / "report.json").read_text())  # the folder's own output folder, replaced by this run
    assert (
        report["out_dir"] == str(out_dir)
        and report["config"] == ran["config"]
        and "saved for" in report["config_source"]
    )
    new_doc = sha256_bytes(NEW_DOC.encode())[:16]
    new_chunks = [row for row in read_jsonl(report["store"]["corpus"]) if row["doc_id"] == new_doc]
    assert new_chunks and report["llm_usage"]["llm_calls"] == stub.count() == len(new_chunks)
    assert report["llm_usage"]["cache_hits"] == ran["llm_usage"]["llm_calls"]
    assert report["promotion"]["reason"]


def finished(api: str, run_id: str) -> dict | None:
    """The flow run once it is in a terminal state, else None."""
    [run] = post(api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    return run if run["state_type"] in TERMINAL else None


def descendants(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def run_starter(served: dict, stub: LLMStub, store: Path) -> Callable[[], str]:
    """A function that submits a build-embedder run asking `stub` one request at a time, into `store`; it returns the run's id."""
    build = deployment(served["api"], "build-embedder/scheduled")
    config = {**run_config(stub, max_concurrency=1), "docs_dir": str(served["docs"]), "store_url": str(store)}
    return lambda: post(
        served["api"], f"/deployments/{build['id']}/create_flow_run", {"parameters": {"config": config}}
    )["id"]


def rerun_pays_nothing_twice(served: dict, start_run: Callable[[], str], stub: LLMStub, paid: int) -> None:
    """Submit the run again: it completes, and asks again at most the one request in flight at the kill (one at a time)."""
    second = start_run()
    done = wait_for(lambda: finished(served["api"], second), RUN_S, "the re-run")
    assert done["state_type"] == "COMPLETED", log_tail(served["state"], "worker-cpu")
    asked_twice = sum(n - 1 for n in stub.chunks_seen.values())
    assert paid >= 3 and asked_twice <= 1


@pytest.mark.slow
@pytest.mark.extended
def test_kill_9_of_the_worker_mid_run_crashes_the_run_orphans_nothing_and_a_rerun_pays_nothing_twice(served, tmp_path):
    api, state, env = served["api"], served["state"], served["env"]
    with LLMStub(latency_s=2.0) as stub:
        start_run = run_starter(served, stub, tmp_path / "store")
        first = start_run()
        wait_for(lambda: stub.count() >= 3, RUN_S, "the run to reach generation")
        worker = json.loads((state / "processes.json").read_text())["processes"]["worker-cpu"]["pid"]
        family = descendants(worker)
        assert len(family) > 1  # the worker and its flow run
        os.kill(worker, signal.SIGKILL)
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]  # the flow run and its children died with the worker
        paid = stub.count()

        crashed = wait_for(lambda: finished(api, first), 400, "crash")
        assert crashed["state_type"] == "CRASHED" and "heartbeat" in crashed["state"]["message"]

        again = cli(*served["up"], env=env, timeout=900)
        assert again.returncode == 0 and "Restarting: worker-cpu had stopped" in again.stdout, (
            again.stdout + again.stderr
        )
        rerun_pays_nothing_twice(served, start_run, stub, paid)


@pytest.mark.slow
@pytest.mark.extended
def test_kill_9_of_the_server_mid_run_ends_the_run_which_up_marks_crashed_and_a_rerun_pays_nothing_twice(
    served, tmp_path
):
    api, state, env = served["api"], served["state"], served["env"]
    with LLMStub(latency_s=2.0) as stub:
        start_run = run_starter(served, stub, tmp_path / "store")
        first = start_run()
        wait_for(lambda: stub.count() >= 3, RUN_S, "the run to reach generation")
        processes = json.loads((state / "processes.json").read_text())["processes"]
        flow_run = psutil.Process(processes["worker-cpu"]["pid"]).children(recursive=True)
        server = descendants(processes["server"]["pid"])
        assert flow_run
        os.kill(server[0].pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(server, timeout=30)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        _, alive = psutil.wait_procs(
            flow_run, timeout=300
        )  # its API gone for 90 s, the flow run ends (tasks/core/lifeline.py)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        paid = stub.count()

        again = cli(*served["up"], env=env, timeout=900)
        assert again.returncode == 0 and "Restarting: server had stopped" in again.stdout, again.stdout + again.stderr
        crashed = wait_for(lambda: finished(api, first), 400, "the crash detection")  # no heartbeat since the kill
        assert crashed["state_type"] == "CRASHED" and "heartbeat" in crashed["state"]["message"], crashed["state"]
        rerun_pays_nothing_twice(served, start_run, stub, paid)
