"""BEIR-layout loading, validation errors (file and line), export and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain_embed.tasks.evaluation.beir import (
    DatasetError,
    beir_fingerprint,
    export_beir,
    load_beir,
    pairs_to_queries,
    query_ids,
)

CORPUS = [
    {"_id": "d1", "title": "Volcanoes", "text": "Lava is molten rock that erupts from a volcano."},
    {"_id": "d2", "title": "", "text": "Bees make honey from the nectar of flowers."},
    {"_id": "d3", "text": "The Pacific is the largest ocean on Earth."},
]
QUERIES = [
    {"_id": "q1", "text": "What comes out of a volcano?"},
    {"_id": "q2", "text": "How is honey made?"},
    {"_id": "q3", "text": "Which ocean is the biggest?"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td3\t0\n"


def write_dataset(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    """Write a BEIR folder; corpus/queries are lists of objects or raw text."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        body = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
        (root / name).write_text(body)
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def test_load_valid_dataset(tmp_path):
    data = load_beir(str(write_dataset(tmp_path / "mini")))
    assert data.name == "mini"
    assert data.corpus["d1"] == "Volcanoes\nLava is molten rock that erupts from a volcano."
    assert data.corpus["d2"] == "Bees make honey from the nectar of flowers."  # empty title: text only
    assert data.texts["d1"] == "Lava is molten rock that erupts from a volcano."
    assert data.relevant == {"q1": {"d1"}, "q2": {"d2"}}  # score 0 is not relevant
    assert set(data.queries) == {"q1", "q2"}
    assert data.ignored_queries == 1
    assert data.qrels == 3


def test_qrels_without_header_and_blank_lines(tmp_path):
    data = load_beir(str(write_dataset(tmp_path, qrels="q1\td1\t1\n\nq2\td2\t1\n")))
    assert data.relevant == {"q1": {"d1"}, "q2": {"d2"}}


