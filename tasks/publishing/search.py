"""Search a run's published index with its tuned model and, beside it, the base model the run started from."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import faiss
import numpy as np

from ..core.objects import read_jsonl, sha256_file, stable_hash
from ..core.store import atomic_write
from ..embedding.models import embed_texts, load_model, model_fingerprint, resolve_model
from ..evaluation.retrieval import truncate
from .run_folder import RunFolder, RunFolderError, open_run


@dataclass
class Hit:
    """One retrieved passage: rank, cosine score, the file it came from, its section and text."""

    rank: int
    score: float
    file: str
    section: str
    text: str
    chunk_id: str


@dataclass
class SearchResult:
    """Both models' hits for one query, with what they were searched with."""

    query: str
    dim: int
    passages: int
    base_model: str
    tuned: list[Hit]
    base: list[Hit]


def base_index(run: RunFolder, base_dir: str, chunks: list[dict]) -> faiss.Index:
    """The chunks embedded by the base model, built once and kept beside the published index (index/base-<key>.faiss)."""
    key = stable_hash({"model": model_fingerprint(base_dir), "chunks": sha256_file(run.index_dir / "chunks.jsonl")})[
        :16
    ]
    path = run.index_dir / f"base-{key}.faiss"
    if path.is_file():
        return faiss.read_index(str(path))
    print(f"Embedding {len(chunks)} passages with the base model once (kept in {path})", file=sys.stderr)
    vectors = embed_texts(base_dir, [row["text"] for row in chunks], batch_size=64)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    for stale in run.index_dir.glob("base-*.faiss"):
        stale.unlink()
    atomic_write(str(path), faiss.serialize_index(index).tobytes())
    return index


def top_hits(index: faiss.Index, query: np.ndarray, dim: int, k: int, chunks: list[dict]) -> list[Hit]:
    """The k best chunks for one L2-normalised query vector, both truncated to `dim` and re-normalised."""
    k = min(k, index.ntotal)
    if dim == index.d:
        scores, ids = index.search(query[None, :], k)
    else:
        vectors = truncate(index.reconstruct_n(0, index.ntotal), dim)
        scores, ids = faiss.knn(truncate(query[None, :], dim), vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return [
        Hit(
            rank=rank,
            score=float(score),
            file=chunks[i].get("document", chunks[i]["doc_id"]),
            section=chunks[i].get("section") or "",
            text=chunks[i]["text"],
            chunk_id=chunks[i]["chunk_id"],
        )
        for rank, (score, i) in enumerate(zip(scores[0], ids[0]), start=1)
        if i >= 0
    ]


def embed_query(model_dir: str, query: str) -> np.ndarray:
    """The query's L2-normalised embedding (the model's query prompt, if it has one)."""
    model = load_model(model_dir)
    return model.encode_query([query], convert_to_numpy=True, normalize_embeddings=True)[0].astype(np.float32)


def search_run(
    run_dir: str, query: str, k: int = 5, dim: int | None = None, base_model: str | None = None
) -> SearchResult:
    """Top-k passages of the run's index for its tuned model and for the base model, both at `dim` (default: all)."""
    if not query.strip():
        raise ValueError("the query is empty")
    if k < 1:
        raise ValueError(f"--k must be at least 1, got {k}")
    run = open_run(run_dir, model=True, index=True)
    tuned_index = faiss.read_index(str(run.index_dir / "index.faiss"))
    dim = tuned_index.d if dim is None else dim
    if not 1 <= dim <= tuned_index.d:
        raise ValueError(f"--dim {dim} is not available: the index has {tuned_index.d} dimensions")
    base_name = base_model or run.report.get("base_model")
    if not base_name:
        raise RunFolderError(f"{run.root / 'report.json'} names no base_model: give --base-model")
    base_dir = resolve_model(base_name)
    chunks = read_jsonl(str(run.index_dir / "chunks.jsonl"))
    if len(chunks) != tuned_index.ntotal:
        raise RunFolderError(f"{run.index_dir}: chunks.jsonl has {len(chunks)} rows for {tuned_index.ntotal} vectors")
    base = base_index(run, base_dir, chunks)
    if base.d < dim:
        raise ValueError(f"--dim {dim} is not available: base model {base_name} has {base.d} dimensions")
    return SearchResult(
        query=query,
        dim=dim,
        passages=len(chunks),
        base_model=base_name,
        tuned=top_hits(tuned_index, embed_query(str(run.model_dir.resolve()), query), dim, k, chunks),
        base=top_hits(base, embed_query(base_dir, query), dim, k, chunks),
    )
