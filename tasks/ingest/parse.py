"""Parse stage: one document's bytes to text elements with unstructured, or a clear reason why not."""

from __future__ import annotations

import zipfile
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.env import set_offline_defaults
from ..core.faults import retry_if_transient
from ..core.item_cache import item_key, load_item, save_item
from ..core.objects import Ref
from ..core.store import RunStore
from ..settings import ParseSettings
from .discover import DocFile
from .formats import ZIP_PARTS, ParseError, check_pdf, check_zip, decode_text
from .html import partition_html_text

TEXT_TYPES = {
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
}


class ParsedDoc(BaseModel):
    """The parse result of one document, keyed by its content hash (never its path)."""

    sha256: str
    filetype: str
    status: Literal["ok", "error"]
    error: str | None = None
    elements: int = 0
    chars: int = 0
    note: str | None = None
    ref: Ref | None = None


def partition_file(path: str, ext: str, strategy: str) -> tuple[list, str | None]:
    """Run unstructured on one file: its elements and a note on how it was read, or ParseError with a reason."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:  # removed or made unreadable since discovery
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ParseError("empty file (no content)")
    set_offline_defaults(
        "DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "UNSTRUCTURED_DISABLE_NOTICE"
    )  # unstructured pings when imported and called
    try:
        if TEXT_TYPES.get(ext) == "html":
            return partition_html_text(decode_text(data))
        return _partition(path, ext, data, strategy), None
    except ParseError:
        raise
    except zipfile.BadZipFile as exc:  # an entry that does not inflate to its declared size and checksum
        raise ParseError(f"not a valid {ext} (zip) file: {exc}") from exc
    except Exception as exc:  # unstructured and its parsers raise many types
        raise ParseError(f"{type(exc).__name__}: {exc}".strip()) from exc


def _partition(path: str, ext: str, data: bytes, strategy: str) -> list:
    """Elements of a text, markdown, PDF or DOCX file with unstructured's partitioner for its type."""
    if TEXT_TYPES.get(ext) == "md":
        from unstructured.partition.md import partition_md

        return partition_md(text=decode_text(data))
    if ext in TEXT_TYPES:
        from unstructured.partition.text import partition_text

        return partition_text(text=decode_text(data))
    if ext == ".pdf":
        check_pdf(path, data[:1024])
        from unstructured.partition.pdf import partition_pdf

        return partition_pdf(filename=path, strategy=strategy)
    if ext == ".docx":
        from unstructured.partition.docx import partition_docx

        return partition_docx(filename=path)
    raise ParseError(f"unsupported file type '{ext}'")


def elements_to_records(elements: list) -> list[dict]:
    """Plain records (text, category, page, section) in reading order; section is the last heading."""
    records: list[dict] = []
    section = ""
    for element in elements:
        text = (getattr(element, "text", "") or "").strip()
        if not text:
            continue
        category = getattr(element, "category", "Text") or "Text"
        if category == "Title":
            section = text[:200]
        page = getattr(getattr(element, "metadata", None), "page_number", None)
        records.append({"text": text, "category": category, "page": page, "section": section})
    return records


def parse_document(path: str, sha256: str, ext: str, settings: ParseSettings, store: RunStore) -> ParsedDoc:
    """Parse one file into elements in the run store; failures come back as status 'error'."""
    filetype = ext.lstrip(".")
    try:
        if ext in ZIP_PARTS:
            check_zip(path, ext, settings.max_inflated_mb)
        elements, note = partition_file(path, ext, settings.strategy)
        records = elements_to_records(elements)
        if not records:
            raise ParseError("no text extracted (scanned image, or nothing but markup?)")
    except ParseError as exc:
        return ParsedDoc(sha256=sha256, filetype=filetype, status="error", error=str(exc)[:500])
    ref = store.put_jsonl("elements", records)
    chars = sum(len(r["text"]) for r in records)
    return ParsedDoc(
        sha256=sha256, filetype=filetype, status="ok", elements=len(records), chars=chars, note=note, ref=ref
    )


class ParseBatch(BaseModel):
    """Parse results of a batch of documents, in input order, and how many came from the per-document cache."""

    docs: list[ParsedDoc]
    cached: int = 0


def parse_cache_key(doc: DocFile, settings: ParseSettings) -> str:
    """A document's key in parse-cache: its content hash, its type, the parser settings and this code."""
    return item_key(__name__, sha256=doc.sha256, ext=doc.ext, settings=settings)


def parse_documents(docs: list[DocFile], settings: ParseSettings, store: RunStore) -> ParseBatch:
    """Parse each document unless its result is cached under its content hash, the parser settings and this code."""
    results, cached = [], 0
    for doc in docs:
        key = parse_cache_key(doc, settings)
        parsed = load_item(store, "parse-cache", key, ParsedDoc)
        if parsed is not None:
            cached += 1
        else:
            parsed = parse_document(doc.os_path, doc.sha256, doc.ext, settings, store)
            if not (parsed.error or "").startswith("cannot read file"):  # a transient read fault is retried next run
                save_item(store, "parse-cache", key, parsed)
        results.append(parsed)
    return ParseBatch(docs=results, cached=cached)


@task(
    name="parse",
    cache_policy=NO_CACHE,
    retries=1,
    retry_condition_fn=retry_if_transient,
    task_run_name="parse-{label}",
    persist_result=False,
)
def parse_task(docs: list[DocFile], label: str, settings: ParseSettings, store_url: str) -> ParseBatch:
    """Parse a batch of documents; each one is cached on its own content hash and the parser settings."""
    batch = parse_documents(docs, settings, RunStore(store_url))
    logger = get_run_logger()
    failed = [(d.rel_path, p.error) for d, p in zip(docs, batch.docs) if p.status != "ok"]
    for rel_path, error in failed:
        logger.warning("Skipped %s: %s", rel_path, error)
    for doc, parsed in zip(docs, batch.docs):
        if parsed.note:
            logger.warning("%s: %s", doc.rel_path, parsed.note)
    logger.info("Parsed %d documents (%d from cache, %d failed)", len(docs), batch.cached, len(failed))
    return batch
