"""Retrieval metrics with sentence-transformers' IR evaluator: dense models per Matryoshka dim, and BM25."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..embedding.models import TORCH, Backend, load_model
from .bm25 import bm25_rankings

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100")
RRF_K = 60  # reciprocal-rank fusion's constant (Cormack et al., 2009): a passage scores 1 / (RRF_K + rank) per ranking
FUSED_DEPTH = 100  # each ranking's top passages that take part in the fusion
ENCODE_BLOCK = 8192  # passages embedded per encode call, written into one preallocated array
MAX_SCORE_CELLS = 1 << 25  # query x passage scores held at once while ranking (128 MiB of float32)


def check_dims(dims: Iterable[int], full: int, model: str) -> list[int]:
    """Distinct dims, largest first; a dim outside 1..full is a clear error."""
    checked = sorted({int(d) for d in dims}, reverse=True)
    if not checked:
        raise ValueError("no evaluation dimension given")
    bad = [d for d in checked if d < 1 or d > full]
    if bad:
        raise ValueError(f"dimension {bad[0]} is not available: model {model} has {full} dimensions")
    return checked


def embed_blocks(
    model, texts: list[str], batch_size: int, show_progress: bool = False, query: bool = False
) -> np.ndarray:
    """L2-normalised float32 passage (or query) embeddings, encoded block by block into one array."""
    encode = model.encode_query if query else model.encode_document
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    starts = range(0, len(texts), ENCODE_BLOCK)
    if show_progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="Embedding queries" if query else "Embedding passages", unit="block")
    for start in starts:
        block = texts[start : start + ENCODE_BLOCK]
        out[start : start + len(block)] = encode(
            block, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    return out


class _FixedQueries:
    """Stands in for the model in InformationRetrievalEvaluator.compute_all_metrics: queries embedded already."""

    def __init__(self, embeddings) -> None:
        self.embeddings = embeddings

    def encode_query(self, *args, **kwargs):
        return self.embeddings


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first dim components of each row, re-normalised to unit length."""
    head = np.array(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    head /= np.maximum(norms, 1e-12)
    return head


PerQuery = dict[int, dict[str, list[float]]]  # dim -> metric -> one value per query, in a fixed query order


def _ir_evaluator_class():
    """InformationRetrievalEvaluator that also keeps each query's metrics (the library's definitions, query by query)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class PerQueryEvaluator(InformationRetrievalEvaluator):
        per_query: list[dict] = []

        def compute_metrics(self, queries_result_list):
            ids, texts = self.queries_ids, self.queries
            per_query = []
            try:
                for qid, text, hits in zip(ids, texts, queries_result_list):
                    self.queries_ids, self.queries = [qid], [text]
                    per_query.append(super().compute_metrics([hits]))
            finally:
                self.queries_ids, self.queries = ids, texts
            self.per_query = per_query
            return super().compute_metrics(queries_result_list)

    return PerQueryEvaluator


def _metric_values(scores: dict) -> dict[str, float]:
    return {
        "ndcg@10": float(scores["ndcg@k"][10]),
        "mrr@10": float(scores["mrr@k"][10]),
        "recall@10": float(scores["recall@k"][10]),
        "recall@100": float(scores["recall@k"][100]),
        "map@100": float(scores["map@k"][100]),
    }


def ir_evaluator(corpus: dict[str, str], queries: dict[str, str], relevant: dict[str, set[str]], batch_size: int = 64):
    """The per-query IR evaluator over this corpus; a relevant id outside the corpus, or no judged query, is an error."""
    from sentence_transformers.util import cos_sim

    missing = next((cid for cids in relevant.values() for cid in cids if cid not in corpus), None)
    if missing is not None:
        raise ValueError(f"relevant passage id '{missing}' is not in the corpus")
    evaluator = _ir_evaluator_class()(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        corpus_chunk_size=min(50_000, max(1024, MAX_SCORE_CELLS // max(1, len(queries)))),
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, 100],
        map_at_k=[100],
        batch_size=batch_size,
        write_csv=False,
        score_functions={"cosine": cos_sim},
    )
    if not evaluator.queries:
        raise ValueError("no query has a relevant passage")
    return evaluator


def score_retrieval(
    model_dir: str,
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    batch_size: int = 64,
    show_progress: bool = False,
    model=None,
    passages: np.ndarray | None = None,
) -> tuple[dict[int, dict[str, float]], PerQuery]:
    """Metrics per dim and each query's metrics per dim: corpus and queries embedded once, truncated per dim.

    `model`: an already-loaded SentenceTransformer (e.g. one running on ONNX Runtime) used instead of loading model_dir;
    `passages`: the corpus's embeddings under this model, row i = the i-th passage of `corpus`, when they exist already."""
    import torch

    model = model if model is not None else load_model(model_dir)
    dims = check_dims(dims, model.get_embedding_dimension(), model_dir)
    evaluator = ir_evaluator(corpus, queries, relevant, batch_size)
    if passages is not None and len(passages) != len(evaluator.corpus):
        raise ValueError(f"{len(passages)} passage embeddings given for a corpus of {len(evaluator.corpus)} passages")
    full = passages if passages is not None else embed_blocks(model, evaluator.corpus, batch_size, show_progress)
    full_queries = embed_blocks(model, evaluator.queries, batch_size, show_progress, query=True)
    results: dict[int, dict[str, float]] = {}
    per_query: PerQuery = {}
    for dim in dims:
        passages = torch.from_numpy(truncate(full, dim)).to(model.device)
        queries_at_dim = _FixedQueries(torch.from_numpy(truncate(full_queries, dim)).to(model.device))
        results[dim] = _metric_values(
            evaluator.compute_all_metrics(queries_at_dim, corpus_embeddings=passages)["cosine"]
        )
        rows = [_metric_values(scores) for scores in evaluator.per_query]
        per_query[dim] = {metric: [row[metric] for row in rows] for metric in METRICS}
    return results, per_query


def top_passages(queries: np.ndarray, passages: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Top-k (passage index, cosine) per query for unit vectors, best first, queries taken in blocks."""
    rankings = []
    step = max(1, MAX_SCORE_CELLS // max(1, len(passages)))
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ passages.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rankings += [[(int(i), float(row[i])) for i in order] for row, order in zip(scores, top)]
    return rankings


def fuse(*rankings: list[list[tuple[int, float]]], k: int = RRF_K) -> list[list[tuple[int, float]]]:
    """Reciprocal-rank fusion per query: each ranking gives a passage 1 / (k + rank); best fused score first."""
    fused = []
    for per_query in zip(*rankings):
        scores: dict[int, float] = {}
        for ranking in per_query:
            for rank, (index, _) in enumerate(ranking, start=1):
                scores[index] = scores.get(index, 0.0) + 1.0 / (k + rank)
        fused.append(sorted(scores.items(), key=lambda item: (-item[1], item[0])))
    return fused


def score_hybrid(
    model_dir: str,
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    passages: np.ndarray | None = None,
    batch_size: int = 64,
    backend: Backend = TORCH,
) -> dict[int, dict[str, float]]:
    """Metrics per dim of the retrieval many RAG systems run: BM25 and the model, fused by reciprocal rank.
    `passages`: the corpus's embeddings under this model, row i = the i-th passage of `corpus`, when they exist."""
    model = load_model(model_dir, None, backend)
    evaluator = ir_evaluator(corpus, queries, relevant, batch_size)
    full = passages if passages is not None else embed_blocks(model, evaluator.corpus, batch_size)
    full_queries = embed_blocks(model, evaluator.queries, batch_size, query=True)
    lexical = bm25_rankings(evaluator.corpus, evaluator.queries, k=FUSED_DEPTH)
    results = {}
    for dim in check_dims(dims, full.shape[1], model_dir):
        dense = top_passages(truncate(full_queries, dim), truncate(full, dim), FUSED_DEPTH)
        hits = [[{"corpus_id": evaluator.corpus_ids[i], "score": s} for i, s in row] for row in fuse(dense, lexical)]
        results[dim] = _metric_values(evaluator.compute_metrics(hits))
    return results


def score_bm25(corpus: dict[str, str], queries: dict[str, str], relevant: dict[str, set[str]]) -> dict[str, float]:
    """The lexical baseline's metrics (BM25 has no dims), by the same evaluator as the dense models."""
    evaluator = ir_evaluator(corpus, queries, relevant)
    ranked = bm25_rankings(evaluator.corpus, evaluator.queries, k=100)
    hits = [[{"corpus_id": evaluator.corpus_ids[i], "score": score} for i, score in row] for row in ranked]
    return _metric_values(evaluator.compute_metrics(hits))
