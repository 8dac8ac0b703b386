"""The corpus embedded by a model, once per (corpus, model, code): what mining, the round-trip filter and the
evaluation read instead of embedding the same passages again."""

from __future__ import annotations

from contextlib import closing

import numpy as np
from prefect import task

from ..core.caching import source_hash
from ..core.objects import Ref, intact, iter_jsonl, stable_hash
from ..core.store import RunStore, put_record, read_record
from .models import Backend, embed_stream, model_dimension, model_fingerprint, resolve_model


def _pointer(corpus: Ref, fingerprint: str, store: RunStore) -> str:
    """Where the record of the corpus's embeddings under the model with this fingerprint lives. The key holds no
    backend: both offered (PyTorch and ONNX Runtime, fp32) give the same vectors (backend.SAME_COSINE), so either's
    embeddings, and the rotation's, serve every stage."""
    key = stable_hash({"model": fingerprint, "corpus": corpus.sha256, "code": source_hash(__name__)})
    return store.key_path("corpus-embeddings", key, ".json")


def _intact_at(pointer: str) -> Ref | None:
    """The embeddings a record points to, if the record and the embeddings are intact."""
    record = read_record(pointer)
    ref = Ref.model_validate(record) if record is not None else None
    return ref if ref is not None and intact(ref) else None


def stored_corpus_embeddings(corpus: Ref, model_dir: str, store: RunStore) -> Ref | None:
    """The corpus's embeddings under this model if the store holds them intact, else None (nothing is computed)."""
    return _intact_at(_pointer(corpus, model_fingerprint(model_dir), store))


def corpus_embeddings(
    corpus: Ref, model_dir: str, store: RunStore, batch_size: int = 64, backend: str = "torch"
) -> Ref:
    """Embeddings of every chunk text in the corpus (float32 .npy), cached by (model fingerprint, corpus sha)."""
    pointer = _pointer(corpus, model_fingerprint(model_dir), store)
    stored = _intact_at(pointer)
    if stored is not None:
        return stored
    with closing(iter_jsonl(corpus)) as rows:
        texts = (row["text"] for row in rows)
        vectors = embed_stream(model_dir, texts, batch_size=batch_size, backend=Backend(backend, store.url))
        ref = store.put_npy_stream("embeddings", corpus.count, vectors, empty_dim=model_dimension(model_dir))
    put_record(pointer, ref.model_dump(mode="json"))
    return ref


def keep_corpus_embeddings(corpus: Ref, fingerprint: str, vectors: np.ndarray, store: RunStore) -> Ref:
    """Store embeddings of the corpus computed elsewhere (the rotation's, after training) as the model's, so later
    stages read them instead of embedding the corpus again."""
    if len(vectors) != corpus.count:
        raise ValueError(f"{len(vectors)} embeddings for a corpus of {corpus.count} chunks")
    ref = store.put_npy("embeddings", np.ascontiguousarray(vectors, dtype=np.float32))
    put_record(_pointer(corpus, fingerprint, store), ref.model_dump(mode="json"))
    return ref


@task(name="embed-corpus", persist_result=False, retries=1)
def embed_corpus_task(corpus: Ref, base_model: str, batch_size: int, store_url: str, backend: str = "torch") -> Ref:
    """The corpus embedded with the base model (what mining searches), cached in the run store by corpus and model hash."""
    return corpus_embeddings(corpus, resolve_model(base_model), RunStore(store_url), batch_size, backend)
