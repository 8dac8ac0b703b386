"""Chunk stage: a parsed document's elements to token-sized chunks, with the base model's tokenizer."""

from __future__ import annotations

import functools
from collections import Counter

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel
from transformers import AutoTokenizer  # imported here: its lazy loader is not safe when tasks import it in threads

from flows.config import ChunkSettings
from tasks.caching import code_and_inputs
from tasks.faults import retry_if_transient
from tasks.store import Ref, RunStore, read_jsonl, sha256_bytes


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


def chunk_records(records: list[dict], doc_id: str, settings: ChunkSettings, model_dir: str, max_tokens: int) -> tuple[list[dict], Counter]:
    """Split one document's elements into chunk rows; returns the rows and drop reasons counted."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    tokenizer = load_tokenizer(model_dir)
    size = min(settings.chunk_tokens, max_tokens - 2)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=size, chunk_overlap=min(settings.overlap_tokens, size // 2)
    )
    rows: list[dict] = []
    dropped: Counter = Counter()
    seen: set[str] = set()
    for section, text in group_sections(records, tokenizer, settings.min_tokens):
        for piece in splitter.split_text(text):
            piece = piece.strip()
            n_tokens = len(tokenizer.tokenize(piece))
            if n_tokens < settings.min_tokens:
                dropped[f"shorter than {settings.min_tokens} tokens"] += 1
                continue
            chunk_id = sha256_bytes(f"{doc_id}\n{piece}".encode())[:16]
            if chunk_id in seen:
                dropped["duplicate chunk within the document"] += 1
                continue
            seen.add(chunk_id)
            rows.append({"chunk_id": chunk_id, "doc_id": doc_id, "section": section, "text": piece, "n_tokens": n_tokens})
    return rows, dropped


def chunk_document(elements: Ref, doc_sha: str, settings: ChunkSettings, model_dir: str, max_tokens: int, store: RunStore) -> ChunkedDoc:
    """Chunk one parsed document into the run store."""
    rows, dropped = chunk_records(read_jsonl(elements), doc_sha[:16], settings, model_dir, max_tokens)
    ref = store.put_jsonl("chunks", rows)
    return ChunkedDoc(
        sha256=doc_sha, ref=ref, chunks=len(rows), dropped=dict(dropped), token_lengths=[r["n_tokens"] for r in rows]
    )


@task(
    name="chunk",
    cache_policy=code_and_inputs(exclude=("model_dir", "rel_path")),
    retries=1,
    retry_condition_fn=retry_if_transient,
    task_run_name="chunk-{rel_path}",
    persist_result=True,
)
def chunk_task(
    elements: Ref, doc_sha: str, rel_path: str, settings: ChunkSettings, model_dir: str, model_sha: str, max_tokens: int, store_url: str
) -> ChunkedDoc:
    """Chunk one document; cached on the parsed content, chunk settings and tokenizer (model hash)."""
    result = chunk_document(elements, doc_sha, settings, model_dir, max_tokens, RunStore(store_url))
    get_run_logger().info("Chunked %s into %d chunks (dropped: %s)", rel_path, result.chunks, result.dropped or "none")
    return result
