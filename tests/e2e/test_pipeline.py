"""The whole flow under Prefect's test harness, with the stub LLM called through litellm like a hosted one."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES
from llm_stub import LLMStub
from sentence_transformers import SentenceTransformer

from domain_embed.tasks.checks import check_config
from domain_embed.tasks.core.objects import read_jsonl
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.embedding.models import resolve_model
from domain_embed.tasks.plan import Plan, plan_run
from domain_embed.tasks.settings import PipelineConfig

FIXTURE_BASE = resolve_model("all-MiniLM-L6-v2")

NEW_DOC = """# Tablespaces

Tablespaces in PostgreSQL allow database administrators to define locations in the file system where the
files representing database objects can be stored. Once created, a tablespace can be referred to by name
when creating database objects.

By using tablespaces, an administrator can control the disk layout of a PostgreSQL installation. This is
useful when a partition or volume on which the cluster was initialized runs out of space and cannot be
extended: a tablespace can be created on a different partition and used until the system can be reconfigured.

Tablespaces also allow an administrator to use knowledge of the usage pattern of database objects to
optimize performance. For example, an index which is very heavily used can be placed on a very fast, highly
available disk, such as an expensive solid state device.
"""


@pytest.fixture(scope="module")
def stub():
    with LLMStub(latency_s=0.0) as server:
        yield server


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    docs = root / "docs"
    shutil.copytree(FIXTURES / "docs", docs)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n%broken")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 8)
    write_beir(root / "labelled")
    return root


def write_beir(folder) -> None:
    """A tiny labelled set in the BEIR layout, as a user would bring it."""
    passages = {
        "p1": "Write-ahead logging ensures that changes to data files are written only after the change has been logged.",
        "p2": "Template databases: CREATE DATABASE works by copying an existing database, template1 by default.",
        "p3": "Aggregate functions compute a single result from multiple input rows, for example count, sum and avg.",
        "p4": "A generated column is a special column that is always computed from other columns.",
    }
    queries = {
        "q1": "why log changes before writing data pages",
        "q2": "what does create database copy",
        "q3": "compute one value from many rows",
    }
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in passages.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items())
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tp1\t1\nq2\tp2\t1\nq3\tp3\t1\n")


def config_for(root, stub, monkeypatch) -> PipelineConfig:
    monkeypatch.setenv("STUB_LLM_KEY", "sk-stub-secret")
    return PipelineConfig.model_validate(
        {
            "docs_dir": str(root / "docs"),
            "out_dir": str(root / "out"),
            "store_url": str(root / "store"),
            "llm": {
                "model": "openai/stub-model",
                "api_base": stub.api_base,
                "api_key_env": "STUB_LLM_KEY",
                "questions_per_chunk": 2,
            },
            "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
            "filter": {"roundtrip_top_k": 10},
            "embed": {"backend": "onnx"},  # every stage's inference on ONNX Runtime, from exports in the store
            "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 96},
            "split": {"eval_fraction": 0.4},
            "eval_dataset": str(root / "labelled"),
        }
    )


def plan_for(config: PipelineConfig) -> Plan:
    """What `domain-embed plan` prints for this config, as data."""
    docs, model_dir, _, _ = check_config(config)
    return plan_run(config, docs, model_dir)


def test_pipeline_end_to_end_then_cached_then_one_new_document(run_dirs, stub, prefect_harness, monkeypatch):
    from domain_embed.flows.pipeline import build_embedder

    config = config_for(run_dirs, stub, monkeypatch)
    before = plan_for(config)  # a fresh store: chunks estimated from the files' sizes
    first = build_embedder(config)
    out = run_dirs / "out"

    # outputs: loadable model, index over every chunk, reports with both models at every dim
    model = SentenceTransformer(str(out / "model"), device="cpu")
    assert model.encode(["write-ahead log"]).shape == (1, 384)
    assert (out / "model" / "README.md").exists()
    chunks = read_jsonl(str(out / "index" / "chunks.jsonl"))
    assert json.loads((out / "index" / "index.json").read_text())["vectors"] == len(chunks) > 20
    report = json.loads((out / "report.json").read_text())
    synthetic = report["evaluation"]["synthetic"]["results"]
    assert set(synthetic) >= {"base", "tuned"}
    assert {int(d) for d in synthetic["tuned"]} == {384, 256, 128, 64}
    assert "NDCG@10" in (out / "report.md").read_text() or "ndcg@10" in (out / "report.md").read_text()
    # every dim's gain carries its 95% paired-bootstrap interval and a plain verdict, in report.json and report.md
    intervals = report["evaluation"]["synthetic"]["intervals"]["tuned-base"]
    for dim, per_metric in intervals.items():
        ndcg = per_metric["ndcg@10"]
        delta = synthetic["tuned"][dim]["ndcg@10"] - synthetic["base"][dim]["ndcg@10"]
        assert ndcg["low"] <= ndcg["delta"] <= ndcg["high"] and abs(ndcg["delta"] - delta) < 1e-9
        assert ndcg["verdict"] == ("gain" if ndcg["low"] > 0 else "loss" if ndcg["high"] < 0 else "within noise")
    full = intervals["384"]["ndcg@10"]
    assert f"[{full['low']:+.4f}, {full['high']:+.4f}]" in (out / "report.md").read_text()
    assert "95% CI" in report["promotion"]["reason"] and full["verdict"] in report["promotion"]["reason"]
    assert (
        0 <= report["evaluation"]["synthetic"]["bm25"]["ndcg@10"] <= 1
        and "| bm25 (lexical) | - |" in (out / "report.md").read_text()
    )
    card = (out / "model" / "README.md").read_text()
    assert "## Fine-tuned by domain-embed" in card and "Δ [95% CI]" in card and report["recipe"]["loss"] in card
    assert set(report["timings_s"]) >= {"parse", "chunk", "generate", "split", "mine", "train", "evaluate", "publish"}
    assert report["embed_backend"] == "onnx"
    peaks = [report["peak_rss_mb"][stage] for stage in report["timings_s"]]  # the flow process's peak as stages end
    assert peaks == sorted(peaks) and peaks[0] > 100
    store = RunStore(config.store_url)
    assert len(store.fs.glob(f"{store.root}/onnx/*.onnx")) == 2  # the base and the tuned model, exported once each
    assert report["stages"][-1] == {**report["stages"][-1], "stage": "publish", "kept": len(chunks)}
    assert report["new_documents"] and report["promotion"]["reason"]
    published = SentenceTransformer(str(out / "model"), device="cpu").encode(["vacuum"])
    winner = report["store"]["model"] if report["promotion"]["promoted"] else FIXTURE_BASE
    assert abs(SentenceTransformer(winner, device="cpu").encode(["vacuum"]) - published).max() < 1e-5

    # the user's labelled set is evaluated too, labelled as such, with the training overlap counted
    user = report["evaluation"]["user:labelled"]
    assert user["queries"] == 3 and user["train_overlap"] == 0
    assert {int(d) for d in user["results"]["tuned"]} == {384, 256, 128, 64}
    assert "YOUR labelled queries: labelled" in (out / "report.md").read_text()

    # bad files are reported and skipped, good ones kept: every file accounted for
    status = {f["file"]: f["status"] for f in report["files"]}
    assert status["empty.txt"] == "skipped: empty file (0 bytes)"
    assert status["broken.pdf"].startswith("error:")
    assert status["binary.txt"].startswith("error: binary data")
    assert sum(s == "ok" for s in status.values()) == 5

    # no eval document was used for training
    train_docs = {r["doc_id"] for r in read_jsonl(report["store"]["train_pairs"])}
    eval_docs = {r["doc_id"] for r in read_jsonl(report["store"]["eval_pairs"])}
    assert train_docs and eval_docs and not train_docs & eval_docs
    first_calls = len(stub.requests)
    corpus_texts = {r["text"] for r in read_jsonl(report["store"]["corpus"])}
    assert first_calls >= len(corpus_texts)

    # the plan, against what the run did: estimated on a fresh store, exact once the store has chunked the documents
    chunks_made = next(stage["kept"] for stage in report["stages"] if stage["stage"] == "chunk")
    asked = first["llm_usage"]["llm_calls"]
    assert before.documents == len(report["files"]) and before.documents_known == 0
    assert chunks_made / 2 <= before.chunks <= chunks_made * 2 and asked / 2 <= before.llm_calls <= asked * 2
    after = plan_for(config)
    assert after.documents_known == before.documents - before.documents_skipped and after.chunks == chunks_made
    assert after.llm_calls == 0 and after.chunks_answered == asked and after.cost_usd == 0.0
    assert after.training_rows > 0 and "this store's last training" in after.device_basis

    # second run, nothing changed: zero LLM calls, training not run again
    stub.reset()
    second = build_embedder(config)
    assert len(stub.requests) == 0
    assert second["llm_usage"]["llm_calls"] == 0 and second["llm_usage"]["cost_usd"] == 0
    assert second["training"] == first["training"]
    assert second["evaluation"] == first["evaluation"]
    assert second["new_documents"] is False and second["training_cached"] is True
    assert "**Same documents as the last run**: no LLM call" in (out / "report.md").read_text()
    assert "training served from cache" in (out / "report.md").read_text()

    # one new document: only its chunks reach the LLM
    (run_dirs / "docs" / "tablespaces.md").write_text(NEW_DOC)
    stub.reset()
    one_more = plan_for(config)
    third = build_embedder(config)
    assert (
        one_more.documents_known == after.documents_known
        and 1 <= one_more.llm_calls <= 2 * third["llm_usage"]["llm_calls"]
    )
    new_corpus = read_jsonl(third["store"]["corpus"])
    new_doc_ids = {r["doc_id"] for r in new_corpus} - {r["doc_id"] for r in read_jsonl(report["store"]["corpus"])}
    assert len(new_doc_ids) == 1
    new_texts = {r["text"] for r in new_corpus if r["doc_id"] in new_doc_ids}
    seen = set(stub.chunks_seen)
    assert seen and seen <= new_texts
    assert third["training"]["seconds"] != first["training"]["seconds"]
    assert third["new_documents"] is True and third["training_cached"] is False
    assert f"This run: {third['llm_usage']['llm_calls']} LLM calls" in (out / "report.md").read_text()
    assert third["promotion"]["current_ndcg"] is not None  # compared with the current model, or the base model
    if report["promotion"]["promoted"]:
        assert "current" in third["evaluation"]["synthetic"]["results"]
