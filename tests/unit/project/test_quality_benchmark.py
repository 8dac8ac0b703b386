"""The real-question benchmark's builder: FAQ headings become queries, answers passages, and no query text reaches training."""

from __future__ import annotations

import json

import pytest

from benchmarks.faq import debian as debian_faq

PAGE = """<html><body><div class="chapter"><div class="titlepage"><h1><a id="ch"></a>Chapter 3. Choosing</h1></div>
<div class="section"><div class="titlepage"><h2><a id="s3.1"></a>3.1. Which distribution is better for me?</h2></div>
<p>It depends on what you intend to do with the machine and how much breakage you accept.</p>
<div class="section"><div class="titlepage"><h3><a id="s3.1.1"></a>3.1.1. Can I change to testing later?</h3></div>
<p>Yes: edit the sources list and upgrade; see <a class="xref" href="#s3.2">Section 3.2, “How do I pin a package?”</a>.</p></div>
</div>
<div class="section"><div class="titlepage"><h2><a id="s3.2"></a>3.2. How do I pin a package?</h2></div>
<p>Give the package a priority in the preferences file of APT.</p></div>
<div class="section"><div class="titlepage"><h2><a id="s3.3"></a>3.3. Authors</h2></div><p>Written by volunteers.</p></div>
</div></body></html>"""
REFERENCE = """<html><body><div class="chapter"><div class="section"><div class="titlepage"><h2><a id="apt"></a>2.1. APT basics</h2></div>
<p>APT fetches packages. People often ask: how do I pin a package? The answer is the preferences file.</p></div></div></body></html>"""


@pytest.fixture
def built(tmp_path):
    faq, ref = tmp_path / "faq", tmp_path / "ref"
    faq.mkdir(), ref.mkdir()
    (faq / "choosing.en.html").write_text(PAGE)
    (ref / "ch02.en.html").write_text(REFERENCE)
    return debian_faq.build(faq, ref)


def test_questions_are_headings_and_their_answers_are_the_relevant_passages(built):
    assert built.queries == {
        "faq-choosing:s3.1": "Which distribution is better for me?",
        "faq-choosing:s3.1.1": "Can I change to testing later?",
    }
    assert built.relevant["faq-choosing:s3.1"] == [
        "faq-choosing:s3.1",
        "faq-choosing:s3.1.1",
    ]  # the answer and its sub-answers
    assert (
        "faq-choosing:s3.3" in built.passages and "ref-ch02:apt" in built.passages
    )  # non-questions and the reference: distractors
    faq_doc = built.documents["faq/choosing.md"]
    assert (
        "Which distribution" not in faq_doc and "It depends on what you intend" in faq_doc
    )  # answers without their headings
    assert "How do I pin" not in faq_doc  # a cross-reference keeps its number, not the quoted question


def test_a_question_that_a_training_document_contains_is_dropped_not_leaked(built):
    assert built.dropped_queries == {"faq-choosing:s3.2": "its text occurs in a shipped reference page"}
    assert debian_faq.leaked_queries(built.queries, built.documents) == []


def test_write_refuses_a_benchmark_whose_queries_leak_into_training_documents(built, tmp_path):
    built.queries["leak"] = "how do I pin a package"
    built.relevant["leak"] = ["faq-choosing:s3.2"]
    with pytest.raises(AssertionError, match="appear in training documents"):
        debian_faq.write(built, tmp_path / "out")


