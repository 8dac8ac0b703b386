"""Assemble the corpus: every kept chunk of every document, identical passages kept once."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from tasks.chunk import ChunkedDoc
from tasks.store import Ref, RunStore, read_jsonl


class Corpus(BaseModel):
    """All chunks of the run, and what was dropped while assembling them."""

    ref: Ref
    chunks: int
    documents: int
    dropped: dict[str, int]


def normalise(text: str) -> str:
    """Lower-cased text with whitespace collapsed, for exact-duplicate checks."""
    return " ".join(text.lower().split())


def assemble_corpus(chunked: list[ChunkedDoc], store: RunStore) -> Corpus:
    """Concatenate documents' chunks in a stable order; a passage seen in an earlier document is dropped."""
    rows: list[dict] = []
    seen: set[str] = set()
    dropped: Counter = Counter()
    for doc in sorted(chunked, key=lambda d: d.sha256):
        for row in read_jsonl(doc.ref):
            key = normalise(row["text"])
            if key in seen:
                dropped["same passage in another document"] += 1
                continue
            seen.add(key)
            rows.append(row)
    return Corpus(ref=store.put_jsonl("corpus", rows), chunks=len(rows), documents=len(chunked), dropped=dict(dropped))
