"""Mine stage: positive-aware hard negatives (NV-Retriever TopK-PercPos) with the base model and FAISS."""

from __future__ import annotations

import math
import re
from typing import Callable, Optional, Sequence

import numpy as np
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from domain_embed.tasks.caching import code_and_inputs
from domain_embed.tasks.embed import embed_texts, model_fingerprint, resolve_model
from domain_embed.tasks.faiss_index import build_index, search
from domain_embed.tasks.faults import retry_if_transient
from domain_embed.tasks.settings import MineSettings
from domain_embed.tasks.store import Ref, RunStore, atomic_write, exists, read_json, read_jsonl, read_npy, stable_hash

EMBEDDINGS_VERSION = "1"  # bump when how chunks are embedded changes
QUANTILES = (5, 25, 50, 75, 95)


class IndexInfo(BaseModel):
    """Which FAISS index searched the corpus and how well it agrees with exact search."""

    type: str
    vectors: int
    dim: int
    gpu: bool
    k: int
    recall_at_k: float
    recall_queries: int


class ScoreQuantiles(BaseModel):
    """Cosine-score distribution: p5, p25, p50, p75, p95 (None when there are no scores)."""

    p5: Optional[float] = None
    p25: Optional[float] = None
    p50: Optional[float] = None
    p75: Optional[float] = None
    p95: Optional[float] = None


class MiningStats(BaseModel):
    """What mining found and what it refused, candidate by candidate."""

    pairs: int = 0
    pairs_missing_chunk: int = 0
    queries_with_all_negatives: int = 0
    queries_with_some_negatives: int = 0
    queries_without_negative: int = 0
    candidates_considered: int = 0
    rejected_positive: int = 0
    rejected_near_duplicate: int = 0
    rejected_same_document: int = 0
    rejected_false_negative: int = 0
    positive_scores: ScoreQuantiles = ScoreQuantiles()
    negative_scores: ScoreQuantiles = ScoreQuantiles()
    mean_margin: Optional[float] = None


class MiningResult(BaseModel):
    """References to the mined training rows and the embeddings behind them."""

    tuples: Ref
    pairs_without_negatives: Ref
    k: int
    index: Optional[IndexInfo] = None
    stats: MiningStats
    corpus_embeddings: Optional[Ref] = None
    query_embeddings: Optional[Ref] = None