@pytest.mark.parametrize(
    "corpus, queries, qrels, message",
    [
        ('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n', QUERIES, QRELS, "corpus.jsonl line 2: invalid JSON"),
        (CORPUS, '{"_id": "q1", "text": "x"}\n["q2"]\n', QRELS, "queries.jsonl line 2: expected a JSON object"),
        (
            [{"_id": "d1", "text": "a"}, {"title": "t", "text": "b"}],
            QUERIES,
            QRELS,
            "corpus.jsonl line 2: missing or empty '_id'",
        ),
        (
            [{"_id": "d1", "text": "a"}, {"_id": "d2", "title": "t"}],
            QUERIES,
            QRELS,
            "corpus.jsonl line 2: missing 'text'",
        ),
        (CORPUS, [{"_id": "q1"}], QRELS, "queries.jsonl line 1: missing 'text'"),
        (
            CORPUS + [{"_id": "d2", "text": "again"}],
            QUERIES,
            QRELS,
            "corpus.jsonl line 4: duplicate _id 'd2' (first on line 2)",
        ),
        (CORPUS, QUERIES + [{"_id": "q1", "text": "again"}], QRELS, "queries.jsonl line 4: duplicate _id 'q1'"),
        (
            CORPUS,
            QUERIES,
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n",
            "qrels/test.tsv line 3: expected 3 tab-separated columns",
        ),
        (
            CORPUS,
            QUERIES,
            "query-id\tcorpus-id\tscore\nq1\td1\t1\td9\n",
            "qrels/test.tsv line 2: expected 3 tab-separated columns",
        ),
        (CORPUS, QUERIES, "q1\td1\t1\nq2\td2\thigh\n", "qrels/test.tsv line 2: score 'high' is not an integer"),
        (
            CORPUS,
            QUERIES,
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td42\t1\n",
            "qrels/test.tsv line 3: corpus-id 'd42' is not in corpus.jsonl",
        ),
        (
            CORPUS,
            QUERIES,
            "query-id\tcorpus-id\tscore\nq7\td1\t1\n",
            "qrels/test.tsv line 2: query-id 'q7' is not in queries.jsonl",
        ),
        (CORPUS, "\n\n", QRELS, "queries.jsonl: no queries"),
        ("", QUERIES, QRELS, "corpus.jsonl: no passages"),
        (
            CORPUS,
            QUERIES,
            "query-id\tcorpus-id\tscore\nq1\td1\t0\nq2\td2\t-1\n",
            "qrels/test.tsv: no relevant judgement",
        ),
    ],
)
def test_malformed_dataset_names_file_and_line(tmp_path, corpus, queries, qrels, message):
    write_dataset(tmp_path, corpus, queries, qrels)
    with pytest.raises(DatasetError) as err:
        load_beir(str(tmp_path))
    assert message in str(err.value)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file(tmp_path, missing):
    write_dataset(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(DatasetError, match=f"{missing}: file not found"):
        load_beir(str(tmp_path))


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_beir(str(tmp_path / "nope"))


def test_query_ids_are_stable_and_distinct():
    ids = query_ids(["a?", "b?", "a?"])
    assert query_ids(["b?", "a?"]) == {"a?": ids["a?"], "b?": ids["b?"]}
    assert len(set(ids.values())) == 2
    assert all(len(qid) == 9 and qid.startswith("q") for qid in ids.values())


def test_pairs_merge_identical_queries():
    pairs = [
        {"query": "What is lava?", "chunk_id": "c1", "doc_id": "x"},
        {"query": "What is lava?", "chunk_id": "c2", "doc_id": "x"},
        {"query": "Who makes honey?", "chunk_id": "c3", "doc_id": "y"},
    ]
    queries, relevant = pairs_to_queries(pairs)
    by_text = {text: relevant[qid] for qid, text in queries.items()}
    assert by_text == {"What is lava?": {"c1", "c2"}, "Who makes honey?": {"c3"}}


def test_export_then_load_round_trip(tmp_path):
    chunks = [
        {
            "chunk_id": "a" * 16,
            "doc_id": "1" * 16,
            "section": "Volcanoes",
            "text": "Lava is molten rock.",
            "n_tokens": 5,
        },
        {"chunk_id": "b" * 16, "doc_id": "1" * 16, "section": "", "text": "Bees make honey.", "n_tokens": 4},
        {
            "chunk_id": "c" * 16,
            "doc_id": "2" * 16,
            "section": "Oceans",
            "text": "The Pacific is large.",
            "n_tokens": 5,
        },
    ]
    pairs = [
        {"query": "What is lava?", "chunk_id": "a" * 16, "doc_id": "1" * 16},
        {"query": "What is lava?", "chunk_id": "c" * 16, "doc_id": "2" * 16},
        {"query": "Who makes honey?", "chunk_id": "b" * 16, "doc_id": "1" * 16},
    ]
    counts = export_beir(chunks, pairs, str(tmp_path / "synthetic"))
    assert counts == {"passages": 3, "queries": 2, "qrels": 3}
    data = load_beir(str(tmp_path / "synthetic"))
    assert data.corpus == {
        "a" * 16: "Volcanoes\nLava is molten rock.",
        "b" * 16: "Bees make honey.",
        "c" * 16: "Oceans\nThe Pacific is large.",
    }
    assert sorted(data.queries.values()) == ["What is lava?", "Who makes honey?"]
    by_text = {data.queries[q]: cids for q, cids in data.relevant.items()}
    assert by_text == {"What is lava?": {"a" * 16, "c" * 16}, "Who makes honey?": {"b" * 16}}
    assert (tmp_path / "synthetic" / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")
    first = beir_fingerprint(str(tmp_path / "synthetic"))
    export_beir(chunks, pairs, str(tmp_path / "again"))
    assert beir_fingerprint(str(tmp_path / "again")) == first  # deterministic output, path-independent hash


def test_export_rejects_pairs_outside_corpus(tmp_path):
    chunks = [{"chunk_id": "a" * 16, "doc_id": "1" * 16, "section": "", "text": "x", "n_tokens": 1}]
    pairs = [{"query": "q?", "chunk_id": "f" * 16, "doc_id": "1" * 16}]
    with pytest.raises(ValueError, match="not in the corpus"):
        export_beir(chunks, pairs, str(tmp_path))
