"""Retrieval quality: base vs tuned per Matryoshka dim, BM25, BEIR-layout datasets, paired-bootstrap intervals.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .beir import DatasetError, beir_fingerprint, export_beir, load_beir
    from .evaluate import (
        EvalReport,
        evaluate_beir_task,
        evaluate_dataset,
        evaluate_models,
        evaluate_task,
    )
    from .retrieval import score_bm25
    from .tables import render_table
    from .uncertainty import DeltaInterval, paired_bootstrap

EXPORTS = {
    "DatasetError": "beir",
    "DeltaInterval": "uncertainty",
    "EvalReport": "evaluate",
    "beir_fingerprint": "beir",
    "evaluate_beir_task": "evaluate",
    "evaluate_dataset": "evaluate",
    "evaluate_models": "evaluate",
    "evaluate_task": "evaluate",
    "export_beir": "beir",
    "load_beir": "beir",
    "paired_bootstrap": "uncertainty",
    "render_table": "tables",
    "score_bm25": "retrieval",
}
__all__ = [
    "DatasetError",
    "DeltaInterval",
    "EvalReport",
    "beir_fingerprint",
    "evaluate_beir_task",
    "evaluate_dataset",
    "evaluate_models",
    "evaluate_task",
    "export_beir",
    "load_beir",
    "paired_bootstrap",
    "render_table",
    "score_bm25",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
