"""Embedding models: resolve and load them (a folder, packaged, or a Hub id), embed texts, the corpus's embeddings once per
model, FAISS indexes.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .backend import choose_backend, choose_backend_task
    from .corpus import corpus_embeddings, embed_corpus_task, keep_corpus_embeddings, stored_corpus_embeddings
    from .hub import hub_revision
    from .models import (
        ModelNotFound,
        default_matryoshka_dims,
        embed_texts,
        load_model,
        max_seq_length,
        model_dimension,
        model_fingerprint,
        model_source,
        resolve_model,
    )

EXPORTS = {
    "choose_backend": "backend",
    "choose_backend_task": "backend",
    "hub_revision": "hub",
    "ModelNotFound": "models",
    "corpus_embeddings": "corpus",
    "default_matryoshka_dims": "models",
    "embed_corpus_task": "corpus",
    "embed_texts": "models",
    "keep_corpus_embeddings": "corpus",
    "load_model": "models",
    "max_seq_length": "models",
    "model_dimension": "models",
    "model_fingerprint": "models",
    "model_source": "models",
    "resolve_model": "models",
    "stored_corpus_embeddings": "corpus",
}
__all__ = [
    "choose_backend",
    "choose_backend_task",
    "hub_revision",
    "ModelNotFound",
    "corpus_embeddings",
    "default_matryoshka_dims",
    "embed_corpus_task",
    "embed_texts",
    "keep_corpus_embeddings",
    "load_model",
    "max_seq_length",
    "model_dimension",
    "model_fingerprint",
    "model_source",
    "resolve_model",
    "stored_corpus_embeddings",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
