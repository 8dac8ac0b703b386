"""Evaluation with the real all-MiniLM-L6-v2 on small real-text datasets; tables; the evaluate CLI."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import domain_embed.tasks.core.reports as reports
import domain_embed.tasks.evaluation.evaluate as evaluate
import domain_embed.tasks.evaluation.retrieval as retrieval
from domain_embed.flows.cli_eval import add_subcommands
from domain_embed.tasks.core.objects import read_json
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.embedding.models import default_matryoshka_dims, load_model, model_fingerprint, resolve_model
from domain_embed.tasks.evaluation.beir import beir_fingerprint, load_beir
from domain_embed.tasks.evaluation.evaluate import (
    evaluate_beir_task,
    evaluate_dataset,
    evaluate_pairs,
    evaluate_retrieval,
    evaluate_task,
    train_overlap,
)
from domain_embed.tasks.evaluation.retrieval import METRICS, check_dims, embed_blocks, truncate
from domain_embed.tasks.evaluation.tables import render_table, table_rows

PASSAGES = {
    "volcano": ("Volcanoes", "Lava is molten rock that pours out of a volcano during an eruption."),
    "honey": ("Bees", "Honey bees make honey by collecting nectar from flowers and storing it in wax combs."),
    "ocean": ("Oceans", "The Pacific Ocean is the largest and deepest ocean on Earth."),
    "photosynthesis": ("Plants", "Plants use sunlight, water and carbon dioxide to make sugar in photosynthesis."),
    "piano": ("Music", "A piano has 88 keys and makes sound when hammers strike steel strings."),
    "bread": ("Baking", "Yeast makes bread dough rise by producing carbon dioxide gas."),
    "moon": ("Astronomy", "The Moon orbits the Earth roughly once every 27 days."),
    "football": ("Sport", "A football match has two halves of 45 minutes each."),
    "python": ("Programming", "Python is a programming language known for its readable syntax."),
    "heart": ("Anatomy", "The human heart pumps blood through the body with four chambers."),
    "everest": ("Mountains", "Mount Everest is the highest mountain above sea level, in the Himalayas."),
    "coffee": ("Drinks", "Coffee is brewed from roasted coffee beans and contains caffeine."),
    "rain": ("Weather", "Rain forms when water vapour in clouds condenses into droplets heavy enough to fall."),
    "chess": ("Games", "In chess, the king can move one square in any direction."),
    "penguin": ("Birds", "Penguins are flightless birds that live mostly in the Southern Hemisphere."),
    "bitcoin": ("Finance", "Bitcoin is a digital currency recorded on a public blockchain ledger."),
    "tea": ("Drinks", "Green tea is made from unoxidised leaves of the tea plant."),
    "bicycle": ("Transport", "A bicycle is moved by pedals that turn a chain connected to the rear wheel."),
    "vaccine": ("Medicine", "Vaccines train the immune system to recognise a virus without causing disease."),
    "pyramids": ("History", "The Great Pyramid of Giza was built as a tomb for the pharaoh Khufu."),
    "glacier": ("Ice", "Glaciers are slow rivers of ice that carve valleys as they move downhill."),
    "whale": ("Mammals", "The blue whale is the largest animal known to have ever lived."),
    "electricity": ("Physics", "Electric current is the flow of electrons through a conductor such as copper wire."),
    "cheese": ("Food", "Cheese is made by curdling milk with rennet and ageing the curds."),
    "desert": ("Geography", "The Sahara is the largest hot desert in the world, in North Africa."),
    "rainbow": ("Light", "A rainbow appears when sunlight is refracted and reflected inside raindrops."),
    "spider": ("Insects", "Spiders spin webs from silk produced by glands in their abdomen."),
    "olympics": ("Sport", "The modern Olympic Games were first held in Athens in 1896."),
}
QUESTIONS = {
    "volcano": "What comes out of a volcano when it erupts?",
    "honey": "How do bees produce honey?",
    "ocean": "Which ocean is the biggest in the world?",
    "photosynthesis": "How do plants make their food from sunlight?",
    "piano": "How many keys does a piano have?",
    "bread": "Why does bread dough rise?",
    "moon": "How long does the Moon take to go around the Earth?",
    "football": "How long is a football match?",
    "python": "Which programming language is famous for readable code?",
    "heart": "How many chambers does the human heart have?",
    "everest": "What is the tallest mountain in the world?",
    "coffee": "What drink is made from roasted beans and has caffeine?",
    "chess": "How does the king move in chess?",
    "penguin": "Which birds cannot fly and live near Antarctica?",
    "vaccine": "How do vaccines protect against viruses?",
    "pyramids": "Who was the Great Pyramid built for?",
    "whale": "What is the largest animal ever?",
    "cheese": "How is cheese made from milk?",
    "rainbow": "What causes a rainbow?",
    "olympics": "When were the first modern Olympics held?",
}


@pytest.fixture(scope="module")
def model_dir() -> str:
    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def data():
    corpus = {f"d-{key}": f"{title}\n{text}" for key, (title, text) in PASSAGES.items()}
    queries = {f"q-{key}": text for key, text in QUESTIONS.items()}
    relevant = {f"q-{key}": {f"d-{key}"} for key in QUESTIONS}
    return corpus, queries, relevant


def write_beir(root: Path, extra_query: bool = True) -> Path:
    """The test passages and questions as a BEIR folder (plus one query without qrels)."""
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"d-{k}", "title": t, "text": x} for k, (t, x) in PASSAGES.items()]
    queries = [{"_id": f"q-{k}", "text": q} for k, q in QUESTIONS.items()]
    if extra_query:
        queries.append({"_id": "q-unjudged", "text": "What colour is the sky?"})
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    qrels = "".join(f"q-{k}\td-{k}\t1\n" for k in QUESTIONS)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


def test_evaluate_retrieval_real_model(model_dir, data):
    corpus, queries, relevant = data
    results = evaluate_retrieval(model_dir, corpus, queries, relevant, dims=[64, 384])
    assert set(results) == {384, 64}
    for dim, metrics in results.items():
        assert tuple(metrics) == METRICS
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
        assert metrics["recall@100"] == 1.0  # 28 passages: everything is in the top 100
    assert results[384]["ndcg@10"] > 0.85
    assert results[384]["mrr@10"] > 0.8
    assert results[384]["recall@10"] >= 0.95
    assert results[64]["ndcg@10"] > 0.5


def test_corpus_and_queries_are_embedded_once_in_blocks(model_dir, data, monkeypatch):
    corpus, queries, relevant = data
    model = load_model(model_dir)
    calls = []

    def counting(name):
        original = getattr(model, name)

        def wrapper(inputs, **kwargs):
            calls.append((name, len(inputs)))
            return original(inputs, **kwargs)

        return wrapper

    monkeypatch.setattr(retrieval, "ENCODE_BLOCK", 8)
    for name in ("encode_document", "encode_query"):
        monkeypatch.setattr(model, name, counting(name))
    evaluate_retrieval(model_dir, corpus, queries, relevant, dims=[384, 128, 64])
    documents = [n for name, n in calls if name == "encode_document"]
    queried = [n for name, n in calls if name == "encode_query"]
    assert (documents, queried) == ([8, 8, 8, 4], [8, 8, 4])  # one pass over 28 passages, 20 queries, for 3 dims
    monkeypatch.undo()
    texts = list(corpus.values())
    blocked = embed_blocks(model, texts, batch_size=16)
    whole = model.encode_document(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    assert blocked.dtype == np.float32
    np.testing.assert_allclose(blocked, whole, atol=1e-5)


def test_truncate_renormalises():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(5, 32)).astype(np.float32)
    head = truncate(full, 8)
    assert head.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(head, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(head * np.linalg.norm(full[:, :8], axis=1, keepdims=True), full[:, :8], rtol=1e-5)


def test_dims():
    assert default_matryoshka_dims(384) == [384, 256, 128, 64]
    assert default_matryoshka_dims(768) == [768, 512, 256, 128, 64]
    assert default_matryoshka_dims(64) == [64]
    assert check_dims([64, 384, 64], 384, "m") == [384, 64]
    with pytest.raises(ValueError, match="dimension 512 is not available: model m has 384"):
        check_dims([512, 64], 384, "m")


def test_dim_larger_than_model_is_an_error(model_dir, data):
    corpus, queries, relevant = data
    with pytest.raises(ValueError, match="dimension 1024 is not available"):
        evaluate_retrieval(model_dir, corpus, queries, relevant, dims=[1024])


def test_relevant_id_outside_corpus_is_an_error(model_dir, data):
    corpus, queries, _ = data
    with pytest.raises(ValueError, match="'d-missing' is not in the corpus"):
        evaluate_retrieval(model_dir, corpus, queries, {"q-volcano": {"d-missing"}}, dims=[64])


def test_render_table_with_delta():
    metric = {m: 0.5 for m in METRICS}
    better = {m: 0.625 for m in METRICS}
    results = {"base": {384: metric, 64: metric}, "tuned": {384: better, 64: {**metric, "ndcg@10": 0.25}}}
    rows = table_rows(results, ["ndcg@10"])
    assert [(r["dim"], r["model"], r["NDCG@10"]) for r in rows] == [
        (384, "base", 0.5),
        (384, "tuned", 0.625),
        (384, "tuned - base", 0.125),
        (64, "base", 0.5),
        (64, "tuned", 0.25),
        (64, "tuned - base", -0.25),
    ]
    text = render_table(results, "synthetic")
    lines = text.splitlines()
    assert lines[0] == "**synthetic**"
    assert lines[2] == "| dim | model | NDCG@10 | MRR@10 | Recall@10 | Recall@100 | MAP@100 |"
    assert "| 384 | tuned - base | +0.1250 | +0.1250 | +0.1250 | +0.1250 | +0.1250 |" in lines
    assert "| 64 | tuned - base | -0.2500 | +0.0000 | +0.0000 | +0.0000 | +0.0000 |" in lines
    assert "tuned - base" not in render_table({"a": results["base"], "b": results["tuned"]}, "x")


def test_evaluate_pairs_synthetic_split(model_dir):
    chunks, pairs = synthetic_chunks_and_pairs()
    tea = next(row["chunk_id"] for row in chunks if row["text"] == PASSAGES["tea"][1])
    pairs.append({"query": QUESTIONS["coffee"], "chunk_id": tea, "doc_id": "0" * 16})  # same text: merged
    report = evaluate_pairs({"base": model_dir, "tuned": model_dir}, pairs, chunks, dims=[384, 64])
    assert report.label == "synthetic"
    assert (report.queries, report.passages, report.dims) == (len(QUESTIONS), len(PASSAGES), [384, 64])
    assert report.results["base"] == report.results["tuned"]
    assert report.results["base"][384]["ndcg@10"] > 0.8
    assert 0 < report.bm25["ndcg@10"] < 1 and set(report.bm25) == set(
        METRICS
    )  # few questions share words with their passage
    delta = [r for r in table_rows(report.results) if r["model"] == "tuned - base"]
    assert len(delta) == 2 and all(r["NDCG@10"] == 0 for r in delta)


def test_evaluate_dataset_counts_training_overlap(model_dir, tmp_path):
    dataset = load_beir(str(write_beir(tmp_path / "labelled")))
    positives = {
        "  Lava is molten rock that pours out of a volcano\nduring an eruption. ",
        PASSAGES["tea"][1],
        "unrelated",
    }
    report = evaluate_dataset({"base": model_dir}, dataset, [384], positives)
    assert report.label == "user:labelled"
    assert report.ignored_queries == 1
    assert report.train_overlap == 2  # volcano (whitespace differs) and tea
    assert report.train_overlap_relevant == 1  # only volcano is judged relevant
    assert report.results["base"][384]["ndcg@10"] > 0.85
    assert train_overlap(["a  b", "c"], {"a b"}) == 1


def synthetic_chunks_and_pairs() -> tuple[list[dict], list[dict]]:
    """Chunk rows for every passage, pair rows for every question."""
    keys = list(PASSAGES)
    chunks = [
        {
            "chunk_id": f"{i:016x}",
            "doc_id": f"{i // 4:016x}",
            "section": PASSAGES[k][0],
            "text": PASSAGES[k][1],
            "n_tokens": 20,
        }
        for i, k in enumerate(keys)
    ]
    pairs = [{"query": q, "chunk_id": f"{keys.index(k):016x}", "doc_id": "0" * 16} for k, q in QUESTIONS.items()]
    return chunks, pairs


@pytest.fixture
def artifacts(monkeypatch) -> list[dict]:
    """Capture the table artifacts and give the task a plain logger (no Prefect API needed)."""
    published: list[dict] = []
    monkeypatch.setattr(evaluate, "get_run_logger", lambda: logging.getLogger("test-evaluate"))
    monkeypatch.setattr(reports, "in_run", lambda: True)
    monkeypatch.setattr(reports, "create_table_artifact", lambda **kwargs: published.append(kwargs))
    return published


def test_evaluate_task_publishes_labelled_report(model_dir, tmp_path, artifacts):
    store = RunStore(str(tmp_path / "store"))
    chunks, pairs = synthetic_chunks_and_pairs()
    models = {"base": model_dir, "tuned": model_dir}
    shas = {label: model_fingerprint(model_dir) for label in models}
    report = evaluate_task.fn(
        models, shas, store.put_jsonl("pairs", pairs), store.put_jsonl("corpus", chunks), [384, 64], store.url
    )
    assert report.results["base"][384]["ndcg@10"] > 0.85
    assert read_json(report.ref)["results"]["tuned"]["64"] == report.results["tuned"][64]
    (artifact,) = artifacts
    assert artifact["key"] == "evaluation-report"
    assert "**synthetic**" in artifact["description"] and "LLM-generated" in artifact["description"]
    assert [(r["dataset"], r["dim"], r["model"]) for r in artifact["table"]] == [
        ("synthetic", 384, "base"),
        ("synthetic", 384, "tuned"),
        ("synthetic", 384, "tuned - base"),
        ("synthetic", 64, "base"),
        ("synthetic", 64, "tuned"),
        ("synthetic", 64, "tuned - base"),
        ("synthetic", "-", "bm25"),
        ("synthetic", 384, "bm25 + tuned (RRF)"),
        ("synthetic", 64, "bm25 + tuned (RRF)"),
    ]
    assert set(artifact["table"][0]) == {"dataset", "dim", "model", "NDCG@10", "MRR@10", "Recall@10"}


def test_evaluate_beir_task_reports_user_label_and_overlap(model_dir, tmp_path, artifacts):
    store = RunStore(str(tmp_path / "store"))
    chunks, pairs = synthetic_chunks_and_pairs()
    dataset = write_beir(tmp_path / "labelled")
    shas = {"base": model_fingerprint(model_dir)}
    report = evaluate_beir_task.fn(
        {"base": model_dir},
        shas,
        str(dataset),
        beir_fingerprint(str(dataset)),
        [64],
        store.url,
        train_pairs=store.put_jsonl("pairs", pairs[:3]),
        corpus=store.put_jsonl("corpus", chunks),
    )
    assert (report.label, report.queries, report.ignored_queries) == ("user:labelled", len(QUESTIONS), 1)
    assert (report.train_overlap, report.train_overlap_relevant) == (
        3,
        3,
    )  # the 3 training positives are judged passages
    assert artifacts[0]["table"][0]["dataset"] == "user:labelled"
    assert "your labelled queries" in artifacts[0]["description"]
    assert "3 passages (3 judged relevant) were training positives" in artifacts[0]["description"]


def test_evaluate_cache_key_is_content_not_paths(tmp_path):
    store = RunStore(str(tmp_path / "store"))
    pairs = store.put_jsonl("pairs", [{"query": "q", "chunk_id": "a" * 16, "doc_id": "b" * 16}])
    corpus = store.put_jsonl(
        "corpus", [{"chunk_id": "a" * 16, "doc_id": "b" * 16, "section": "", "text": "t", "n_tokens": 1}]
    )
    ctx = SimpleNamespace(task=evaluate_task)

    def key(models, shas):
        inputs = {
            "models": models,
            "model_shas": shas,
            "eval_pairs": pairs,
            "corpus": corpus,
            "dims": [64],
            "store_url": store.url,
            "label": "synthetic",
        }
        return evaluate_task.cache_policy.compute_key(ctx, inputs, {})

    same = key({"base": "/a/model"}, {"base": "s1"})
    assert same == key({"base": "/elsewhere/model"}, {"base": "s1"})
    assert same != key({"base": "/a/model"}, {"base": "s2"})


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="domain-embed")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_evaluate_writes_json(tmp_path, capsys):
    dataset = write_beir(tmp_path / "mydata")
    out = tmp_path / "res" / "eval.json"
    code = run_cli(
        [
            "evaluate",
            "--model",
            "all-MiniLM-L6-v2",
            "--dataset",
            str(dataset),
            "--dims",
            "384,64",
            "--out",
            str(out),
            "--batch-size",
            "8",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| 384 | all-MiniLM-L6-v2 |" in printed and "| 64 | all-MiniLM-L6-v2 |" in printed
    assert "1 queries without relevant qrels ignored" in printed
    assert "| - | bm25 |" in printed
    record = json.loads(out.read_text())
    assert record["dataset"] == "user:mydata"
    assert (record["queries"], record["passages"], record["ignored_queries"]) == (len(QUESTIONS), len(PASSAGES), 1)
    metrics = record["results"]["all-MiniLM-L6-v2"]
    assert set(metrics) == {"384", "64"}
    assert set(metrics["384"]) == set(METRICS)
    assert metrics["384"]["ndcg@10"] > 0.85
    assert 0 <= record["bm25"]["ndcg@10"] <= 1


def test_cli_evaluate_errors(tmp_path, capsys):
    dataset = write_beir(tmp_path / "d")
    assert run_cli(["evaluate", "--model", "all-MiniLM-L6-v2", "--dataset", str(dataset), "--dims", "512"]) == 2
    assert "dimension 512 is larger than model all-MiniLM-L6-v2's 384 dimensions" in capsys.readouterr().err
    (dataset / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": \n')
    assert run_cli(["evaluate", "--model", "all-MiniLM-L6-v2", "--dataset", str(dataset)]) == 2
    assert "queries.jsonl line 2: invalid JSON" in capsys.readouterr().err
    assert run_cli(["evaluate", "--model", "no-such-model", "--dataset", str(dataset)]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(["evaluate", "--model", "all-MiniLM-L6-v2", "--dataset", str(dataset), "--dims", "384,x"])


def test_cli_export_beir_round_trip(tmp_path, capsys):
    store = RunStore(str(tmp_path / "store"))
    chunks, pairs = synthetic_chunks_and_pairs()
    run_out = tmp_path / "out"
    run_out.mkdir()
    refs = {"corpus": store.put_jsonl("corpus", chunks).uri, "eval_pairs": store.put_jsonl("pairs", pairs[:2]).uri}
    (run_out / "report.json").write_text(json.dumps({"store": refs}))
    assert run_cli(["export-beir", str(tmp_path / "beir"), "--run", str(run_out)]) == 0
    assert "Wrote 28 passages, 2 queries, 2 qrels" in capsys.readouterr().out
    data = load_beir(str(tmp_path / "beir"))
    assert sorted(data.queries.values()) == sorted(p["query"] for p in pairs[:2])
    assert len(data.corpus) == len(PASSAGES)
    assert run_cli(["export-beir", str(tmp_path / "x"), "--run", str(tmp_path / "nowhere")]) == 2
    assert "report.json not found" in capsys.readouterr().err
    (run_out / "report.json").write_text(json.dumps({"store": {"corpus": refs["corpus"]}}))
    assert run_cli(["export-beir", str(tmp_path / "x"), "--run", str(run_out)]) == 2
    assert "no store.corpus and store.eval_pairs" in capsys.readouterr().err


def test_chart_is_a_png_image_the_ui_can_show():
    import base64
    import io
    import re

    from PIL import Image

    from domain_embed.tasks.core.reports import png_line_chart

    chart = png_line_chart(
        {"base": [(64, 0.61), (384, 0.69)], "tuned": [(64, 0.66), (384, 0.72)]}, "NDCG@10 per dimension: x"
    )
    found = re.fullmatch(r"!\[NDCG@10 per dimension: x\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", chart)
    assert found, chart[:80]
    image = Image.open(io.BytesIO(base64.b64decode(found.group(1))))
    assert image.format == "PNG" and image.size == (560, 240)
    assert png_line_chart({"base": []}, "empty") == ""
    assert "<svg" not in chart
