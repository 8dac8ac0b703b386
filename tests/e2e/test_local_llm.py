"""The embedded default: the packaged GGUF model served by llama-cpp-python, called through litellm."""

from __future__ import annotations

import time

import httpx
import pytest

from domain_embed.tasks.core.objects import read_jsonl
from domain_embed.tasks.llm.local import embedded_llm_server
from domain_embed.tasks.questions.generate import generate_pairs
from domain_embed.tasks.settings import FilterSettings, LLMSettings

CHUNKS = [
    {
        "chunk_id": "c1",
        "doc_id": "d1",
        "section": "Partial Indexes",
        "n_tokens": 60,
        "text": "A partial index is an index built over a subset of a table; the subset is defined by a conditional "
        "expression called the predicate of the partial index. The index contains entries only for those "
        "table rows that satisfy the predicate.",
    },
    {
        "chunk_id": "c2",
        "doc_id": "d2",
        "section": "Write-Ahead Logging",
        "n_tokens": 60,
        "text": "Write-Ahead Logging (WAL) is a standard method for ensuring data integrity. Changes to data files "
        "must be written only after those changes have been logged, that is, after WAL records describing "
        "the changes have been flushed to permanent storage.",
    },
]


@pytest.mark.slow
def test_embedded_server_answers_through_litellm_and_stops(store, base_model_dir):
    llm = LLMSettings(questions_per_chunk=2)
    with embedded_llm_server() as endpoint:
        assert endpoint.api_base.startswith("http://127.0.0.1:")
        result = generate_pairs(CHUNKS, llm, FilterSettings(roundtrip_top_k=0), endpoint, base_model_dir, store)
        base = endpoint.api_base
    stats = result.stats
    assert stats.chunks_answered + stats.chunks_failed_count == 2
    assert stats.llm_calls >= 2 and stats.prompt_tokens > 0 and stats.cost_usd == 0
    assert stats.prompt.startswith("single-")
    assert all(len(row["query"]) >= 12 for row in read_jsonl(result.pairs))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/models", timeout=2)


def port_closed(api_base: str) -> bool:
    """Whether nothing answers at this endpoint any more."""
    try:
        httpx.get(f"{api_base}/models", timeout=2)
    except httpx.HTTPError:
        return True
    return False


@pytest.mark.slow
def test_runs_share_one_embedded_server_which_stops_when_its_last_run_is_gone(tmp_path, monkeypatch):
    import json
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_for

    from domain_embed.tasks.llm.host import pid_alive, shared_embedded_server

    monkeypatch.setenv("DOMAIN_EMBED_LLM_HOST", str(tmp_path / "host"))
    joiner = (
        "import sys, time\nfrom domain_embed.tasks.llm.host import shared_embedded_server\n"
        "with shared_embedded_server() as e:\n    print(e.api_base, flush=True)\n    time.sleep(600)\n"
    )
    with shared_embedded_server() as first:
        with shared_embedded_server() as second:
            assert first.api_base == second.api_base  # one server for both
        other = subprocess.Popen(
            [sys.executable, "-c", joiner], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        assert other.stdout.readline().strip() == first.api_base  # another process joins the same server
        supervisor = json.loads((tmp_path / "host" / "host.json").read_text())["pid"]
    time.sleep(8)  # past the idle grace: the other process is still registered, so the server stays
    assert not port_closed(first.api_base) and pid_alive(supervisor)
    other.send_signal(signal.SIGKILL)  # the last run dies without unregistering
    other.wait()
    wait_for(
        lambda: port_closed(first.api_base) and not pid_alive(supervisor),
        60,
        "the server to stop after its last run died",
    )


@pytest.mark.slow
@pytest.mark.extended  # a minute and a half of llama.cpp: `make test-all`
def test_a_killed_embedded_server_is_restarted_and_generation_goes_on(store, base_model_dir, tmp_path, monkeypatch):
    import json
    import threading

    import psutil
    from conftest import wait_for

    from domain_embed.tasks.llm.host import shared_embedded_server

    monkeypatch.setenv("DOMAIN_EMBED_LLM_HOST", str(tmp_path / "host"))
    chunks = [
        dict(c, chunk_id=f"{c['chunk_id']}-{i}", doc_id=f"d{i}", text=f"{c['text']} (part {i})")
        for i in range(3)
        for c in CHUNKS
    ]
    with shared_embedded_server() as endpoint:
        supervisor = psutil.Process(json.loads((tmp_path / "host" / "host.json").read_text())["pid"])
        (first,) = supervisor.children()
        killer = threading.Timer(2.0, first.kill)  # kill -9 of llama.cpp's server mid-generation
        killer.start()
        result = generate_pairs(
            chunks,
            LLMSettings(questions_per_chunk=1),
            FilterSettings(roundtrip_top_k=0),
            endpoint,
            base_model_dir,
            store,
        )
        killer.join()
        (second,) = supervisor.children()
    gone = lambda p: not p.is_running() or p.status() == psutil.STATUS_ZOMBIE  # noqa: E731
    assert gone(first) and second.pid != first.pid  # started again by its supervisor
    assert result.stats.chunks_failed_count == 0 and result.stats.chunks_answered == len(chunks)
    wait_for(lambda: gone(supervisor) and gone(second), 60, "the server to stop after its run")
