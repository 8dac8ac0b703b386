"""Chunking with the base model's tokenizer, corpus assembly and the document split."""

from __future__ import annotations

from conftest import FIXTURES

from domain_embed.tasks.core.objects import Ref, read_jsonl, sha256_file
from domain_embed.tasks.ingest.chunk import (
    NO_WORDS,
    ChunkedDoc,
    chunk_document,
    chunk_records,
    load_tokenizer,
    no_chunk_reason,
)
from domain_embed.tasks.ingest.corpus import assemble_corpus
from domain_embed.tasks.ingest.parse import parse_document
from domain_embed.tasks.questions.split import assign_eval_docs, split_pairs
from domain_embed.tasks.settings import ChunkSettings, ParseSettings, SplitSettings


def parsed(name, store):
    path = FIXTURES / "docs" / name
    return parse_document(str(path), sha256_file(path), path.suffix, ParseSettings(), store)


def test_chunks_fit_the_token_budget_and_keep_sections(store, base_model_dir):
    doc = parsed("tutorial-agg.txt", store)
    settings = ChunkSettings(chunk_tokens=64, overlap_tokens=8, min_tokens=10)
    result = chunk_document(doc.ref, doc.sha256, settings, base_model_dir, 256, store)
    rows = read_jsonl(result.ref)
    tokenizer = load_tokenizer(base_model_dir)
    assert result.chunks == len(rows) >= 8
    assert all(len(tokenizer.tokenize(r["text"])) <= 64 for r in rows)
    assert all(r["n_tokens"] >= 10 for r in rows)
    assert all(r["doc_id"] == doc.sha256[:16] for r in rows)
    assert len({r["chunk_id"] for r in rows}) == len(rows)


def test_chunk_size_is_capped_by_model_max_length(store, base_model_dir):
    doc = parsed("wal-intro.html", store)
    rows, _ = chunk_records(
        read_jsonl(doc.ref), "d" * 16, ChunkSettings(chunk_tokens=1000), base_model_dir, max_tokens=100
    )
    assert max(r["n_tokens"] for r in rows) <= 98


def test_short_pieces_are_dropped_with_a_reason(base_model_dir):
    records = [{"text": "Heading", "category": "Title", "page": None, "section": "Heading"}]
    rows, dropped = chunk_records(records, "d" * 16, ChunkSettings(min_tokens=20), base_model_dir, 256)
    assert rows == [] and dropped == {"shorter than 20 tokens": 1}


def test_corpus_keeps_a_passage_once(store, base_model_dir):
    doc = parsed("tutorial-inheritance.md", store)
    chunked = chunk_document(doc.ref, doc.sha256, ChunkSettings(), base_model_dir, 256, store)
    twin = chunked.model_copy(update={"sha256": "f" * 64})
    corpus = assemble_corpus([chunked, twin], store)
    assert corpus.chunks == chunked.chunks
    assert corpus.dropped == {"same passage in another document": chunked.chunks}


def test_split_never_puts_a_document_on_two_sides(store):
    rows = [{"query": f"q{i}", "chunk_id": f"c{i}", "doc_id": f"doc{i % 10}"} for i in range(100)]
    result = split_pairs(store.put_jsonl("pairs", rows), SplitSettings(eval_fraction=0.3), store)
    sides = [{r["doc_id"] for r in read_jsonl(ref)} for ref in (result.train, result.val, result.eval)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert result.train.count + result.val.count + result.eval.count == 100
    assert (
        set(result.train_docs) == sides[0] and set(result.val_docs) == sides[1] and set(result.eval_docs) == sides[2]
    )


def test_training_documents_keep_their_best_questions_held_out_ones_their_first(store):
    rows = [
        {"query": f"q{d}-{k}", "chunk_id": f"c{d}", "doc_id": f"doc{d}", "candidate": k, "base_rank": 3 - k}
        for d in range(10)
        for k in range(4)
    ]
    result = split_pairs(store.put_jsonl("pairs", rows), SplitSettings(eval_fraction=0.3), store, per_chunk=2)
    assert {r["candidate"] for r in read_jsonl(result.train)} == {2, 3}  # lowest round-trip rank
    assert {r["candidate"] for r in read_jsonl(result.eval)} == {0, 1}  # unbiased: the first asked
    kept = result.train.count + result.val.count + result.eval.count
    assert kept == 20 and sum(result.dropped.values()) == 20


def test_adding_a_document_does_not_move_the_others():
    settings = SplitSettings(eval_fraction=0.25)
    docs = [f"{i:016x}" for i in range(40)]
    before = assign_eval_docs(docs, settings)
    after = assign_eval_docs(docs + ["ffffffffffffffff"], settings)
    assert before == after - {"ffffffffffffffff"}


def test_round_trip_rule_applies_to_training_pairs_only(store):
    rows = [{"query": f"q{i}", "chunk_id": f"c{i}", "doc_id": f"doc{i % 10}", "base_rank": i % 7} for i in range(100)]
    result = split_pairs(store.put_jsonl("pairs", rows), SplitSettings(eval_fraction=0.3), store, roundtrip_top_k=5)
    train, evals = read_jsonl(result.train), read_jsonl(result.eval)
    assert all(r["base_rank"] < 5 for r in train)
    assert any(r["base_rank"] >= 5 for r in evals)
    assert (
        result.dropped["round-trip miss (training pairs only)"] == 100 - len(evals) - len(train) - result.val.count > 0
    )


def test_a_long_text_without_spaces_is_chunked_within_budget_and_fully_covered(base_model_dir):
    text = ",".join(f"term{i}" for i in range(6000))  # 53 kB, one 'word': the splitter falls back to characters
    records = [{"text": text, "category": "NarrativeText", "page": None, "section": ""}]
    rows, dropped = chunk_records(
        records, "d" * 16, ChunkSettings(chunk_tokens=64, overlap_tokens=8, min_tokens=4), base_model_dir, 256
    )
    assert rows and not dropped
    assert all(r["n_tokens"] <= 64 for r in rows)
    covered = 0
    for row in rows:  # in order, each piece starts inside the text covered so far
        start = text.index(row["text"], max(0, covered - len(row["text"])))
        assert start <= covered
        covered = max(covered, start + len(row["text"]))
    assert covered == len(text)


def test_text_without_words_gives_no_chunk_and_says_why(base_model_dir):
    records = [
        {"text": "😀🎉🚀 " * 40 + "\n\n" + "🎉" * 3000, "category": "NarrativeText", "page": None, "section": ""}
    ]
    rows, dropped = chunk_records(records, "d" * 16, ChunkSettings(), base_model_dir, 256)
    assert rows == [] and set(dropped) == {NO_WORDS}
    reason = no_chunk_reason(
        ChunkedDoc(sha256="e" * 64, ref=Ref(uri="x", sha256="x", count=0), chunks=0, dropped=dropped, token_lengths=[])
    )
    assert reason == f"no chunk: no words (only symbols or emoji): {dropped[NO_WORDS]}"


def test_a_document_of_short_pieces_names_the_setting(base_model_dir):
    records = [{"text": "Heading", "category": "Title", "page": None, "section": "Heading"}]
    _, dropped = chunk_records(records, "d" * 16, ChunkSettings(min_tokens=20), base_model_dir, 256)
    doc = ChunkedDoc(
        sha256="e" * 64, ref=Ref(uri="x", sha256="x", count=0), chunks=0, dropped=dropped, token_lengths=[]
    )
    assert no_chunk_reason(doc) == "no chunk: shorter than 20 tokens: 1 (chunk.min_tokens)"
