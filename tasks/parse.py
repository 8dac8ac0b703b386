"""Parse stage: one document's bytes to text elements with unstructured, or a clear reason why not."""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser
from typing import Literal, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from domain_embed.tasks.discover import DocFile
from domain_embed.tasks.env import set_offline_defaults
from domain_embed.tasks.faults import retry_if_transient
from domain_embed.tasks.item_cache import item_key, load_item, save_item
from domain_embed.tasks.settings import ParseSettings
from domain_embed.tasks.store import Ref, RunStore

ZIP_PARTS = {".docx": "word/document.xml"}  # zip-based types, and the part each must hold
TEXT_TYPES = {".txt": "text", ".text": "text", ".rst": "text", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


class ParsedDoc(BaseModel):
    """The parse result of one document, keyed by its content hash (never its path)."""

    sha256: str
    filetype: str
    status: Literal["ok", "error"]
    error: Optional[str] = None
    elements: int = 0
    chars: int = 0
    note: Optional[str] = None
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


def check_zip(path: str, ext: str, max_inflated_mb: float) -> None:
    """Reject a zip-based document that is not a valid zip of its type, or that inflates past the cap, before parsing.

    The sizes are those the zip declares: zipfile (under python-docx) never inflates an entry past its declared size."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ParseError(f"not a valid {ext} (zip) file: {exc}") from exc
    except OSError as exc:  # removed or made unreadable since discovery
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if ZIP_PARTS[ext] not in {e.filename for e in entries}:
        raise ParseError(f"not a valid {ext} file: the zip holds no {ZIP_PARTS[ext]}")
    inflated = sum(e.file_size for e in entries) / 2**20
    if inflated > max_inflated_mb:
        raise ParseError(f"inflates to {inflated:.0f} MB (> {max_inflated_mb:g} MB cap, parse.max_inflated_mb); "
                         "a zip bomb or a very large document, not parsed")  # fmt: skip


LIBXML_MAX_DEPTH = 255  # libxml2 (under lxml and unstructured) stops at the 256th nested element, dropping what follows
BLOCK_TAGS = {"p", "div", "br", "li", "tr", "td", "th", "table", "section", "article", "pre", "blockquote", "hr",
              "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "dt", "dd", "header", "footer", "main", "nav"}  # fmt: skip


def html_too_deep(html: str) -> bool:
    """Whether libxml2 gives up on this HTML's nesting depth: it keeps the text before that point and silently drops the rest."""
    from lxml import etree

    parser = etree.HTMLParser(encoding="utf-8")
    etree.fromstring(html.encode("utf-8", "replace"), parser)
    return any("Excessive depth" in error.message for error in parser.error_log)


class _HTMLText(HTMLParser):
    """The text of an HTML document read as a stream of tags, never a tree: any depth; block tags end a paragraph."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_plain_text(html: str) -> str:
    """Paragraphs of an HTML document's text, whitespace collapsed, without building a tree."""
    reader = _HTMLText()
    reader.feed(html)
    reader.close()
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", "".join(reader.parts)))
    return "\n\n".join(p for p in paragraphs if p)


def partition_html_text(html: str) -> tuple[list, Optional[str]]:
    """Elements of an HTML document, and a note when it is nested too deep for lxml and is read as plain text instead."""
    if html_too_deep(html):
        from unstructured.partition.text import partition_text

        note = f"HTML nested deeper than {LIBXML_MAX_DEPTH} levels: read as plain text (no headings)"
        return partition_text(text=html_plain_text(html)), note
    from unstructured.partition.html import partition_html

    return partition_html(text=html), None


def partition_file(path: str, ext: str, strategy: str) -> tuple[list, Optional[str]]:
    """Run unstructured on one file: its elements and a note on how it was read, or ParseError with a reason."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:  # removed or made unreadable since discovery
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ParseError("empty file (no content)")
    set_offline_defaults("DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "UNSTRUCTURED_DISABLE_NOTICE")  # unstructured pings when imported and called
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
        _check_pdf(path, data[:1024])
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
    return ParsedDoc(sha256=sha256, filetype=filetype, status="ok", elements=len(records), chars=chars, note=note, ref=ref)


class ParseBatch(BaseModel):
    """Parse results of a batch of documents, in input order, and how many came from the per-document cache."""

    docs: list[ParsedDoc]
    cached: int = 0


def parse_documents(docs: list[DocFile], settings: ParseSettings, store: RunStore) -> ParseBatch:
    """Parse each document unless its result is cached under its content hash, the parser settings and this code."""
    results, cached = [], 0
    for doc in docs:
        key = item_key(("domain_embed.tasks.parse",), sha256=doc.sha256, ext=doc.ext, settings=settings)
        parsed = load_item(store, "parse-cache", key, ParsedDoc)
        if parsed is not None:
            cached += 1
        else:
            parsed = parse_document(doc.os_path, doc.sha256, doc.ext, settings, store)
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
    for doc, parsed in zip(docs, batch.docs):
        if parsed.note:
            logger.warning("%s: %s", doc.rel_path, parsed.note)
    logger.info("Parsed %d documents (%d from cache, %d failed)", len(docs), batch.cached, len(failed))
    return batch