def normalize_text(text: str) -> str:
    """Case-folded words joined by single spaces: two texts equal after this are duplicates."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def corpus_embeddings(corpus: Ref, model_dir: str, store: RunStore, batch_size: int = 64) -> Ref:
    """Embeddings of every chunk text in the corpus (float32 .npy), cached by (model fingerprint, corpus sha)."""
    key = stable_hash({"model": model_fingerprint(model_dir), "corpus": corpus.sha256, "version": EMBEDDINGS_VERSION})
    pointer = store.key_path("corpus-embeddings", key, ".json")
    if exists(pointer):
        ref = Ref.model_validate(read_json(pointer))
        if exists(ref.uri):
            return ref
    texts = [row["text"] for row in read_jsonl(corpus)]
    ref = store.put_npy("embeddings", embed_texts(model_dir, texts, batch_size=batch_size))
    atomic_write(pointer, ref.model_dump_json().encode())
    return ref


def _codes(values: Sequence[str]) -> np.ndarray:
    return np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)[1].astype(np.int64)


def _quantiles(scores: np.ndarray) -> ScoreQuantiles:
    if not scores.size:
        return ScoreQuantiles()
    values = np.percentile(scores, QUANTILES)
    return ScoreQuantiles(**{f"p{q}": round(float(v), 4) for q, v in zip(QUANTILES, values)})


def _check_unit(name: str, emb: np.ndarray) -> None:
    if emb.size and not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
        raise ValueError(f"{name} must be L2-normalised rows (scores are cosines)")


def select_negatives(
    query_emb: np.ndarray,
    chunk_emb: np.ndarray,
    positive_idx: Sequence[int],
    chunk_doc_ids: Sequence[str],
    chunk_norm_texts: Sequence[str],
    settings: MineSettings,
    *,
    query_texts: Optional[Sequence[str]] = None,
) -> tuple[np.ndarray, dict]:
    """Up to k hard negatives per query: neg_idx [n_q, k] (-1 where none) and stats.

    Candidates are the corpus ranks range_min..range_max (positives of the same query text not
    counted); a candidate is refused if it is such a positive, a near-duplicate of the positive
    (same normalised text or cosine >= near_duplicate_cosine), from the positive's document (when
    exclude_same_document), or scores >= positive - |positive| * (1 - max_score_ratio).
    Rows must be L2-normalised. Refusals are counted under the first of these rules that applies.
    """
    q, c = np.ascontiguousarray(query_emb, np.float32), np.ascontiguousarray(chunk_emb, np.float32)
    _check_unit("query_emb", q)
    _check_unit("chunk_emb", c)
    n_q, n_c, k = len(q), len(c), settings.negatives_per_query
    pos = np.asarray(positive_idx, dtype=np.int64)
    groups = _codes([normalize_text(t) for t in query_texts]) if query_texts is not None else np.arange(n_q)
    pos_keys = np.unique(groups * n_c + pos)
    most_positives = int(np.bincount(pos_keys // n_c).max()) if n_q else 1

    index, info = build_index(c, settings, queries=q)
    scores, ids = search(index, q, min(n_c, settings.range_max + most_positives))
    found = ids >= 0
    safe = np.where(found, ids, 0)
    is_pos = found & np.isin(groups[:, None] * n_c + safe, pos_keys)
    rank = np.cumsum(found & ~is_pos, axis=1) - 1
    window = found & ~is_pos & (rank >= settings.range_min) & (rank < settings.range_max)

    pos_score = np.einsum("ij,ij->i", q, c[pos])
    text_codes = _codes(chunk_norm_texts)
    dup = window & (text_codes[safe] == text_codes[pos][:, None])
    # Unit vectors with cos(x, p) >= t are within sqrt(2 - 2t) of p, so their score is at least
    # score(p) - sqrt(2 - 2t): only those candidates need the cosine computed.
    reach = math.sqrt(max(0.0, 2 - 2 * settings.near_duplicate_cosine)) + 1e-4
    rows, cols = np.nonzero(window & ~dup & (scores >= (pos_score - reach)[:, None]))
    close = np.einsum("ij,ij->i", c[safe[rows, cols]], c[pos[rows]]) >= settings.near_duplicate_cosine
    dup[rows[close], cols[close]] = True

    same_doc = np.zeros_like(window)
    if settings.exclude_same_document:
        doc_codes = _codes(chunk_doc_ids)
        same_doc = window & ~dup & (doc_codes[safe] == doc_codes[pos][:, None])
    threshold = pos_score - np.abs(pos_score) * (1 - settings.max_score_ratio)
    false_neg = window & ~dup & ~same_doc & (scores >= threshold[:, None])
    ok = window & ~dup & ~same_doc & ~false_neg

    order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(ok, order, axis=1)
    neg_idx = np.where(chosen, np.take_along_axis(ids, order, axis=1), -1)
    neg_scores = np.take_along_axis(scores, order, axis=1)
    found_per_query = chosen.sum(axis=1)
    margins = (pos_score[:, None] - neg_scores)[chosen]
    stats = {
        "index": info,
        "queries_with_all_negatives": int((found_per_query == k).sum()),
        "queries_with_some_negatives": int(((found_per_query > 0) & (found_per_query < k)).sum()),
        "queries_without_negative": int((found_per_query == 0).sum()) if k else 0,
        "candidates_considered": int(window.sum()),
        "rejected_positive": int(is_pos.sum()),
        "rejected_near_duplicate": int(dup.sum()),
        "rejected_same_document": int(same_doc.sum()),
        "rejected_false_negative": int(false_neg.sum()),
        "positive_scores": _quantiles(pos_score),
        "negative_scores": _quantiles(neg_scores[chosen]),
        "mean_margin": round(float(margins.mean()), 4) if margins.size else None,
    }
    return neg_idx, stats


def _no_progress(message: str) -> None:
    """Default progress sink: say nothing."""


def mine_hard_negatives(
    pairs: list[dict],
    chunks: list[dict],
    base_model_dir: str,
    settings: MineSettings,
    store: RunStore,
    progress: Callable[[str], None] = _no_progress,
) -> MiningResult:
    """Add k hard negatives from the whole corpus to each (query, chunk) pair; write n-tuples and leftover pairs.

    A pair's own `positive` text (a heading's section without the heading) replaces its chunk's text in the row.
    """
    row_of = {chunk["chunk_id"]: i for i, chunk in enumerate(chunks)}
    kept = [pair for pair in pairs if pair["chunk_id"] in row_of]
    corpus = store.put_jsonl("corpus", chunks)
    chunk_ref = corpus_embeddings(corpus, base_model_dir, store, batch_size=settings.embed_batch_size)
    progress(f"Corpus embeddings ready: {len(chunks)} chunks")
    queries = [pair["query"] for pair in kept]
    query_emb = embed_texts(base_model_dir, queries, batch_size=settings.embed_batch_size)
    query_ref = store.put_npy("query-embeddings", query_emb)
    progress(f"Embedded {len(kept)} queries ({len(pairs) - len(kept)} pairs name no corpus chunk)")
    positive_idx = [row_of[pair["chunk_id"]] for pair in kept]
    k = settings.negatives_per_query
    neg_idx, found = np.zeros((0, k), np.int64), {}
    if kept:
        neg_idx, found = select_negatives(
            query_emb,
            read_npy(chunk_ref),
            positive_idx,
            [chunk["doc_id"] for chunk in chunks],
            [normalize_text(chunk["text"]) for chunk in chunks],
            settings,
            query_texts=queries,
        )
    tuples, leftovers = [], []
    for pair, pos, negs in zip(kept, positive_idx, neg_idx):
        row = {"anchor": pair["query"], "positive": pair.get("positive") or chunks[pos]["text"]}
        if (negs >= 0).all():
            tuples.append(row | {f"negative_{j}": chunks[n]["text"] for j, n in enumerate(negs, start=1)})
        else:
            leftovers.append(row)
    info = found.pop("index", None)
    stats = MiningStats(pairs=len(pairs), pairs_missing_chunk=len(pairs) - len(kept), **found)
    return MiningResult(
        tuples=store.put_jsonl("mined-tuples", tuples),
        pairs_without_negatives=store.put_jsonl("mined-pairs", leftovers),
        k=k,
        index=IndexInfo.model_validate(info) if info else None,
        stats=stats,
        corpus_embeddings=chunk_ref,
        query_embeddings=query_ref,
    )


def report_rows(result: MiningResult) -> list[dict]:
    """The mining-report table: one (metric, value) row per figure."""
    stats, index = result.stats, result.index
    rows = [
        ("negatives per query (k)", result.k),
        ("index", f"{index.type} over {index.vectors} vectors{' on GPU' if index.gpu else ''}" if index else "none"),
        (f"index recall@{index.k if index else 0} vs exact", index.recall_at_k if index else None),
        ("pairs", stats.pairs),
        ("pairs naming no corpus chunk (dropped)", stats.pairs_missing_chunk),
        ("tuples written (all k negatives)", result.tuples.count),
        ("pairs written without negatives", result.pairs_without_negatives.count),
        ("queries with some but fewer than k negatives", stats.queries_with_some_negatives),
        ("queries with no negative", stats.queries_without_negative),
        ("candidates considered", stats.candidates_considered),
        ("rejected: positive of the same query", stats.rejected_positive),
        ("rejected: near-duplicate of the positive", stats.rejected_near_duplicate),
        ("rejected: same document", stats.rejected_same_document),
        ("rejected: false negative (score >= ratio x positive)", stats.rejected_false_negative),
        ("mean margin (positive - negative)", stats.mean_margin),
    ]
    for name, quantiles in (("positive", stats.positive_scores), ("negative", stats.negative_scores)):
        rows += [(f"{name} score {q}", v) for q, v in quantiles.model_dump().items()]
    return [{"metric": name, "value": "" if value is None else str(value)} for name, value in rows]


@task(name="mine", cache_policy=code_and_inputs("domain_embed.tasks.faiss_index", exclude=("base_model",)), persist_result=True, retries=1,
      retry_condition_fn=retry_if_transient)
def mine_task(
    train_pairs: Ref, corpus: Ref, base_model: str, settings: MineSettings, store_url: str, model_sha: str
) -> MiningResult:
    """Mine hard negatives for the train pairs; model_sha (model_fingerprint of the base model) keys the cache."""
    logger = get_run_logger()
    model_dir = resolve_model(base_model)
    if model_fingerprint(model_dir) != model_sha:
        raise ValueError(f"model_sha is not the fingerprint of {base_model}: pass model_fingerprint(resolve_model(name))")
    logger.info(
        "Mining %d negative(s) for %d train pairs over %d chunks",
        settings.negatives_per_query,
        train_pairs.count,
        corpus.count,
    )
    store = RunStore(store_url)
    result = mine_hard_negatives(
        read_jsonl(train_pairs), read_jsonl(corpus), model_dir, settings, store, progress=logger.info
    )
    if result.index:
        index = result.index
        logger.info("Index %s over %d chunks, recall@%d %.4f", index.type, index.vectors, index.k, index.recall_at_k)
    logger.info(
        "Mined %d tuples and %d pairs without negatives; refused %d false negatives, %d near-duplicates, %d same-document",
        result.tuples.count,
        result.pairs_without_negatives.count,
        result.stats.rejected_false_negative,
        result.stats.rejected_near_duplicate,
        result.stats.rejected_same_document,
    )
    create_table_artifact(key="mining-report", table=report_rows(result), description="Hard-negative mining")
    return result
