"""Write a run's outputs: the tuned model, a FAISS index of all chunks, report.json and report.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss

from domain_embed.tasks.embed import embed_texts
from domain_embed.tasks.store import Ref, read_jsonl


def copy_model(model_dir: str, out_dir: Path) -> Path:
    """Copy the tuned SentenceTransformer folder to OUT/model (replacing an older one)."""
    target = out_dir / "model"
    tmp = out_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def write_index(model_dir: str, corpus: Ref, documents: dict[str, str], out_dir: Path) -> dict:
    """Embed every chunk with the tuned model into OUT/index (index.faiss + chunks.jsonl, row i = vector i)."""
    rows = read_jsonl(corpus)
    vectors = embed_texts(model_dir, [r["text"] for r in rows], batch_size=64)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    target = out_dir / "index"
    target.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(target / "index.faiss"))
    with open(target / "chunks.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            record = {**row, "document": documents.get(row["doc_id"], row["doc_id"])}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {"vectors": int(index.ntotal), "dim": int(vectors.shape[1]), "metric": "inner product (vectors L2-normalised)", "model": "../model"}
    (target / "index.json").write_text(json.dumps(meta, indent=1))
    return meta


def write_reports(out_dir: Path, report: dict, markdown: str) -> None:
    """report.json and report.md in OUT."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False, default=str))
    (out_dir / "report.md").write_text(markdown)
