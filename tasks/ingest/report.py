"""The ingest stages' accounts: every file found as parsed, skipped or failed (parse-report), and every parsed
document's chunks and drops with the token-length histogram (chunk-report)."""

from __future__ import annotations

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.reports import histogram, publish_table
from .chunk import ChunkedDoc, no_chunk_reason
from .corpus import Corpus
from .discover import DocFile, DocsNotFound, doc_id
from .parse import ParsedDoc


class Parsed(BaseModel):
    """Parse results by content hash, the documents that parsed, one report row per file found, and cache hits."""

    by_sha: dict[str, ParsedDoc]
    ok_docs: list[DocFile]
    rows: list[dict]
    cached: int


def parse_report_rows(docs: list[DocFile], parsed: dict[str, ParsedDoc]) -> list[dict]:
    """One row per file found: type, elements, chars, status or the reason it was skipped, and how it was read if unusual."""
    rows = []
    for doc in docs:
        result = parsed.get(doc.sha256 or "")
        if doc.skipped:
            status = f"skipped: {doc.skipped}"
        elif result is None or result.status != "ok":
            status = f"error: {result.error if result else 'not parsed'}"
        else:
            status = "ok"
        ok = result is not None and result.status == "ok" and not doc.skipped
        rows.append(
            {
                "file": doc.rel_path,
                "type": doc.ext.lstrip(".") or "-",
                "bytes": doc.size,
                "elements": result.elements if ok else 0,
                "chars": result.chars if ok else 0,
                "status": status,
                "note": (result.note if ok else None) or "",
            }
        )
    return rows


@task(name="parse-report", persist_result=False)
def parse_report_task(docs: list[DocFile], parsed: dict[str, ParsedDoc], docs_dir: str) -> Parsed:
    """The parse-report artifact, one row per file found; the documents that parsed (DocsNotFound when none did)."""
    rows = parse_report_rows(docs, parsed)
    publish_table("parse-report", rows, "Every file found: parsed, or skipped with the reason")
    ok_docs = [d for d in docs if not d.skipped and parsed[d.sha256].status == "ok"]
    get_run_logger().info(
        "Parsed %d of %d files (%d skipped or failed)", len(ok_docs), len(docs), len(docs) - len(ok_docs)
    )
    if not ok_docs:
        raise DocsNotFound(f"none of the {len(docs)} files in {docs_dir} could be parsed: see parse-report")
    return Parsed(by_sha=parsed, ok_docs=ok_docs, rows=rows, cached=0)


def account_for_chunks(parsed: Parsed, chunked: list[ChunkedDoc]) -> Parsed:
    """Parsed documents that gave no chunk get the chunk stage's reason as their report status, instead of 'ok'."""
    reasons = {d.rel_path: no_chunk_reason(c) for d, c in zip(parsed.ok_docs, chunked) if not c.chunks}
    rows = [{**row, "status": reasons.get(row["file"], row["status"])} for row in parsed.rows]
    return parsed.model_copy(update={"rows": rows})


def chunk_report_rows(parsed: Parsed, chunked: list[ChunkedDoc], corpus: Corpus) -> list[dict]:
    """Chunks and drops per document, the whole corpus's drops, and the chunk token-length histogram."""
    names = {doc_id(d.sha256): d.rel_path for d in parsed.ok_docs}
    rows = [
        {
            "file": names[doc_id(c.sha256)],
            "chunks": c.chunks,
            "dropped": ", ".join(f"{k}: {v}" for k, v in c.dropped.items()) or "-",
        }
        for c in chunked
    ]
    rows.append(
        {
            "file": "(whole corpus)",
            "chunks": corpus.chunks,
            "dropped": ", ".join(f"{k}: {v}" for k, v in corpus.dropped.items()) or "-",
        }
    )
    lengths = [n for c in chunked for n in c.token_lengths]
    return rows + [
        {"file": f"tokens {k}", "chunks": v, "dropped": ""}
        for k, v in histogram(lengths, [0, 32, 64, 128, 192, 256]).items()
    ]


@task(name="chunk-report", persist_result=False)
def chunk_report_task(parsed: Parsed, chunked: list[ChunkedDoc], corpus: Corpus) -> Parsed:
    """The chunk-report artifact; the parse rows of documents that gave no chunk say why (DocsNotFound when none did)."""
    publish_table(
        "chunk-report",
        chunk_report_rows(parsed, chunked, corpus),
        "Chunks per document and the chunk token-length histogram",
    )
    get_run_logger().info("Chunked %d documents into %d chunks", len(chunked), corpus.chunks)
    if not corpus.chunks:
        raise DocsNotFound(f"none of the {len(chunked)} parsed documents gave a chunk: see chunk-report")
    return account_for_chunks(parsed, chunked)
