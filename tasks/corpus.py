"""Assemble the corpus: every kept chunk of every document, identical passages kept once."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterator

from prefect import task
from pydantic import BaseModel

from domain_embed.tasks.chunk import ChunkedDoc
from domain_embed.tasks.embed import resolve_model
from domain_embed.tasks.mine import corpus_embeddings
from domain_embed.tasks.store import Ref, RunStore, iter_jsonl
from domain_embed.tasks.text import normalize


class Corpus(BaseModel):
    """All chunks of the run, and what was dropped while assembling them."""

    ref: Ref
    chunks: int
    documents: int
    dropped: dict[str, int]


def assemble_corpus(chunked: list[ChunkedDoc], store: RunStore) -> Corpus:
    """Concatenate documents' chunks in a stable order, streamed into the store; a passage seen in an earlier document is dropped.

    Memory holds one document's rows and a 16-byte digest per kept passage, not the corpus."""
    seen: set[bytes] = set()
    dropped: Counter = Counter()

    def kept_rows() -> Iterator[dict]:
        for doc in sorted(chunked, key=lambda d: d.sha256):
            for row in iter_jsonl(doc.ref):
                key = hashlib.blake2b(normalize(row["text"], "lowercase").encode(), digest_size=16).digest()
                if key in seen:
                    dropped["same passage in another document"] += 1
                    continue
                seen.add(key)
                yield row

    ref = store.put_jsonl("corpus", kept_rows())
    return Corpus(ref=ref, chunks=ref.count, documents=len(chunked), dropped=dict(dropped))


@task(name="assemble-corpus", persist_result=False)
def assemble_corpus_task(chunked: list[ChunkedDoc], store_url: str) -> Corpus:
    """All chunks of all documents, duplicates across documents dropped."""
    return assemble_corpus(chunked, RunStore(store_url))


@task(name="embed-corpus", persist_result=False, retries=1)
def embed_corpus_task(corpus: Ref, base_model: str, batch_size: int, store_url: str) -> Ref:
    """The corpus embedded with the base model (what mining searches), cached in the run store by corpus and model hash."""
    return corpus_embeddings(corpus, resolve_model(base_model), RunStore(store_url), batch_size=batch_size)
