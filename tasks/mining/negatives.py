"""Choose hard negatives among each query's nearest chunks: positive-aware rules (NV-Retriever TopK-PercPos)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from ..core.text import normalize
from ..embedding.faiss_index import build_index, search
from ..settings import MineSettings

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

    p5: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    p95: float | None = None


class SelectionCounts(BaseModel):
    """What negative selection found and refused, candidate by candidate."""

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
    mean_margin: float | None = None


class NegativeStats(SelectionCounts):
    """The selection's counts and the index it searched."""

    index: IndexInfo | None = None


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
    query_texts: Sequence[str] | None = None,
) -> tuple[np.ndarray, NegativeStats]:
    """Up to k hard negatives per query: neg_idx [n_q, k] (-1 where none) and what was found and refused.

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
    groups = _codes([normalize(t) for t in query_texts]) if query_texts is not None else np.arange(n_q)
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
    stats = NegativeStats(
        index=IndexInfo.model_validate(info),
        queries_with_all_negatives=int((found_per_query == k).sum()),
        queries_with_some_negatives=int(((found_per_query > 0) & (found_per_query < k)).sum()),
        queries_without_negative=int((found_per_query == 0).sum()) if k else 0,
        candidates_considered=int(window.sum()),
        rejected_positive=int(is_pos.sum()),
        rejected_near_duplicate=int(dup.sum()),
        rejected_same_document=int(same_doc.sum()),
        rejected_false_negative=int(false_neg.sum()),
        positive_scores=_quantiles(pos_score),
        negative_scores=_quantiles(neg_scores[chosen]),
        mean_margin=round(float(margins.mean()), 4) if margins.size else None,
    )
    return neg_idx, stats
