"""The lexical baseline: bm25s rankings scored by the same IR evaluator as the dense models, one row in every table."""

from __future__ import annotations

import math

import pytest

from domain_embed.tasks.evaluation.bm25 import bm25_rankings
from domain_embed.tasks.evaluation.retrieval import METRICS, score_bm25
from domain_embed.tasks.evaluation.tables import render_table, table_rows
from domain_embed.tasks.publishing.report_tables import bm25_rows, evaluation_section

CORPUS = {
    "apples": "Apples grow on apple trees in orchards.",
    "bananas": "Bananas are yellow and tropical.",
    "cherries": "Cherries and apples are both fruit.",
    "stopwords": "The of and the.",
}
QUERIES = {
    "q-bananas": "bananas",  # only the bananas passage has the word: rank 1
    "q-orchards": "Where are the orchards?",  # only the apples passage: rank 1
    "q-fruit": "fruit apples",  # cherries has both words, apples one: the relevant apples passage is rank 2
    "q-zebra": "zebra",  # no passage shares a word: nothing is retrieved
}
RELEVANT = {"q-bananas": {"bananas"}, "q-orchards": {"apples"}, "q-fruit": {"apples"}, "q-zebra": {"bananas"}}


def test_rankings_follow_shared_terms():
    passages, queries = list(CORPUS.values()), list(QUERIES.values())
    ranked = bm25_rankings(passages, queries, k=10)
    ids = [[list(CORPUS)[i] for i, _ in row] for row in ranked]
    assert ids == [["bananas"], ["apples"], ["cherries", "apples"], []]
    assert ranked[2][0][1] > ranked[2][1][1] > 0
    assert bm25_rankings(passages, ["the and of"], k=10) == [[]]  # stopwords only: no query left
    assert bm25_rankings(passages, ["fruit apples"], k=1) == [ranked[2][:1]]


def test_bm25_metrics_on_a_known_answer():
    metrics = score_bm25(CORPUS, QUERIES, RELEVANT)
    assert tuple(metrics) == METRICS
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 + 1 / math.log2(3) + 0) / 4)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 + 1 / 2 + 0) / 4)
    assert metrics["recall@10"] == pytest.approx(3 / 4)


def test_bm25_is_one_row_without_dims():
    metric = {m: 0.5 for m in METRICS}
    results = {"base": {384: metric, 64: metric}, "tuned": {384: {**metric, "ndcg@10": 0.75}, 64: metric}}
    bm25 = {**metric, "ndcg@10": 0.625}
    rows = table_rows(results, ["ndcg@10"], bm25=bm25)
    assert [(r["dim"], r["model"]) for r in rows][-1] == ("-", "bm25")
    assert sum(r["model"] == "bm25" for r in rows) == 1 and rows[-1]["NDCG@10"] == 0.625
    assert "| - | bm25 | 0.6250 |" in render_table(results, "t", ["ndcg@10"], bm25=bm25)
    evaluation = {"results": results, "bm25": bm25, "queries": 4, "passages": 4, "intervals": {}}
    (row,) = bm25_rows(evaluation)
    assert (row["model"], row["dim"], row["ndcg@10"]) == ("bm25 (lexical)", "-", 0.625)
    assert row["tuned - bm25 ndcg@10 at dim 384"] == "+0.1250"
    section = evaluation_section("synthetic", evaluation)
    assert "| bm25 (lexical) | - | 0.6250 | 0.5000 | 0.5000 | +0.1250 |" in section
    assert bm25_rows({**evaluation, "bm25": None}) == [] and "bm25" not in evaluation_section(
        "x", {**evaluation, "bm25": None}
    )
