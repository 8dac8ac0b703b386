"""The hybrid row: BM25 and the tuned model fused by reciprocal rank, as many RAG systems retrieve."""

from __future__ import annotations

import numpy as np
import pytest

from domain_embed.tasks.evaluation.evaluate import evaluate_pairs
from domain_embed.tasks.evaluation.retrieval import RRF_K, fuse, score_hybrid, top_passages
from domain_embed.tasks.evaluation.tables import table_rows
from domain_embed.tasks.publishing.report_tables import evaluation_tables, hybrid_rows


def test_fusion_adds_one_over_k_plus_rank_from_each_ranking():
    dense = [[(0, 0.9), (1, 0.8), (2, 0.1)]]
    lexical = [[(2, 5.0), (0, 3.0)]]
    (fused,) = fuse(dense, lexical)
    assert [index for index, _ in fused] == [0, 2, 1]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert fused[1][1] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fused[2][1] == pytest.approx(1 / (RRF_K + 2))
    assert fuse([[]], [[]]) == [[]]  # a query no ranking found anything for


def test_top_passages_are_the_highest_cosines_best_first():
    passages = np.eye(4, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert top_passages(queries, passages, 2) == [
        [(1, pytest.approx(0.9)), (2, pytest.approx(0.3))],
        [(0, 1.0), (1, 0.0)],
    ]


ROWS = [
    {
        "chunk_id": "wal",
        "doc_id": "a",
        "text": "The WAL, write-ahead log, records changes before data pages are written.",
    },
    {"chunk_id": "vac", "doc_id": "b", "text": "VACUUM reclaims storage occupied by dead tuples in a table."},
    {"chunk_id": "idx", "doc_id": "c", "text": "A partial index covers only the rows that satisfy its predicate."},
]
PAIRS = [
    {"query": "what does VACUUM reclaim", "chunk_id": "vac"},
    {"query": "partial index predicate", "chunk_id": "idx"},
]


def test_the_hybrid_row_is_scored_at_the_full_and_smallest_dim_and_shown(base_model_dir):
    report = evaluate_pairs({"base": base_model_dir, "tuned": base_model_dir}, PAIRS, ROWS, [384, 128, 64])
    assert sorted(report.hybrid) == [64, 384]
    assert all(0 < values["ndcg@10"] <= 1 for values in report.hybrid.values())
    direct = score_hybrid(
        base_model_dir, {r["chunk_id"]: r["text"] for r in ROWS}, {"q0": PAIRS[0]["query"]}, {"q0": {"vac"}}, [384]
    )
    assert direct[384]["ndcg@10"] == pytest.approx(1.0)  # both rankings put the answer first
    rows = [r for r in table_rows(report.results, hybrid=report.hybrid) if r["model"] == "bm25 + tuned (RRF)"]
    assert [r["dim"] for r in rows] == [384, 64]
    shown = report.model_dump(mode="json")
    assert [r["dim"] for r in hybrid_rows(shown)] == [384, 64] and "reciprocal rank" in evaluation_tables(
        shown, "synthetic"
    )
