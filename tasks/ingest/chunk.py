"""Chunk stage: a parsed document's elements to token-sized chunks, with the base model's tokenizer."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel
from transformers import AutoTokenizer  # imported here: its lazy loader is not safe when tasks import it in threads

from ..core.faults import retry_if_transient
from ..core.item_cache import item_key, load_item, save_item
from ..core.objects import Ref, read_jsonl, sha256_bytes
from ..core.store import RunStore
from ..settings import ChunkSettings
from .discover import doc_id

WORD = re.compile(r"\w")  # a letter or digit in any script; emoji and symbols have none
NO_WORDS = "no words (only symbols or emoji)"


class ChunkedDoc(BaseModel):
    """Chunks of one document (by content hash) and what was dropped."""

    sha256: str
    ref: Ref
    chunks: int
    dropped: dict[str, int]
    token_lengths: list[int]


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    """The base model's fast tokenizer, from its folder."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    tokenizer.model_max_length = 10**9  # only counts tokens here; silences the over-length warning
    return tokenizer


def token_counter(tokenizer) -> Callable[[str], int]:
    """Token count of a text, memoised: a text without spaces is split into single characters, each counted."""
    return functools.lru_cache(maxsize=8192)(lambda text: len(tokenizer.tokenize(text)))


def group_sections(records: list[dict], tokenizer, min_tokens: int) -> list[tuple[str, str]]:
    """Join elements into (section, text) blocks; blocks under min_tokens merge into the next."""
    blocks: list[tuple[str, list[str]]] = []
    for record in records:
        if not blocks or record["section"] != blocks[-1][0]:
            blocks.append((record["section"], []))
        blocks[-1][1].append(record["text"])
    merged: list[tuple[str, str]] = []
    carry = ""
    for section, texts in blocks:
        text = "\n\n".join(([carry] if carry else []) + texts)
        if len(tokenizer.tokenize(text)) < min_tokens:
            carry = text
            continue
        merged.append((section, text))
        carry = ""
    if carry:
        if merged:
            merged[-1] = (merged[-1][0], merged[-1][1] + "\n\n" + carry)
        else:
            merged.append(("", carry))
    return merged


def chunk_records(
    records: list[dict], doc_id: str, settings: ChunkSettings, model_dir: str, max_tokens: int
) -> tuple[list[dict], Counter]:
    """Split one document's elements into chunk rows; returns the rows and drop reasons counted."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    tokenizer = load_tokenizer(model_dir)
    size = min(settings.chunk_tokens, max_tokens - 2)
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=min(settings.overlap_tokens, size // 2),
        length_function=token_counter(tokenizer),
    )
    rows: list[dict] = []
    dropped: Counter = Counter()
    seen: set[str] = set()
    for section, text in group_sections(records, tokenizer, settings.min_tokens):
        for piece in splitter.split_text(text):
            piece = piece.strip()
            if not WORD.search(piece):
                dropped[NO_WORDS] += 1
                continue
            n_tokens = len(tokenizer.tokenize(piece))
            if n_tokens < settings.min_tokens:
                dropped[f"shorter than {settings.min_tokens} tokens"] += 1
                continue
            chunk_id = sha256_bytes(f"{doc_id}\n{piece}".encode())[:16]
            if chunk_id in seen:
                dropped["duplicate chunk within the document"] += 1
                continue
            seen.add(chunk_id)
            rows.append(
                {"chunk_id": chunk_id, "doc_id": doc_id, "section": section, "text": piece, "n_tokens": n_tokens}
            )
    return rows, dropped


def chunk_document(
    elements: Ref, doc_sha: str, settings: ChunkSettings, model_dir: str, max_tokens: int, store: RunStore
) -> ChunkedDoc:
    """Chunk one parsed document into the run store."""
    rows, dropped = chunk_records(read_jsonl(elements), doc_id(doc_sha), settings, model_dir, max_tokens)
    ref = store.put_jsonl("chunks", rows)
    return ChunkedDoc(
        sha256=doc_sha, ref=ref, chunks=len(rows), dropped=dict(dropped), token_lengths=[r["n_tokens"] for r in rows]
    )


def no_chunk_reason(doc: ChunkedDoc) -> str:
    """Why a document gave no chunk: what the chunk stage dropped, and the setting to change when pieces were too short."""
    reasons = "; ".join(f"{why}: {n}" for why, n in doc.dropped.items()) or "no text to split"
    hint = " (chunk.min_tokens)" if any(why.startswith("shorter than") for why in doc.dropped) else ""
    return f"no chunk: {reasons}{hint}"


class ChunkJob(BaseModel):
    """One parsed document to chunk: its elements, content hash and (for logs only) its path."""

    elements: Ref
    doc_sha: str
    rel_path: str


class ChunkBatch(BaseModel):
    """Chunked documents of a batch, in input order, and how many came from the per-document cache."""

    docs: list[ChunkedDoc]
    cached: int = 0


def chunk_cache_key(job: ChunkJob, settings: ChunkSettings, model_sha: str, max_tokens: int) -> str:
    """A document's key in chunk-cache: its parsed elements, its content hash, the settings, the tokenizer, this code."""
    return item_key(
        __name__,
        elements=job.elements.sha256,
        doc=job.doc_sha,
        settings=settings,
        model=model_sha,
        max_tokens=max_tokens,
    )


def chunk_documents(
    jobs: list[ChunkJob], settings: ChunkSettings, model_dir: str, model_sha: str, max_tokens: int, store: RunStore
) -> ChunkBatch:
    """Chunk each document unless cached under its parsed content, the chunk settings, the tokenizer and this code."""
    results, cached = [], 0
    for job in jobs:
        key = chunk_cache_key(job, settings, model_sha, max_tokens)
        chunked = load_item(store, "chunk-cache", key, ChunkedDoc)
        if chunked is None:
            chunked = chunk_document(job.elements, job.doc_sha, settings, model_dir, max_tokens, store)
            save_item(store, "chunk-cache", key, chunked)
        else:
            cached += 1
        results.append(chunked)
    return ChunkBatch(docs=results, cached=cached)


@task(
    name="chunk",
    cache_policy=NO_CACHE,
    retries=1,
    retry_condition_fn=retry_if_transient,
    task_run_name="chunk-{label}",
    persist_result=False,
)
def chunk_task(
    jobs: list[ChunkJob],
    label: str,
    settings: ChunkSettings,
    model_dir: str,
    model_sha: str,
    max_tokens: int,
    store_url: str,
) -> ChunkBatch:
    """Chunk a batch of documents; each one is cached on its parsed content, chunk settings and tokenizer (model hash)."""
    batch = chunk_documents(jobs, settings, model_dir, model_sha, max_tokens, RunStore(store_url))
    chunks = sum(d.chunks for d in batch.docs)
    get_run_logger().info(
        "Chunked %d documents into %d chunks (%d documents from cache)", len(jobs), chunks, batch.cached
    )
    return batch
