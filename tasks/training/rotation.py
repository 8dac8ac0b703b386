"""Matryoshka head start: rotate a model's output space so its leading dimensions carry the most corpus variance.

The rotation is the principal axes of the corpus embeddings (PCA), applied as an orthogonal, bias-free Dense layer
before the final normalisation: full-dimension cosine scores are unchanged, while truncated embeddings keep the
directions along which the user's passages differ most.
"""

from __future__ import annotations

import numpy as np


def principal_axes(embeddings: np.ndarray) -> np.ndarray:
    """Orthogonal matrix (dim x dim) whose rows are the principal axes of the embeddings, largest variance first."""
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(f"need at least 2 embeddings to find principal axes (got shape {embeddings.shape})")
    centered = embeddings.astype(np.float64) - embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=True)
    return vt.astype(np.float32)


def with_rotation(model, texts: list[str], batch_size: int = 64):
    """A model with the principal-axes rotation of its embeddings of `texts` inserted before its Normalize module, and
    the rotated model's unit embeddings of `texts` (the same vectors it gives them, without embedding them again)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    axes = principal_axes(vectors)
    dim = axes.shape[0]
    modules = list(model)
    cut = next((i for i, m in enumerate(modules) if isinstance(m, Normalize)), len(modules))
    rotation = Dense(dim, dim, bias=False, activation_function=torch.nn.Identity(), init_weight=torch.from_numpy(axes))
    rotated = SentenceTransformer(modules=[*modules[:cut], rotation, *modules[cut:]], device=str(model.device))
    rotated.max_seq_length = model.max_seq_length
    return rotated, np.ascontiguousarray(vectors @ axes.T, dtype=np.float32)