def test_write_lays_out_beir_folders_and_training_documents(built, tmp_path):
    counts = debian_faq.write(built, tmp_path / "out")
    assert counts["dev_queries"] + counts["test_queries"] == 2 and counts["passages"] == len(built.passages)
    for split in ("dev", "test"):
        folder = tmp_path / "out" / f"beir-{split}"
        corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
        assert {row["_id"] for row in corpus} == set(built.passages)
        assert (folder / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")
    assert sorted(p.name for p in (tmp_path / "out" / "docs").rglob("*") if p.is_file()) == [
        "ch02.en.html",
        "choosing.md",
    ]


def test_the_pooled_interval_is_a_paired_bootstrap_over_every_pooled_query():
    from benchmarks.faq.scores import DIMS, METRICS, figures, pooled
    from domain_embed.tasks.evaluation.uncertainty import paired_bootstrap

    def scores(per_query: list[float]) -> dict:
        return {dim: {m: per_query for m in METRICS} for dim in DIMS}

    tuned = {"perl": {"test": scores([1.0, 1.0, 0.0])}, "sqlite": {"test": scores([0.5, 0.25])}}
    base = {"perl": {"test": scores([0.0, 1.0, 0.0])}, "sqlite": {"test": scores([0.5, 0.75])}}
    assert pooled(tuned, "test")[384]["ndcg@10"] == [
        1.0,
        1.0,
        0.0,
        0.5,
        0.25,
    ]  # domain after domain, query after query
    pooled_figures = figures(pooled(tuned, "test"), pooled(base, "test"))["ndcg@10"]["384"]
    expected = paired_bootstrap([1.0, 1.0, 0.0, 0.5, 0.25], [0.0, 1.0, 0.0, 0.5, 0.75])
    assert (
        pooled_figures["delta"] == round(expected.delta, 4) == 0.1
    )  # (1 - 0.5) / 5 queries, not a mean of domain means
    assert (pooled_figures["delta_low"], pooled_figures["delta_high"]) == (
        round(expected.low, 4),
        round(expected.high, 4),
    )
    assert figures(tuned["perl"]["test"], base["perl"]["test"])["ndcg@10"]["384"]["delta"] == round(1 / 3, 4)


def test_a_rows_gap_to_the_main_row_is_paired_per_query_on_each_split():
    from benchmarks.faq.scores import DIMS, METRICS, paired_gap

    def scores(test: list[float], dev: list[float]) -> dict:
        return {split: {dim: {m: v for m in METRICS} for dim in DIMS} for split, v in (("test", test), ("dev", dev))}

    oracle = {"perl": scores([1.0, 0.5, 0.5], [0.5]), "git": scores([1.0], [0.0, 1.0])}
    main = {"perl": scores([0.5, 0.5, 0.5], [0.5]), "git": scores([0.0], [1.0, 1.0])}
    gap = paired_gap(oracle, main)
    assert gap["test"]["ndcg@10"]["384"]["delta"] == 0.375  # (0.5 + 1.0) / 4 pooled test queries
    assert gap["dev"]["ndcg@10"]["64"]["delta"] == round(-1 / 3, 4)
    assert gap["test"]["ndcg@10"]["384"]["base"] == 0.375  # "base" is the other row's model


def test_the_oracle_answers_a_chunk_with_the_human_questions_about_it_and_refuses_the_rest():
    import urllib.error
    import urllib.request

    from benchmarks.faq.oracle import OracleLLM
    from benchmarks.quality import oracle_llm_settings
    from domain_embed.tasks.settings import LLMSettings

    passage = "Give the package a priority in the preferences file of APT and it stays at that version."
    queries = {"q1": "How do I pin a package?", "q2": "Which distribution is better for me?"}
    relevant = {"q1": ["p1"], "q2": ["p2"]}
    passages = {"p1": passage, "p2": "It depends on what you intend to do with the machine and how much you accept."}

    def ask(api_base: str, chunk: str) -> tuple[int, dict]:
        prompt = f"Write 2 different questions about this passage.\n<passage>\nIntro words. {chunk}\n</passage>"
        body = json.dumps({"model": "oracle", "messages": [{"role": "user", "content": prompt}]}).encode()
        request = urllib.request.Request(f"{api_base}/chat/completions", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with OracleLLM(queries, relevant, passages) as oracle:
        status, answer = ask(oracle.api_base, passage)
        assert status == 200
        assert json.loads(answer["choices"][0]["message"]["content"]) == {"questions": ["How do I pin a package?"]}
        assert ask(oracle.api_base, "Nothing in this chunk was ever asked about by anyone at all.")[0] == 400
        settings = LLMSettings(**oracle_llm_settings({"llm": {"temperature": 0.2}}, oracle.api_base))
    assert (oracle.answered, oracle.refused) == (1, 1)
    assert settings.temperature == 0.2 and settings.api_base == oracle.api_base
    assert settings.requests_per_minute >= 100_000  # a local server: no client-side rate limit


def test_a_variant_sets_its_fields_over_the_config_group_by_group():
    from benchmarks.quality import merged

    config = {"mine": {"negatives_per_query": 0}, "train": {"epochs": 0.29, "seed": 1}}
    variant = merged(config, {"train": {"bf16": True, "seed": 2}, "base_model": "x"})
    assert variant == {
        "mine": {"negatives_per_query": 0},
        "train": {"epochs": 0.29, "seed": 2, "bf16": True},
        "base_model": "x",
    }
    assert config["train"] == {"epochs": 0.29, "seed": 1}  # the main row's config is left as it was
