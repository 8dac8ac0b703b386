"""Documents in: find them (discover), read them (parse, unstructured), cut them (chunk), gather the corpus, and
account for every file (report).

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .chunk import ChunkedDoc, ChunkJob, chunk_documents, chunk_task
    from .corpus import Corpus, assemble_corpus, assemble_corpus_task
    from .discover import DocFile, DocsNotFound, discover_documents, doc_id
    from .parse import ParsedDoc, parse_documents, parse_task
    from .report import Parsed, account_for_chunks, chunk_report_task, parse_report_rows, parse_report_task

EXPORTS = {
    "ChunkJob": "chunk",
    "ChunkedDoc": "chunk",
    "Corpus": "corpus",
    "DocFile": "discover",
    "DocsNotFound": "discover",
    "Parsed": "report",
    "ParsedDoc": "parse",
    "account_for_chunks": "report",
    "assemble_corpus": "corpus",
    "assemble_corpus_task": "corpus",
    "chunk_documents": "chunk",
    "chunk_report_task": "report",
    "chunk_task": "chunk",
    "discover_documents": "discover",
    "doc_id": "discover",
    "parse_documents": "parse",
    "parse_report_rows": "report",
    "parse_report_task": "report",
    "parse_task": "parse",
}
__all__ = [
    "ChunkJob",
    "ChunkedDoc",
    "Corpus",
    "DocFile",
    "DocsNotFound",
    "Parsed",
    "ParsedDoc",
    "account_for_chunks",
    "assemble_corpus",
    "assemble_corpus_task",
    "chunk_documents",
    "chunk_report_task",
    "chunk_task",
    "discover_documents",
    "doc_id",
    "parse_documents",
    "parse_report_rows",
    "parse_report_task",
    "parse_task",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
