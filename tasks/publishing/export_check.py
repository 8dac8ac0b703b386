"""Export a run's published model to ONNX and compare it with PyTorch: NDCG@10 per dim on the run's eval split,
embedding agreement and CPU encode speed; written to OUT/export.json and OUT/export.md."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..core.reports import markdown_table
from ..evaluation.beir import pairs_to_queries
from ..evaluation.retrieval import embed_blocks, score_retrieval
from .run_folder import eval_split, open_run

SPEED_PASSAGES = 256  # passages encoded per backend for the speed figure (the eval corpus, repeated if smaller)
SPEED_BATCH = 32
REFERENCE = "pytorch"


def encode_speed(model, texts: list[str], batch_size: int = SPEED_BATCH) -> float:
    """Passages per second of encode_document on the CPU, after one warm-up batch."""
    model.encode_document(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)
    started = time.perf_counter()
    model.encode_document(texts, batch_size=batch_size, show_progress_bar=False)
    return round(len(texts) / (time.perf_counter() - started), 1)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Lowest and mean cosine between the same passages' embeddings from two backends (rows L2-normalised)."""
    cosines = (reference * other).sum(axis=1)
    return {"min_cosine": round(float(cosines.min()), 5), "mean_cosine": round(float(cosines.mean()), 5)}


def speed_texts(corpus: dict[str, str]) -> list[str]:
    """SPEED_PASSAGES passages of the eval corpus, repeated when it has fewer."""
    texts = list(corpus.values())
    return (texts * (SPEED_PASSAGES // max(1, len(texts)) + 1))[:SPEED_PASSAGES]


def compare_backends(
    models: dict[str, object], corpus_rows: list[dict], pair_rows: list[dict], dims: list[int]
) -> dict:
    """Each backend scored on the eval split (all metrics per dim), its agreement with PyTorch, and its speed."""
    corpus = {row["chunk_id"]: row["text"] for row in corpus_rows}
    queries, relevant = pairs_to_queries(pair_rows)
    texts = speed_texts(corpus)
    reference = embed_blocks(models[REFERENCE], texts, SPEED_BATCH)
    record: dict = {"evaluation": None, "agreement": {}, "passages_per_s": {}}
    if queries:
        record["evaluation"] = {
            "dataset": "synthetic",
            "queries": len(queries),
            "passages": len(corpus),
            "dims": dims,
            "results": {},
        }
    for name, model in models.items():
        if queries:
            results, _ = score_retrieval(name, corpus, queries, relevant, dims, model=model)
            record["evaluation"]["results"][name] = results
        if name != REFERENCE:
            record["agreement"][name] = agreement(reference, embed_blocks(model, texts, SPEED_BATCH))
        record["passages_per_s"][name] = encode_speed(model, texts)
    return record


def export_run(run_dir: str, int8: bool = False) -> dict:
    """Write OUT/model/onnx/model.onnx (and model_qint8.onnx), compare them with PyTorch, write export.json and export.md."""
    import torch

    from ..embedding.models import load_model
    from ..embedding.onnx_export import export_onnx, load_onnx_model, quantize_int8

    run = open_run(run_dir, model=True)
    corpus_rows, pair_rows = eval_split(run)
    model_dir = str(run.model_dir.resolve())
    files = {"onnx": export_onnx(model_dir)}
    if int8:
        files["int8"] = quantize_int8(files["onnx"])
    models = {
        REFERENCE: load_model(model_dir, "cpu"),
        **{name: load_onnx_model(model_dir, path) for name, path in files.items()},
    }
    full = models[REFERENCE].get_embedding_dimension()
    dims = sorted({d for d in run.report.get("matryoshka_dims") or [full] if d <= full}, reverse=True)
    record = {
        "model": "model",
        "files": {name: path.relative_to(run.root.resolve()).as_posix() for name, path in files.items()},
        "size_mb": {
            REFERENCE: _size_mb(run.model_dir, "*.safetensors"),
            **{n: round(p.stat().st_size / 2**20, 1) for n, p in files.items()},
        },
        **compare_backends(models, corpus_rows, pair_rows, dims),
        "speed_setup": {
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "batch_size": SPEED_BATCH,
            "passages": SPEED_PASSAGES,
        },
    }
    (run.root / "export.json").write_text(json.dumps(record, indent=1) + "\n")
    (run.root / "export.md").write_text(export_markdown(record))
    return record


def _size_mb(folder: Path, pattern: str) -> float | None:
    sizes = [f.stat().st_size for f in folder.glob(pattern)]
    return round(sum(sizes) / 2**20, 1) if sizes else None


def export_rows(record: dict) -> list[dict]:
    """One row per backend: file, size, NDCG@10 per dim, agreement with PyTorch, CPU passages/s."""
    evaluation = record["evaluation"] or {"dims": [], "results": {}}
    rows = []
    for name, speed in record["passages_per_s"].items():
        row = {
            "backend": name,
            "file": record["files"].get(name, "model.safetensors"),
            "MB": record["size_mb"].get(name),
        }
        for dim in evaluation["dims"]:
            row[f"NDCG@10 dim {dim}"] = (
                evaluation["results"][name][dim]["ndcg@10"] if name in evaluation["results"] else "-"
            )
        found = record["agreement"].get(name)
        row["min cosine to pytorch"] = found["min_cosine"] if found else "-"
        row["passages/s (CPU)"] = speed
        rows.append(row)
    return rows


def export_markdown(record: dict) -> str:
    """OUT/export.md: the comparison table and how the figures were measured."""
    evaluation, setup = record["evaluation"], record["speed_setup"]
    measured = (
        f"NDCG@10 on the run's synthetic eval split ({evaluation['queries']} queries, {evaluation['passages']} passages)"
        if evaluation
        else "No eval split in this run: no NDCG@10"
    )
    return (
        "# Exported model\n\n"
        f"{measured}; cosine between each backend's and PyTorch's embeddings of the same passages; encode speed on "
        f"{setup['passages']} passages, batch {setup['batch_size']}, CPU ({setup['cpus']} cores), after a warm-up batch.\n\n"
        f"{markdown_table(export_rows(record))}\n"
        "Files live in `model/onnx/` (inputs `input_ids`, `attention_mask`[, `token_type_ids`]; output `last_hidden_state`; "
        "the SentenceTransformer's own pooling and normalisation apply on top).\n"
    )
