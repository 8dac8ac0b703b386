"""Faults in the run store cost nothing that was paid for: a corrupt object is found by its hash when read and made
again, never served; a store that fills up ends the run with one line and leaves nothing half-written; a run that
cannot write its output or store stops before it pays."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, wait_for
from llm_stub import LLMStub
from prefect import flow, task

from domain_embed.flows.cli import main
from domain_embed.tasks.core.caching import code_and_inputs
from domain_embed.tasks.core.objects import CorruptObject, intact, read_jsonl, read_npy
from domain_embed.tasks.core.preflight import check_output_folder, check_store
from domain_embed.tasks.core.store import RunStore, put_record, read_record
from domain_embed.tasks.ingest.discover import discover_documents
from domain_embed.tasks.ingest.parse import parse_documents
from domain_embed.tasks.settings import ParseSettings


def flip_byte(path: Path, at: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def local(uri: str) -> Path:
    return Path(uri)


def test_a_flipped_byte_is_found_when_read_the_object_removed_and_the_log_says_so(store, caplog):
    ref = store.put_jsonl("chunks", [{"text": "the write-ahead log"}, {"text": "checkpoints"}])
    flip_byte(local(ref.uri))
    with caplog.at_level(logging.WARNING), pytest.raises(CorruptObject, match="is corrupt"):
        read_jsonl(ref)
    assert not local(ref.uri).exists()  # never served, and not left for a later run to trust
    assert any(
        "is corrupt" in r.getMessage() and "computed or fetched again" in r.getMessage() for r in caplog.records
    )
    assert store.put_jsonl("chunks", [{"text": "the write-ahead log"}, {"text": "checkpoints"}]) == ref  # made again
    assert read_jsonl(ref)[1] == {"text": "checkpoints"}


def test_a_truncated_object_is_found_and_rewritten_by_the_next_put(store):
    ref = store.put_npy("embeddings", np.ones((4, 3), dtype=np.float32))
    path = local(ref.uri)
    path.write_bytes(path.read_bytes()[:-5])
    assert not intact(ref) and not path.exists()
    path.write_bytes(b"cut")
    assert (
        store.put_npy("embeddings", np.ones((4, 3), dtype=np.float32)) == ref
    )  # a short object is not taken as present
    assert read_npy(ref).shape == (4, 3)


def test_a_sealed_record_that_no_longer_matches_its_seal_is_dropped(store):
    uri = store.key_path("qa-cache", "ab" * 32, ".json")
    put_record(uri, {"questions": ["How is the WAL flushed?"], "cost_usd": 0.5})
    assert read_record(uri) == {"questions": ["How is the WAL flushed?"], "cost_usd": 0.5}
    Path(uri).write_text(Path(uri).read_text().replace("0.5", "0.6"))  # still valid JSON, not what was written
    assert read_record(uri) is None and not Path(uri).exists()
    Path(uri).write_text('{"questions": ["written before seals"]}')
    assert read_record(uri) == {"questions": ["written before seals"]}  # an older record is taken as it is
    Path(uri).write_text('{"questions": ["cut sho')
    assert read_record(uri) is None


def test_a_per_document_cache_entry_whose_object_is_corrupt_is_parsed_again(tmp_path, store):
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs_dir)
    docs = discover_documents(str(docs_dir), ParseSettings().extensions, 10)
    first = parse_documents(docs, ParseSettings(), store)
    flip_byte(local(first.docs[0].ref.uri), at=40)
    again = parse_documents(docs, ParseSettings(), store)
    assert again.cached == 0 and again.docs[0].ref == first.docs[0].ref and intact(again.docs[0].ref)
    assert parse_documents(docs, ParseSettings(), store).cached == 1


CALLS: list[str] = []


@task(cache_policy=code_and_inputs(), persist_result=True)
def make_rows(text: str, store_url: str):
    CALLS.append(text)
    return RunStore(store_url).put_jsonl("rows", [{"text": text}])


@flow
def rows_flow(text: str, store_url: str):
    return make_rows(text, store_url)


def test_a_cached_task_result_whose_object_is_corrupt_is_computed_again(prefect_harness, store, caplog):
    CALLS.clear()
    ref = rows_flow("a passage", store.url)
    assert rows_flow("a passage", store.url) == ref and CALLS == ["a passage"]  # served from Prefect's cache
    flip_byte(local(ref.uri), at=3)
    with caplog.at_level(logging.WARNING):
        assert rows_flow("a passage", store.url) == ref
    assert CALLS == ["a passage", "a passage"] and intact(ref)
    assert any("missing or corrupt" in r.getMessage() for r in caplog.records)
    assert rows_flow("a passage", store.url) == ref and len(CALLS) == 2  # cached again


def test_a_corrupt_local_copy_of_a_model_is_fetched_again(store, tmp_path, monkeypatch):
    from test_model_ref import fake_model

    from domain_embed.tasks.core.model_ref import local_model, put_model

    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "cache"))
    ref = put_model(store, fake_model(tmp_path / "trained"))
    copy = Path(local_model(ref))
    flip_byte(copy / "model.safetensors", at=100)
    assert local_model(ref) == str(copy)
    assert (
        hashlib.sha256((copy / "model.safetensors").read_bytes()).hexdigest()
        == read_record(ref.uri)["model.safetensors"]
    )


# --- before paying ---------------------------------------------------------------------------------


def test_an_output_folder_that_cannot_be_written_stops_the_check(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write the output folder .*a-file/out: Not a directory"):
        check_output_folder(str(tmp_path / "a-file" / "out"))


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted for the test (skipped where mounting is not allowed); yields a function mounting it."""
    mounted = []

    def mount(size_mb: int) -> Path:
        folder = tmp_path / f"tmpfs-{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_store_without_room_for_the_run_stops_before_the_llm_is_asked(
    tmp_path, tmpfs, prefect_harness, capsys, monkeypatch
):
    small = tmpfs(8)
    with pytest.raises(ValueError, match=r"has \d+ MB free and this run needs about 200 MB"):
        check_store(str(small), 200_000_000)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs)
    for name in ("DOMAIN_EMBED_STORE", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setenv("STUB_LLM_KEY", "sk-stub")
    with LLMStub() as stub:
        code = main(
            [
                "run",
                str(docs),
                "--out",
                str(tmp_path / "out"),
                "--store",
                str(small),
                "--llm",
                "openai/stub",
                "--api-base",
                stub.api_base,
                "--api-key-env",
                "STUB_LLM_KEY",
            ]
        )
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("domain-embed: error:")]
        assert code == 2 and stub.count() == 0
    assert len(errors) == 1 and f"the run store {small} has" in errors[0] and "choose another --store" in errors[0]


