"""Worked examples from the domain: the corpus's own section headings over their sections' text."""

from __future__ import annotations

from domain_embed.tasks.questions.prompts import (
    EXAMPLE_PASSAGE,
    build_messages,
    domain_examples,
    prompt_fingerprint,
    single_messages,
)
from domain_embed.tasks.settings import LLMSettings

WORDS = "the planner estimates how many rows each step returns and picks the cheapest plan it finds " * 6


def chunk(doc: str, section: str, n: int) -> dict:
    return {"chunk_id": f"{doc}-{n}", "doc_id": doc, "section": section, "text": f"{section}\n{WORDS}"}


CHUNKS = [
    chunk("d1", "How does the planner pick a join order?", 0),
    chunk("d1", "How does the planner pick a join order?", 1),
    chunk("d1", "Statistics used by the planner", 2),
    chunk("d2", "Vacuum and dead row versions", 0),
    chunk("d2", "Notes", 1),
    chunk("d3", "WAL", 0),
    chunk("d3", "2.1 Reading an EXPLAIN plan", 1),
]


def test_examples_are_headings_of_three_words_or_more_over_their_sections_one_per_document_first():
    examples = domain_examples(CHUNKS, 3)
    queries = [q for q, _ in examples]
    assert len(examples) == 3 and len(set(queries)) == 3
    assert set(queries) <= {
        "How does the planner pick a join order?",
        "Statistics used by the planner",
        "Vacuum and dead row versions",
        "Reading an EXPLAIN plan",
    }
    assert "Notes" not in queries and "WAL" not in queries  # generic, or shorter than 3 words
    docs = {next(c["doc_id"] for c in CHUNKS if q in c["section"]) for q in queries}
    assert docs == {"d1", "d2", "d3"}  # one per document while other documents have one
    assert all(q not in p and len(p.split()) == 60 for q, p in examples)  # the heading cut out, the passage cut short
    assert domain_examples(CHUNKS, 3) == examples and domain_examples(CHUNKS, 0) == []
    assert len(domain_examples(CHUNKS, 8)) == 4


def test_the_prompts_show_the_examples_instead_of_the_fixed_one():
    examples = domain_examples(CHUNKS, 2)
    json_messages = build_messages("the passage", "", 3, examples)
    assert len(json_messages) == 2 and all(q in json_messages[0]["content"] for q, _ in examples)
    assert EXAMPLE_PASSAGE not in json_messages[0]["content"] and "the passage" in json_messages[1]["content"]
    assert (
        EXAMPLE_PASSAGE in build_messages("the passage", "", 3)[1]["content"]
    )  # no example from the corpus: the fixed one
    single = single_messages("the passage", examples)
    assert [m["role"] for m in single] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in single[1:4:2]] == [q for q, _ in examples] and "the passage" in single[-1]["content"]


def test_the_cache_key_follows_how_many_examples_not_which():
    assert prompt_fingerprint(LLMSettings(few_shot=8)) != prompt_fingerprint(LLMSettings(few_shot=0))
    assert prompt_fingerprint(LLMSettings(few_shot=8, model="gpt-4o-mini")).startswith("json-")
    assert prompt_fingerprint(LLMSettings()) == prompt_fingerprint(LLMSettings(few_shot=0))
