"""Server mode: watch-docs fingerprints, then a real Prefect server (SQLite, 127.0.0.1): docs.landed -> trigger -> run; up/down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT, free_port, kill_group, wait_for
from conftest import api_healthy as healthy
from conftest import api_post as post
from landed_probe import landed_probe

from domain_embed.flows.watch import (
    MAX_LISTED,
    DocsDiff,
    diff_fingerprints,
    event_payload,
    fingerprint,
    fingerprint_variable,
    resource_id,
    watch_docs,
)
from domain_embed.tasks.core.objects import sha256_bytes

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# --- plain functions, no server ---------------------------------------------------------------


def test_fingerprint_hashes_the_documents_the_pipeline_would_parse(tmp_path):
    (tmp_path / "sub").mkdir()
    files = {"a.md": b"# A\nalpha", "b.txt": b"beta", "sub/c.html": b"<p>gamma</p>"}
    for rel, body in files.items():
        (tmp_path / rel).write_bytes(body)
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # unsupported type
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / ".hidden.md").write_bytes(b"hidden")
    assert fingerprint(str(tmp_path)) == {rel: sha256_bytes(body) for rel, body in files.items()}


def test_diff_reports_added_changed_and_removed():
    old = {"a.md": "1", "b.md": "2", "c.md": "3"}
    new = {"a.md": "1", "b.md": "changed", "d.md": "4", "e.md": "5"}
    assert diff_fingerprints(old, new) == (["d.md", "e.md"], ["b.md"], ["c.md"])
    assert diff_fingerprints(new, new) == ([], [], [])


def test_variable_and_resource_names_are_stable_per_folder(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    absolute = str(tmp_path / "docs")
    assert fingerprint_variable("docs") == fingerprint_variable(absolute)
    assert fingerprint_variable(absolute) != fingerprint_variable(str(tmp_path / "other"))
    assert fingerprint_variable(absolute).replace("_", "").isalnum()
    assert resource_id("docs") == resource_id(absolute)
    assert resource_id(absolute).startswith("domain-embed.docs.")


def test_event_payload_caps_file_lists_but_counts_everything():
    diff = DocsDiff(
        docs_dir="/docs",
        fingerprint="f",
        files=700,
        added=[f"{i:04}.md" for i in range(MAX_LISTED + 100)],
        removed=["x.md"],
    )
    payload = event_payload(diff)
    assert len(payload["added"]) == MAX_LISTED
    assert payload["counts"] == {"added": MAX_LISTED + 100, "changed": 0, "removed": 1}
    assert payload["removed"] == ["x.md"] and payload["docs_dir"] == "/docs"


def test_prefect_yaml_declares_the_three_deployments():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {n: (d["entrypoint"], d["work_pool"]["name"]) for n, d in deployments.items()} == {
        "scheduled": ("domain_embed.flows.deployed:build_embedder", "cpu"),
        "gpu": ("domain_embed.flows.deployed:train_embedder", "gpu"),
        "poll": ("domain_embed.flows.deployed:watch_docs", "cpu"),
    }
    assert deployments["scheduled"]["schedules"][0]["cron"]
    assert deployments["poll"]["schedules"][0]["interval"] == 300
    trigger = deployments["scheduled"]["triggers"][0]
    assert trigger["expect"] == ["docs.landed"]
    assert trigger["parameters"]["config"]["docs_dir"] == "{{ event.payload.docs_dir }}"
    assert trigger["parameters"]["config"]["train"] == deployments["scheduled"]["parameters"]["config"]["train"]
    assert "out_dir" not in trigger["parameters"]["config"]  # each docs folder's own output folder
    assert (
        trigger["parameters"]["use_saved_config"]
        and deployments["scheduled"]["schedules"][0]["parameters"]["use_saved_config"]
    )
    assert deployments["scheduled"]["parameters"]["use_saved_config"] is False  # a run from the form runs the form
    assert spec["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $DOMAIN_EMBED_ROOT }}"}}
    ]


# --- a real server ------------------------------------------------------------------------------


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def env_for(api: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    return {**env, "PREFECT_API_URL": api} if api else env


@pytest.fixture(scope="module")
def prefect_api(prefect_server_api):
    """This process's Prefect client pointed at the module's real server (tests/conftest.py)."""
    return prefect_server_api


@pytest.fixture(scope="module")
def probe_deployment(prefect_api, tmp_path_factory):
    """landed-probe deployed to the cpu pool with prefect.yaml's docs.landed trigger, and a process worker serving it."""
    from prefect.events import DeploymentEventTrigger

    logs = tmp_path_factory.mktemp("probe")
    subprocess.run(
        [sys.executable, str(ROOT / "deployments" / "pools.py")],
        env=env_for(prefect_api),
        check=True,
        timeout=120,
        capture_output=True,
    )
    spec = next(
        d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"] if d["name"] == "scheduled"
    )
    trigger = DeploymentEventTrigger(**spec["triggers"][0])
    source = landed_probe.from_source(source=str(ROOT), entrypoint="tests/e2e/landed_probe.py:landed_probe")
    deployment_id = source.deploy(
        name="probe", work_pool_name="cpu", triggers=[trigger], build=False, push=False, print_next_steps=False
    )
    worker_env = {**env_for(prefect_api), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    worker = start(
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            "cpu",
            "--type",
            "process",
            "--name",
            "probe-worker",
        ],
        worker_env,
        logs / "worker.log",
    )
    try:
        yield str(deployment_id), logs / "worker.log"
    finally:
        kill_group(worker)


