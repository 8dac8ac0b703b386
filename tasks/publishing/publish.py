"""Publish stage: the chosen model and a FAISS index of all chunks in the output folder; report.json, report.md, model card."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import faiss
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from ..core.objects import Ref, read_jsonl, read_npy
from ..core.reports import publish_link, publish_markdown
from ..core.store import RunStore
from ..embedding.corpus import corpus_embeddings
from .model_card import write_model_card
from .run_report import render_markdown


def copy_model(model_dir: str, out_dir: Path) -> Path:
    """Copy the tuned SentenceTransformer folder to OUT/model (replacing an older one)."""
    target = out_dir / "model"
    tmp = out_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def write_index(
    model_dir: str, corpus: Ref, documents: dict[str, str], out_dir: Path, store: RunStore, backend: str = "torch"
) -> dict:
    """Every chunk's embedding under the published model (from the run store, where evaluation left it) into
    OUT/index (index.faiss + chunks.jsonl, row i = vector i)."""
    rows = read_jsonl(corpus)
    vectors = read_npy(corpus_embeddings(corpus, model_dir, store, backend=backend))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    target = out_dir / "index"
    target.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(target / "index.faiss"))
    with open(target / "chunks.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            record = {**row, "document": documents.get(row["doc_id"], row["doc_id"])}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {
        "vectors": int(index.ntotal),
        "dim": int(vectors.shape[1]),
        "metric": "inner product (vectors L2-normalised)",
        "model": "../model",
    }
    (target / "index.json").write_text(json.dumps(meta, indent=1))
    return meta


def write_reports(out_dir: Path, report: dict, markdown: str) -> None:
    """report.json and report.md in OUT."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False, default=str))
    (out_dir / "report.md").write_text(markdown)


def publish_outputs(
    model_dir: str, corpus: Ref, documents: dict[str, str], out_dir: str, store_url: str, backend: str = "torch"
) -> dict:
    """OUT/model and OUT/index from model_dir, and a link artifact to the model folder; returns the index's description."""
    out = Path(out_dir)
    copy_model(model_dir, out)
    meta = write_index(model_dir, corpus, documents, out, RunStore(store_url), backend)
    with contextlib.suppress(Exception):  # a link is a convenience: it never fails a finished run
        publish_link("tuned-model", (out / "model").resolve().as_uri(), "The published model folder")
    return meta


@task(name="publish", cache_policy=NO_CACHE, persist_result=False)
def publish_task(
    model_dir: str, corpus: Ref, documents: dict[str, str], out_dir: str, store_url: str, backend: str = "torch"
) -> dict:
    """Write the model and its index into the output folder; never cached, since the folder is the point."""
    return publish_outputs(model_dir, corpus, documents, out_dir, store_url, backend)


def write_run_report(report: dict, out_dir: Path) -> Path:
    """report.json, report.md and the model card in OUT, and the build-report artifact; returns report.md's path."""
    markdown = render_markdown(report)
    write_reports(out_dir, report, markdown)
    write_model_card(out_dir / "model", report)
    publish_markdown("build-report", markdown, "The run's report: before/after table, NDCG@10 chart, stages, cost")
    return out_dir / "report.md"


@task(name="write-report", persist_result=False)
def write_run_report_task(report: dict, out_dir: str) -> str:
    """report.json, report.md and the model card in the output folder, and the build-report artifact."""
    path = write_run_report(report, Path(out_dir))
    get_run_logger().info("Done: %s", path)
    return str(path)
