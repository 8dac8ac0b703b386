"""report.md states what the run did: LLM calls made or answers reused, the model trained or taken from cache."""

from __future__ import annotations

import pytest

from domain_embed.tasks.publishing.run_report import render_markdown, what_ran
from domain_embed.tasks.settings import TrainSettings


def report(new_documents: bool, llm_calls: int, cache_hits: int, training_cached: bool) -> dict:
    """The parts of report.json that render_markdown reads, for a run with no evaluation."""
    return {
        "base_model": "all-MiniLM-L6-v2",
        "llm": "embedded",
        "matryoshka_dims": [384, 64],
        "new_documents": new_documents,
        "promotion": {"reason": "kept the current model"},
        "documents": {"found": 3, "parsed": 3, "train": 3, "eval": 0},
        "evaluation": {},
        "stages": [],
        "chunks_failed": [],
        "files": [],
        "training_cached": training_cached,
        "llm_usage": {
            "llm_calls": llm_calls,
            "cache_hits": cache_hits,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
        },
        "training": {"steps": 40, "examples": 320, "device": "cpu", "seconds": 12.0, "samples_per_second": 26.7},
    }


@pytest.mark.parametrize(
    "run, line",
    [
        (
            report(False, 31, 2, False),
            "**Same documents as the last run**: 31 LLM calls (2 chunks answered from cache); trained 40 steps.",
        ),
        (
            report(False, 0, 13, True),
            "**Same documents as the last run**: no LLM call (13 chunks answered from cache); training served from cache.",
        ),
        (report(True, 12, 13, False), "This run: 12 LLM calls (13 chunks answered from cache); trained 40 steps."),
    ],
)
def test_the_report_states_only_what_happened(run, line):
    markdown = render_markdown(run)
    assert what_ran(run).strip() == line and line in markdown
    assert "every stage was served from cache" not in markdown and "No new documents" not in markdown


def test_training_says_whether_this_run_took_it_from_cache(prefect_harness, store):
    from domain_embed.flows.train import train_embedder

    tuples = store.put_jsonl(
        "tuples",
        [
            {"anchor": f"what is item {i}", "positive": f"Item {i} is a thing.", "negative_1": "Other."}
            for i in range(8)
        ],
    )
    pairs = store.put_jsonl("pairs", [])
    settings = TrainSettings(epochs=1, batch_size=4, max_seq_length=16, evaluations=0)
    first = train_embedder(tuples, pairs, "all-MiniLM-L6-v2", settings, store.url)
    second = train_embedder(tuples, pairs, "all-MiniLM-L6-v2", settings, store.url)
    assert (first.cached, second.cached) == (False, True)
    assert second.model_copy(update={"cached": False}) == first


def test_the_report_says_why_bm25_wins_on_synthetic_questions_and_only_then():
    from domain_embed.tasks.publishing.report_tables import evaluation_tables

    evaluation = {
        "queries": 35,
        "passages": 500,
        "results": {
            "base": {"384": {"ndcg@10": 0.456, "mrr@10": 0.4, "recall@10": 0.7}},
            "tuned": {"384": {"ndcg@10": 0.483, "mrr@10": 0.42, "recall@10": 0.72}},
        },
        "intervals": {},
        "bm25": {"ndcg@10": 0.505, "mrr@10": 0.47, "recall@10": 0.74},
    }
    why = "BM25 beats the tuned model on these questions because the LLM wrote them from the passages and copies their words"
    assert why in evaluation_tables(evaluation, "synthetic")
    assert why not in evaluation_tables(evaluation, "user:faq")  # real questions: no excuse to make
    evaluation["bm25"]["ndcg@10"] = 0.40
    assert why not in evaluation_tables(evaluation, "synthetic")