def landed_events(api: str, docs: Path) -> list[dict]:
    body = {"filter": {"event": {"name": ["docs.landed"]}, "resource": {"id": [resource_id(str(docs))]}}}
    return post(api, "/events/filter", body)["events"]


@pytest.mark.slow
def test_gpu_pool_template_sets_cuda_visible_devices_for_flow_runs(prefect_api):
    import asyncio

    from prefect.workers.process import ProcessJobConfiguration

    template = json.loads((ROOT / "deployments" / "gpu.json").read_text())

    def env(job_variables: dict) -> dict:
        return asyncio.run(ProcessJobConfiguration.from_template_and_values(template, job_variables)).env

    assert env({"env": {"EXTRA": "1"}}) == {"CUDA_VISIBLE_DEVICES": "0", "EXTRA": "1"}
    assert env({"CUDA_VISIBLE_DEVICES": "1,2"}) == {"CUDA_VISIBLE_DEVICES": "1,2"}


@pytest.mark.slow
def test_watch_emits_docs_landed_only_when_documents_change(prefect_api, tmp_path):
    from prefect.variables import Variable

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\nThe first document.")
    store = str(tmp_path / "store")
    first = watch_docs(str(docs), store_url=store)
    assert first["first_seen"] and not first["emitted"] and first["files"] == 1
    (docs / "new.md").write_text("# New\nA document that just landed.")
    second = watch_docs(str(docs), store_url=store)
    assert second["emitted"] and second["added"] == ["new.md"] and second["changed"] == second["removed"] == []
    third = watch_docs(str(docs), store_url=store)
    assert not third["emitted"] and not third["first_seen"]

    events = wait_for(lambda: landed_events(prefect_api, docs), 30, "the docs.landed event")
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["docs_dir"] == str(docs.resolve())
    assert payload["added"] == ["new.md"] and payload["counts"] == {"added": 1, "changed": 0, "removed": 0}
    assert Variable.get(fingerprint_variable(str(docs)))["files"] == 2


@pytest.mark.slow
def test_docs_landed_trigger_runs_the_deployment_on_a_worker(probe_deployment, prefect_api, tmp_path):
    deployment_id, worker_log = probe_deployment
    docs = tmp_path / "landed"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\nThe first document.")
    watch_docs(str(docs), store_url=str(tmp_path / "store"))
    (docs / "b.md").write_text("# Beta\nThe second document.")
    assert watch_docs(str(docs), store_url=str(tmp_path / "store"))["emitted"]

    def finished_run() -> dict | None:
        runs = post(prefect_api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})
        mine = [r for r in runs if r["parameters"]["config"]["docs_dir"] == str(docs.resolve())]
        return mine[0] if mine and mine[0]["state_type"] in TERMINAL else None

    run = wait_for(finished_run, 150, "the triggered landed-probe run to finish")
    assert run["state_type"] == "COMPLETED", tail(worker_log)
    assert run["parameters"]["config"]["train"] == {"deployment": "train-embedder/gpu"}


def unexpected_errors(server_log: str) -> list[str]:
    """Log records with an error or traceback (a busy-database 503 is logged as a retryable exception)."""
    records = re.split(r"\n(?=\d\d:\d\d:\d\d\.\d+ \|)", server_log)
    return [r for r in records if "Traceback" in r or "Error" in r or "retryable exception" in r]


