"""Assemble the corpus: every kept chunk of every document, identical passages kept once."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator

from prefect import task
from pydantic import BaseModel

from ..core.objects import Ref, iter_jsonl
from ..core.store import RunStore
from ..core.text import normalize
from .chunk import ChunkedDoc


class Corpus(BaseModel):
    """All chunks of the run, and what was dropped while assembling them."""

    ref: Ref
    chunks: int
    documents: int
    dropped: dict[str, int]


def corpus_rows(chunked: list[ChunkedDoc], dropped: Counter) -> Iterator[dict]:
    """Documents' chunks in a stable order; a passage seen in an earlier document is counted in `dropped`, not yielded.

    Memory holds one document's rows and a 16-byte digest per kept passage, not the corpus."""
    seen: set[bytes] = set()
    for doc in sorted(chunked, key=lambda d: d.sha256):
        for row in iter_jsonl(doc.ref):
            key = hashlib.blake2b(normalize(row["text"], "lowercase").encode(), digest_size=16).digest()
            if key in seen:
                dropped["same passage in another document"] += 1
                continue
            seen.add(key)
            yield row


def assemble_corpus(chunked: list[ChunkedDoc], store: RunStore) -> Corpus:
    """The corpus's rows (corpus_rows), streamed into the store."""
    dropped: Counter = Counter()
    ref = store.put_jsonl("corpus", corpus_rows(chunked, dropped))
    return Corpus(ref=ref, chunks=ref.count, documents=len(chunked), dropped=dict(dropped))


@task(name="assemble-corpus", persist_result=False)
def assemble_corpus_task(chunked: list[ChunkedDoc], store_url: str) -> Corpus:
    """All chunks of all documents, duplicates across documents dropped."""
    return assemble_corpus(chunked, RunStore(store_url))
