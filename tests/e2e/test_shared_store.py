"""Runs sharing one run store at the same time: every chunk is asked once, and both runs get the same answers.

Claims (tasks/core/claims.py) are checked on a local folder and on an S3-protocol server (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT
from llm_stub import LLMStub
from test_generate import CHUNKS

from domain_embed.tasks.core.claims import Claim, claim_path, exclusive, release, try_claim
from domain_embed.tasks.core.objects import read_json
from domain_embed.tasks.core.store import RunStore, atomic_write

HOLD = """
import sys, time
from domain_embed.tasks.core.claims import try_claim
from domain_embed.tasks.core.store import RunStore
print(try_claim(RunStore(sys.argv[1]), "qa-cache", "k1", 600), flush=True)
time.sleep(600)
"""

JOB = """
import sys, time
from pathlib import Path
from domain_embed.tasks.core.claims import exclusive
from domain_embed.tasks.core.store import RunStore
with exclusive(RunStore(sys.argv[1]), "train", "job", 2.0, lambda since: False, poll_s=0.1) as mine:
    print(mine, flush=True)
    time.sleep(float(sys.argv[3]))
    Path(sys.argv[2]).write_text("the model")
"""

ASK = """
import asyncio, json, sys, time
from pathlib import Path
from domain_embed.tasks.questions.generate import collect_answers
from domain_embed.tasks.llm.endpoint import LLMEndpoint
from domain_embed.tasks.settings import LLMSettings
from domain_embed.tasks.core.store import RunStore

store, api_base, chunks, ready, out = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text()), Path(sys.argv[4]), Path(sys.argv[5])
settings = LLMSettings(model="stub-logical", backoff_base_s=0.02, timeout_s=5, max_attempts=4, max_concurrency=3)
(ready / out.name).touch()
while len(list(ready.iterdir())) < 2:  # both runs start asking at the same moment
    time.sleep(0.05)
answers, failures, stats = asyncio.run(collect_answers(chunks, settings, LLMEndpoint(model="openai/stub-model", api_base=api_base), RunStore(store)))
out.write_text(json.dumps({"answers": answers, "failures": failures, "stats": stats.model_dump()}))
"""


def test_a_claim_is_held_until_released_and_taken_over_once_its_owner_died(shared_store, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, shared_store.url], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        assert not try_claim(shared_store, "qa-cache", "k1", 600)  # another live process holds it
        assert try_claim(shared_store, "qa-cache", "k2", 600) and try_claim(
            shared_store, "qa-cache", "k2", 600
        )  # ours: still ours
        release(shared_store, "qa-cache", "k1")  # not ours: stays
        assert not try_claim(shared_store, "qa-cache", "k1", 600)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert try_claim(shared_store, "qa-cache", "k1", 600)  # its owner was killed: stale
    release(shared_store, "qa-cache", "k2")
    assert not shared_store.fs.exists(claim_path(shared_store, "qa-cache", "k2"))


def test_a_claim_from_another_machine_holds_for_its_lease(shared_store):
    elsewhere = Claim(owner="gpu-box:77:abcd", host="gpu-box", pid=77, pid_started=1.0, expires=time.time() + 600)
    atomic_write(claim_path(shared_store, "qa-cache", "k3"), elsewhere.model_dump_json().encode())
    assert not try_claim(shared_store, "qa-cache", "k3", 600)
    lapsed = elsewhere.model_copy(update={"expires": time.time() - 1})
    atomic_write(claim_path(shared_store, "qa-cache", "k3"), lapsed.model_dump_json().encode())
    assert try_claim(shared_store, "qa-cache", "k3", 600)


def test_a_long_job_is_done_once_the_waiting_process_takes_its_result(tmp_path):
    store, result = RunStore(str(tmp_path / "store")), tmp_path / "result"
    holder = subprocess.Popen(
        [sys.executable, "-c", JOB, store.url, str(result), "4"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "True"
    first = read_json(claim_path(store, "train", "job"))["expires"]
    time.sleep(1.5)
    assert (
        read_json(claim_path(store, "train", "job"))["expires"] > first
    )  # renewed every lease / 4 while the job runs
    saved_since = lambda since: result.exists() and result.stat().st_mtime >= since  # noqa: E731
    with exclusive(store, "train", "job", 60, saved_since, poll_s=0.1) as mine:
        assert mine is False and result.read_text() == "the model"
    assert holder.wait(timeout=30) == 0


def test_a_long_job_whose_holder_was_killed_is_taken_over(tmp_path):
    store, result = RunStore(str(tmp_path / "store")), tmp_path / "result"
    holder = subprocess.Popen(
        [sys.executable, "-c", JOB, store.url, str(result), "600"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "True"
    threading.Timer(1.0, holder.kill).start()
    with exclusive(store, "train", "job", 60, lambda since: result.exists(), poll_s=0.1) as mine:
        assert mine is True and holder.poll() is not None
    assert not store.fs.exists(claim_path(store, "train", "job"))


@pytest.mark.slow
def test_two_runs_at_once_on_one_store_ask_each_chunk_once_and_get_the_same_answers(tmp_path):
    chunks, ready = tmp_path / "chunks.json", tmp_path / "ready"
    chunks.write_text(json.dumps(CHUNKS))
    ready.mkdir()
    store = str(tmp_path / "store")
    with LLMStub(latency_s=0.5) as stub:
        runs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    ASK,
                    store,
                    stub.api_base,
                    str(chunks),
                    str(ready),
                    str(tmp_path / f"run{i}.json"),
                ],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        errors = [run.communicate(timeout=300)[1] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
        asked = dict(stub.chunks_seen)
    results = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2)]
    assert len(asked) == len(CHUNKS) and set(asked.values()) == {1}  # every chunk asked once, by one of the two
    assert results[0]["answers"] == results[1]["answers"] and len(results[0]["answers"]) == len(CHUNKS)
    stats = [r["stats"] for r in results]
    assert sum(s["llm_calls"] for s in stats) == len(CHUNKS)
    assert all(s["answered_by_other_run"] > 0 for s in stats)  # each waited on chunks the other held
    assert [s["llm_calls"] + s["cache_hits"] for s in stats] == [len(CHUNKS)] * 2
    assert not list((tmp_path / "store").glob("qa-cache-claims/*/*.json"))  # every claim released