@pytest.mark.slow
def test_up_then_down(tmp_path):
    from domain_embed.flows.server import down

    port, state, docs = free_port(), tmp_path / "state", tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\nThe first document.")
    api = f"http://127.0.0.1:{port}/api"
    cli = [sys.executable, "-m", "domain_embed.flows.cli"]
    env = {
        **env_for(None),
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    }  # the scheduler looks every 5 s, not 60
    try:
        up = subprocess.run(
            [
                *cli,
                "up",
                "--port",
                str(port),
                "--state",
                str(state),
                "--docs",
                str(docs),
                "--store",
                str(tmp_path / "store"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert (state / "prefect" / "prefect.db").exists()
        processes = json.loads((state / "processes.json").read_text())["processes"]
        assert set(processes) == {"server", "worker-cpu", "worker-gpu"}

        pools = {p["name"]: p for p in post(api, "/work_pools/filter")}
        assert {"cpu", "gpu"} <= set(pools)
        assert "CUDA_VISIBLE_DEVICES" in pools["gpu"]["base_job_template"]["variables"]["properties"]
        flows = {f["id"]: f["name"] for f in post(api, "/flows/filter")}
        deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in post(api, "/deployments/filter")}
        assert set(deployments) == {"build-embedder/scheduled", "train-embedder/gpu", "watch-docs/poll"}
        assert deployments["build-embedder/scheduled"]["parameters"]["config"]["docs_dir"] == str(docs.resolve())
        assert deployments["watch-docs/poll"]["pull_steps"][0]["prefect.deployments.steps.set_working_directory"][
            "directory"
        ] == str(tmp_path.resolve())  # where `up` ran
        automations = post(api, "/automations/filter")
        landed = [a for a in automations if a["trigger"]["expect"] == ["docs.landed"]]
        assert (
            len(landed) == 1
            and landed[0]["actions"][0]["deployment_id"] == deployments["build-embedder/scheduled"]["id"]
        )
        assert [a["trigger"]["posture"] for a in automations if a not in landed] == ["Proactive"]  # crash detection
        for pool in ("cpu", "gpu"):
            wait_for(lambda: post(api, f"/work_pools/{pool}/workers/filter"), 90, f"the {pool} worker to register")

        # schedules fire with nobody clicking: the poll deployment every 10 s (set by the test), run by the cpu worker
        poll = deployments["watch-docs/poll"]
        post(api, f"/deployments/{poll['id']}/schedules", [{"schedule": {"interval": 10}, "active": True}])

        def scheduled_runs_done() -> list[dict] | None:
            runs = post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [poll["id"]]}}})
            done = [r for r in runs if r["auto_scheduled"] and r["state_type"] in TERMINAL]
            return done if any(r["state_type"] != "CANCELLED" for r in done) else None

        done = wait_for(scheduled_runs_done, 360, "a scheduled watch-docs run to finish")
        assert "COMPLETED" in {r["state_type"] for r in done}, tail(state / "logs" / "worker-cpu.log")
        # polls are one at a time (CANCEL_NEW): a poll that collides with a running one is cancelled, nothing else
        for run in done:
            assert (
                run["state_type"] == "COMPLETED" or run["state"]["message"] == "Deployment concurrency limit reached."
            ), run["state"]

        # twenty runs submitted in a row, as the UI's Run form does while workers poll: twenty created, no 503
        build = deployments["build-embedder/scheduled"]
        later = {"type": "SCHEDULED", "state_details": {"scheduled_time": "2099-01-01T00:00:00+00:00"}}  # none runs
        created = [
            post(api, f"/deployments/{build['id']}/create_flow_run", {"state": later}, attempts=1) for _ in range(20)
        ]
        assert len({run["id"] for run in created}) == 20
        assert not unexpected_errors((state / "logs" / "server.log").read_text(errors="replace"))

        again = subprocess.run(
            [*cli, "up", "--port", str(port), "--state", str(state)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 1 and "already up" in again.stderr

        started = {name: psutil.Process(p["pid"]) for name, p in processes.items()}
        family = [proc for p in started.values() for proc in (p, *p.children(recursive=True))]
        stopped = subprocess.run(
            [*cli, "down", "--state", str(state)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        assert "server" in stopped.stdout
        assert not [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not healthy(api)
        assert not (state / "processes.json").exists()
    finally:
        down(state)