def fill(folder: Path) -> Path:
    """Write a ballast file until the file system is full; returns it."""
    ballast = folder / f"ballast-{uuid.uuid4().hex}"
    with open(ballast, "wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):  # down to the last byte
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    return ballast


def objects_not_whole(root: Path) -> list[str]:
    """Any .tmp- leftover, content-addressed object (<kind>/<sha256>.<suffix>) that does not hash to its name, and
    sealed keyed record (<kind>/<xx>/<key>.json) that fails its seal."""
    bad = [str(p) for p in root.rglob(".tmp-*")]
    for path in root.rglob("*.*"):
        depth = len(path.relative_to(root).parts)
        if depth == 2 and path.parent.name != "models" and len(path.name.split(".")[0]) == 64:
            if hashlib.sha256(path.read_bytes()).hexdigest() != path.name.split(".")[0]:
                bad.append(str(path))
        elif (
            depth == 3
            and path.suffix == ".json"
            and '"_sha256"' in path.read_text()
            and read_record(str(path)) is None
        ):
            bad.append(str(path))
    return bad


def test_a_store_that_fills_up_mid_run_ends_with_one_line_and_the_rerun_pays_nothing_twice(
    tmp_path, tmpfs, prefect_harness, capsys, monkeypatch
):
    store = tmpfs(1100)  # preflight asks room for 10 copies of the 90 MB model (checkpoints)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("tutorial-agg.txt", "tutorial-inheritance.md", "wal-intro.html"):
        shutil.copy(FIXTURES / "docs" / name, docs)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
                "filter": {"roundtrip_top_k": 0},
                "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "teacher": None},
                "llm": {"questions_per_chunk": 1, "max_concurrency": 1},
            }
        )
    )
    for name in ("DOMAIN_EMBED_STORE", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setenv("STUB_LLM_KEY", "sk-stub")
    args = [
        "run",
        str(docs),
        "--out",
        str(tmp_path / "out"),
        "--store",
        str(store),
        "--config",
        str(config),
        "--llm",
        "openai/stub",
        "--api-key-env",
        "STUB_LLM_KEY",
    ]
    with LLMStub(latency_s=0.2) as stub:
        filled: list[Path] = []
        filler = threading.Thread(
            target=lambda: (wait_for(lambda: stub.count() >= 3, 600, "three LLM answers"), filled.append(fill(store)))
        )
        filler.start()
        code = main([*args, "--api-base", stub.api_base])
        filler.join()
        first = dict(stub.chunks_seen)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("domain-embed: error:")]
        assert code == 1 and len(errors) == 1, err[-3000:]
        assert (
            errors[0].startswith(f"domain-embed: error: the run store {store} is full: ")
            and "did not fit" in errors[0]
        )
        assert objects_not_whole(store) == []  # nothing half-written that a later run would take as whole

        filled[0].unlink()
        stub.reset()
        assert main([*args, "--api-base", stub.api_base]) == 0
        again = dict(stub.chunks_seen)
    stored = [p for p in first if p not in again]
    assert len(stored) >= 2  # the chunks answered and stored before the store filled up are not asked again
    assert all(first.get(p, 0) + n <= 2 for p, n in again.items())  # at most the chunk whose answer found no room
    assert sum(1 for p in again if p in first) <= 1
