"""Shared test setup: offline environment, a run store per test, Prefect's harness for flow tests, a real Prefect server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()  # as the entrypoints do, before prefect and the ML libraries are imported
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="domain-embed-results-")
os.environ["DOMAIN_EMBED_LOCAL_CACHE"] = tempfile.mkdtemp(
    prefix="domain-embed-local-"
)  # fetched models, training scratch

from domain_embed.tasks.core.lifeline import api_answers  # noqa: E402
from domain_embed.tasks.llm.local import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the checkout
FIXTURES = Path(__file__).parent / "fixtures"
NETGUARD = Path(__file__).resolve().parent / "netguard"  # refuses and records connections beyond loopback
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def store(tmp_path):
    """An empty run store in a temporary folder."""
    from domain_embed.tasks.core.store import RunStore

    return RunStore(str(tmp_path / "store"))


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free 127.0.0.1 port; yields its URL. s3fs caches filesystems by their arguments, not by
    AWS_ENDPOINT_URL, so the cache is cleared on both sides: a later module must not reach a server already stopped."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    S3FileSystem.clear_instance_cache()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.fixture(params=["local", "s3"])
def shared_store(request, tmp_path, monkeypatch):
    """An empty run store in a folder, or in a bucket of the S3-protocol server."""
    from domain_embed.tasks.core.store import RunStore

    if request.param == "local":
        return RunStore(str(tmp_path / "store"))
    endpoint = request.getfixturevalue("s3_endpoint")
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    return RunStore(f"s3://claims-{tmp_path.name.lower().replace('_', '-')[-40:]}/store")


@pytest.fixture(scope="session")
def base_model_dir() -> str:
    """The packaged all-MiniLM-L6-v2 folder."""
    from domain_embed.tasks.embedding.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, base_model_dir) -> Path:
    """A published run folder, as the pipeline leaves it, with the base model as the tuned one: OUT/model,
    OUT/index (28 one-passage documents named <topic>.md), OUT/report.json with a real evaluation of 20 questions."""
    from test_evaluate import PASSAGES, QUESTIONS

    from domain_embed.tasks.core.store import RunStore
    from domain_embed.tasks.evaluation.evaluate import evaluate_pairs
    from domain_embed.tasks.publishing.publish import copy_model, write_index, write_reports

    root = tmp_path_factory.mktemp("tiny-run")
    store = RunStore(str(root / "store"))
    keys = list(PASSAGES)
    chunks = [
        {
            "chunk_id": f"{i:016x}",
            "doc_id": f"{i:016x}",
            "section": PASSAGES[k][0],
            "text": PASSAGES[k][1],
            "n_tokens": 20,
        }
        for i, k in enumerate(keys)
    ]
    pairs = [
        {"query": q, "chunk_id": f"{keys.index(k):016x}", "doc_id": f"{keys.index(k):016x}"}
        for k, q in QUESTIONS.items()
    ]
    corpus, eval_pairs = store.put_jsonl("corpus", chunks), store.put_jsonl("pairs-eval", pairs)
    out = root / "out"
    out.mkdir()
    model_dir = str(copy_model(base_model_dir, out))
    index_meta = write_index(
        model_dir, corpus, {row["doc_id"]: f"{key}.md" for row, key in zip(chunks, keys)}, out, store
    )
    evaluation = evaluate_pairs({"base": base_model_dir, "tuned": model_dir}, pairs, chunks, [384, 128, 64])
    report = {
        "base_model": "all-MiniLM-L6-v2",
        "matryoshka_dims": [384, 128, 64],
        "index": index_meta,
        "evaluation": {"synthetic": evaluation.model_dump(mode="json", exclude={"ref"})},
        "store": {"corpus": corpus.uri, "eval_pairs": eval_pairs.uri},
    }
    write_reports(out, report, "# domain-embed report\n")
    return out


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for flow-level tests (one per session: each start costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# --- a real Prefect server (shared by the server and UI tests) -----------------------------------


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def api_post(api: str, path: str, body: dict | None = None, attempts: int = 4) -> Any:
    """POST a JSON body to a Prefect API and return the decoded answer; a 503 (the server's "retry me" for a busy
    SQLite database) is retried with backoff, as Prefect's own client does."""
    for attempt in range(attempts):
        request = urllib.request.Request(
            f"{api}{path}",
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(2**attempt)


def api_healthy(api: str) -> bool:
    """Whether the Prefect API answers its health check (within 2 s)."""
    return api_answers(api, timeout=2)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process started in its own session, SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` (API and UI) on a free 127.0.0.1 port, SQLite in a temporary PREFECT_HOME; yields the API URL.

    One per session (a start costs ~20 s on 2 cores); the modules using it make their own pools, deployments and runs."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=api,
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
    )
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=Path(__file__).parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: api_healthy(api) or proc.poll() is not None, 180, "the Prefect server")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        yield api
    finally:
        kill_group(proc)


@pytest.fixture(scope="module")
def prefect_server_api(prefect_server):
    """This process's Prefect client, events and logs pointed at the session's `prefect_server` for one module."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def drain() -> None:  # background senders bound to another API (e.g. the session harness) stop here
        EventsWorker.drain_all()
        APILogWorker.drain_all()

    drain()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server
        drain()
