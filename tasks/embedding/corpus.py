"""The corpus embedded by a model, once per (corpus, model, code): what mining, the round-trip filter and the
evaluation read instead of embedding the same passages again."""

from __future__ import annotations

from contextlib import closing

from prefect import task

from ..core.caching import source_hash
from ..core.objects import Ref, intact, iter_jsonl, stable_hash
from ..core.store import RunStore, put_record, read_record
from .models import embed_stream, model_dimension, model_fingerprint, resolve_model


def corpus_embeddings(corpus: Ref, model_dir: str, store: RunStore, batch_size: int = 64) -> Ref:
    """Embeddings of every chunk text in the corpus (float32 .npy), cached by (model fingerprint, corpus sha)."""
    key = stable_hash({"model": model_fingerprint(model_dir), "corpus": corpus.sha256, "code": source_hash(__name__)})
    pointer = store.key_path("corpus-embeddings", key, ".json")
    record = read_record(pointer)
    if record is not None:
        ref = Ref.model_validate(record)
        if intact(ref):
            return ref
    with closing(iter_jsonl(corpus)) as rows:
        vectors = embed_stream(model_dir, (row["text"] for row in rows), batch_size=batch_size)
        ref = store.put_npy_stream("embeddings", corpus.count, vectors, empty_dim=model_dimension(model_dir))
    put_record(pointer, ref.model_dump(mode="json"))
    return ref


@task(name="embed-corpus", persist_result=False, retries=1)
def embed_corpus_task(corpus: Ref, base_model: str, batch_size: int, store_url: str) -> Ref:
    """The corpus embedded with the base model (what mining searches), cached in the run store by corpus and model hash."""
    return corpus_embeddings(corpus, resolve_model(base_model), RunStore(store_url), batch_size=batch_size)
