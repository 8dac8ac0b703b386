"""Any byte sequence is valid input, in a file's name as well as in its content: a property test of the ingest path
(discover -> parse -> chunk -> corpus -> publish's index writer) on folders Hypothesis makes up."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain_embed.tasks.core.names import escape_name, unescape_name
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.ingest import Parsed, account_for_chunks, parse_report_rows
from domain_embed.tasks.ingest.chunk import ChunkJob, chunk_documents
from domain_embed.tasks.ingest.corpus import assemble_corpus
from domain_embed.tasks.ingest.discover import discover_documents
from domain_embed.tasks.ingest.parse import parse_documents
from domain_embed.tasks.publishing.publish import write_index
from domain_embed.tasks.settings import ChunkSettings, ParseSettings

PARSE, CHUNK = ParseSettings(), ChunkSettings()
EXTENSIONS = [b".txt", b".md", b".html", b".htm", b".rst", b".pdf", b".docx", b".TXT", b".bin", b""]
PROSE = (
    "Write-ahead logging keeps every change in a journal before the table files are touched, so recovery replays it. "
)


def _legal(name: bytes) -> bool:
    return b"/" not in name and b"\x00" not in name and name not in (b".", b"..") and len(name) <= 250


stems = st.one_of(
    st.binary(min_size=1, max_size=40),  # invalid UTF-8, newlines, control bytes, leading dashes and dots
    st.text(min_size=1, max_size=30).map(lambda t: t.encode("utf-8")),  # any script, emoji, bidi controls
    st.sampled_from([b"-rf", b"--help", b"a\nb", b"bad-\xff\xfe-name", b"\xed\xa0\x80", b"x\\x41", b"|pipe|", b" "]),
)
names = st.tuples(stems, st.sampled_from(EXTENSIONS)).map(b"".join).filter(_legal)
texts = st.text(max_size=400)
contents = st.one_of(
    st.binary(max_size=3000),
    texts.map(lambda t: (PROSE + t).encode("utf-8")),
    texts.map(lambda t: (PROSE + t).encode("utf-16")),  # with its BOM
    texts.map(lambda t: (PROSE + t).encode("utf-8")[:-1]),  # half-written last character
    st.integers(1, 200_000).map(lambda n: b"w" * n),  # one huge word, no line break
    st.integers(1, 5000).map(lambda n: (PROSE.encode() * 3 + b"\x00") * (n % 7 + 1)),  # NUL bytes in text
    st.sampled_from(
        [
            b"%PDF-1.7\n%broken",
            b"PK\x03\x04truncated zip",
            b"<html><body>" + b"<div>" * 400 + b"deep",
            b"\xef\xbb\xbf\r\n# T\r\n",
        ]
    ),
)
folders = st.lists(st.tuples(names, contents), min_size=1, max_size=6, unique_by=lambda item: item[0])


def ingest(root: Path, files: list[tuple[bytes, bytes]], base_model_dir: str) -> None:
    """Write the folder, run it through the ingest path and publish's index writer, and check what came out."""
    docs_dir, store = root / "docs", RunStore(str(root / "store"))
    docs_dir.mkdir()
    for name, content in files:
        with open(os.path.join(os.fsencode(docs_dir), name), "wb") as handle:
            handle.write(content)
    docs = discover_documents(str(docs_dir), PARSE.extensions, PARSE.max_file_mb)
    todo = [d for d in docs if not d.skipped]
    parsed = dict(zip((d.sha256 for d in todo), parse_documents(todo, PARSE, store).docs))
    ok = [d for d in todo if parsed[d.sha256].status == "ok"]
    jobs = [ChunkJob(elements=parsed[d.sha256].ref, doc_sha=d.sha256, rel_path=d.rel_path) for d in ok]
    chunked = chunk_documents(jobs, CHUNK, base_model_dir, "model", 256, store).docs
    rows = account_for_chunks(
        Parsed(by_sha=parsed, ok_docs=ok, rows=parse_report_rows(docs, parsed), cached=0), chunked
    ).rows
    corpus = assemble_corpus(chunked, store)

    written = sorted(escape_name(name) for name, _ in files)
    assert sorted(row["file"] for row in rows) == written  # every file accounted for, exactly once
    assert all(row["status"] for row in rows)
    assert sorted(os.fsencode(unescape_name(f)) for f in written) == sorted(name for name, _ in files)  # lossless
    json.loads(json.dumps(rows, ensure_ascii=False).encode("utf-8"))  # the report's rows are valid UTF-8 JSON
    if corpus.chunks:
        write_index(base_model_dir, corpus.ref, {d.doc_id: d.rel_path for d in ok}, root / "out", store)
        lines = (root / "out" / "index" / "chunks.jsonl").read_bytes().decode("utf-8").split("\n")
        records = [json.loads(line) for line in lines if line]
        assert len(records) == corpus.chunks and {r["document"] for r in records} <= set(written)


def check(files: list[tuple[bytes, bytes]], base_model_dir: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ingest(Path(folder), files, base_model_dir)


SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW, derandomize=True)
@given(files=folders)
def test_any_folder_is_ingested_and_every_file_accounted_for(files, base_model_dir):
    check(files, base_model_dir)


@pytest.mark.extended
@settings(max_examples=400, deadline=None, suppress_health_check=SLOW)
@given(files=folders)
def test_any_folder_is_ingested_long_profile(files, base_model_dir):
    check(files, base_model_dir)


def test_names_round_trip_and_read_plainly():
    for raw in (
        b"bad-\xff\xfe-name.txt",
        b"a\nb\tc\\d",
        b"-rf",
        "中文 🐳.md".encode(),
        b"\xe2\x80\xaeevil",
        b"\xc2\x85x",
        b"\x1b[31m",
    ):
        escaped = escape_name(raw)
        assert os.fsencode(unescape_name(escaped)) == raw
        assert escaped.isprintable() and escaped.encode("utf-8")
    assert escape_name(b"bad-\xff\xfe-name.txt") == "bad-\\xff\\xfe-name.txt"
    assert escape_name("中文 🐳.md".encode()) == "中文 🐳.md"
    assert (
        escape_name(b"a\nb") == "a\\nb" and escape_name(b"\xc2\x85") == "\\u0085" and escape_name(b"\x85") == "\\x85"
    )
