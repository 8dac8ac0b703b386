"""Parse and chunk in batches of documents: same outputs as one document at a time, each document cached on its own."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES
from test_parse import write_bad_files

from domain_embed.tasks.core import task_runner
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.embedding.models import model_fingerprint
from domain_embed.tasks.ingest import parse as parse_module
from domain_embed.tasks.ingest.chunk import ChunkJob, chunk_document, chunk_documents
from domain_embed.tasks.ingest.discover import discover_documents
from domain_embed.tasks.ingest.parse import parse_document, parse_documents
from domain_embed.tasks.settings import ChunkSettings, ParseSettings, RunnerSettings

PARSE = ParseSettings()
CHUNK = ChunkSettings(chunk_tokens=96, overlap_tokens=8, min_tokens=16)


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    """The fixture documents of every format plus files that fail to parse."""
    folder = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", folder)
    write_bad_files(folder / "bad")
    return folder


def found(folder: Path):
    return [d for d in discover_documents(str(folder), PARSE.extensions, PARSE.max_file_mb) if not d.skipped]


def without_uris(items) -> list[dict]:
    """Dumps with the store location left out: two stores hold the same content under different roots."""
    return [item.model_dump(mode="json", exclude={"ref": {"uri"}}) for item in items]


def jobs_for(docs, parsed) -> list[ChunkJob]:
    return [
        ChunkJob(elements=p.ref, doc_sha=d.sha256, rel_path=d.rel_path)
        for d, p in zip(docs, parsed)
        if p.status == "ok"
    ]


def test_a_batch_gives_what_one_document_at_a_time_gives(docs_dir, tmp_path, base_model_dir):
    docs = found(docs_dir)
    batch_store, single_store = RunStore(str(tmp_path / "batch")), RunStore(str(tmp_path / "single"))
    batch = parse_documents(docs, PARSE, batch_store)
    single = [parse_document(d.os_path, d.sha256, d.ext, PARSE, single_store) for d in docs]
    assert without_uris(batch.docs) == without_uris(single) and batch.cached == 0
    assert {p.status for p in batch.docs} == {"ok", "error"} and all(
        p.error for p in batch.docs if p.status == "error"
    )

    model_sha = model_fingerprint(base_model_dir)
    jobs = jobs_for(docs, batch.docs)
    chunked = chunk_documents(jobs, CHUNK, base_model_dir, model_sha, 256, batch_store)
    one_by_one = [
        chunk_document(j.elements, j.doc_sha, CHUNK, base_model_dir, 256, single_store) for j in jobs_for(docs, single)
    ]
    assert without_uris(chunked.docs) == without_uris(one_by_one) and sum(c.chunks for c in chunked.docs) > 10


def test_a_rerun_reparses_and_rechunks_only_the_changed_document(docs_dir, tmp_path, base_model_dir, monkeypatch):
    store, model_sha = RunStore(str(tmp_path / "store")), model_fingerprint(base_model_dir)
    docs = found(docs_dir)
    first = parse_documents(docs, PARSE, store)
    chunk_documents(jobs_for(docs, first.docs), CHUNK, base_model_dir, model_sha, 256, store)

    (docs_dir / "tutorial-agg.txt").write_text(
        (docs_dir / "tutorial-agg.txt").read_text() + "\n\nA new closing paragraph.\n"
    )
    calls: list[str] = []
    real = parse_module.partition_file
    monkeypatch.setattr(
        parse_module, "partition_file", lambda path, *a: calls.append(Path(path).name) or real(path, *a)
    )
    docs = found(docs_dir)
    second = parse_documents(docs, PARSE, store)
    assert calls == ["tutorial-agg.txt"] and second.cached == len(docs) - 1
    rechunked = chunk_documents(jobs_for(docs, second.docs), CHUNK, base_model_dir, model_sha, 256, store)
    assert rechunked.cached == sum(p.status == "ok" for p in second.docs) - 1

    again = parse_documents(docs, PARSE, store)
    assert again.cached == len(docs) and again.docs == second.docs and calls == ["tutorial-agg.txt"]


@pytest.mark.parametrize("threads, expected", [(2, 2), (None, os.cpu_count())])
def test_tasks_in_the_flow_process_run_at_most_one_per_thread_at_once(prefect_harness, threads, expected):
    """A thousand batches must not become a thousand threads contending for the GIL (Prefect's own default is unbounded)."""
    from prefect import flow, task

    lock, running = threading.Lock(), {"now": 0, "peak": 0}

    @task
    def hold(i: int) -> int:
        with lock:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
        time.sleep(0.2)
        with lock:
            running["now"] -= 1
        return i

    @flow
    def many() -> list[int]:
        with task_runner(RunnerSettings(threads=threads)) as runner:
            return [f.result() for f in [runner.submit(hold, {"i": i}) for i in range(3 * expected)]]

    assert many() == list(range(3 * expected))
    assert running["peak"] == expected
