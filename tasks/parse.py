"""Parse stage: one document's bytes to text elements with unstructured, or a clear reason why not."""

from __future__ import annotations

from typing import Literal, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tasks.discover import DocFile
from tasks.env import set_offline_defaults
from tasks.faults import retry_if_transient
from tasks.item_cache import item_key, load_item, save_item
from tasks.settings import ParseSettings
from tasks.store import Ref, RunStore

TEXT_TYPES = {".txt": "text", ".text": "text", ".rst": "text", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


class ParsedDoc(BaseModel):
    """The parse result of one document, keyed by its content hash (never its path)."""

    sha256: str
    filetype: str
    status: Literal["ok", "error"]
    error: Optional[str] = None
    elements: int = 0
    chars: int = 0
    ref: Optional[Ref] = None


class ParseError(ValueError):
    """A document that cannot be parsed, with the reason a user can act on."""


def decode_text(data: bytes) -> str:
    """Decode text bytes (UTF-8, UTF-16 with BOM, else a detected charset); reject binary data."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    sample = data[:8192]
    if b"\x00" in sample:
        raise ParseError("binary data in a text file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("binary data in a text file (no text encoding fits)")
    text = str(best)
    if _control_ratio(text) > 0.05:
        raise ParseError("binary data in a text file (mostly control characters)")
    return text


def _control_ratio(text: str) -> float:
    sample = text[:8192]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return control / max(1, len(sample))


def _check_pdf(path: str, data_head: bytes) -> None:
    if not data_head.startswith(b"%PDF-"):
        raise ParseError("not a PDF (missing %PDF- header)")
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
    except (PdfReadError, ValueError, OSError) as exc:
        raise ParseError(f"corrupt or truncated PDF: {exc}") from exc
    if encrypted:
        raise ParseError("encrypted PDF (password protected)")


def partition_file(path: str, ext: str, strategy: str) -> list:
    """Run unstructured on one file; raise ParseError with a reason on any failure."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:  # removed or made unreadable since discovery
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ParseError("empty file (no content)")
    set_offline_defaults("DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "UNSTRUCTURED_DISABLE_NOTICE")  # unstructured pings when imported and called
    try:
        if ext in TEXT_TYPES:
            text = decode_text(data)
            kind = TEXT_TYPES[ext]
            if kind == "html":
                from unstructured.partition.html import partition_html

                return partition_html(text=text)
            if kind == "md":
                from unstructured.partition.md import partition_md

                return partition_md(text=text)
            from unstructured.partition.text import partition_text

            return partition_text(text=text)
        if ext == ".pdf":
            _check_pdf(path, data[:1024])
            from unstructured.partition.pdf import partition_pdf

            return partition_pdf(filename=path, strategy=strategy)
        if ext == ".docx":
            if not data.startswith(b"PK"):
                raise ParseError("not a DOCX (not a zip container)")
            from unstructured.partition.docx import partition_docx

            return partition_docx(filename=path)
    except ParseError:
        raise
    except Exception as exc:  # unstructured and its parsers raise many types
        raise ParseError(f"{type(exc).__name__}: {exc}".strip()) from exc
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
        records = elements_to_records(partition_file(path, ext, settings.strategy))
        if not records:
            raise ParseError("no text extracted (scanned image, or nothing but markup?)")
    except ParseError as exc:
        return ParsedDoc(sha256=sha256, filetype=filetype, status="error", error=str(exc)[:500])
    ref = store.put_jsonl("elements", records)
    chars = sum(len(r["text"]) for r in records)
    return ParsedDoc(sha256=sha256, filetype=filetype, status="ok", elements=len(records), chars=chars, ref=ref)


class ParseBatch(BaseModel):
    """Parse results of a batch of documents, in input order, and how many came from the per-document cache."""

    docs: list[ParsedDoc]
    cached: int = 0


def parse_documents(docs: list[DocFile], settings: ParseSettings, store: RunStore) -> ParseBatch:
    """Parse each document unless its result is cached under its content hash, the parser settings and this code."""
    results, cached = [], 0
    for doc in docs:
        key = item_key(("tasks.parse",), sha256=doc.sha256, ext=doc.ext, settings=settings)
        parsed = load_item(store, "parse-cache", key, ParsedDoc)
        if parsed is not None:
            cached += 1
        else:
            parsed = parse_document(doc.path, doc.sha256, doc.ext, settings, store)
            if not (parsed.error or "").startswith("cannot read file"):  # a transient read fault is retried next run
                save_item(store, "parse-cache", key, parsed)
        results.append(parsed)
    return ParseBatch(docs=results, cached=cached)


@task(name="parse", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_if_transient, task_run_name="parse-{label}", persist_result=False)
def parse_task(docs: list[DocFile], label: str, settings: ParseSettings, store_url: str) -> ParseBatch:
    """Parse a batch of documents; each one is cached on its own content hash and the parser settings."""
    batch = parse_documents(docs, settings, RunStore(store_url))
    logger = get_run_logger()
    failed = [(d.rel_path, p.error) for d, p in zip(docs, batch.docs) if p.status != "ok"]
    for rel_path, error in failed:
        logger.warning("Skipped %s: %s", rel_path, error)
    logger.info("Parsed %d documents (%d from cache, %d failed)", len(docs), batch.cached, len(failed))
    return batch
