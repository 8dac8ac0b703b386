"""Evaluate stage: retrieval metrics per Matryoshka dimension, base vs tuned, on the synthetic or a user's set."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.caching import code_and_inputs
from ..core.faults import retry_if_transient
from ..core.objects import Ref, read_jsonl, read_npy
from ..core.reports import publish_table
from ..core.store import RunStore
from ..core.text import normalize
from ..embedding.corpus import corpus_embeddings
from ..embedding.models import TORCH, Backend, load_model
from .beir import BeirDataset, load_beir, pairs_to_queries
from .retrieval import PerQuery, embed_blocks, score_bm25, score_hybrid, score_retrieval
from .tables import REPORT_METRICS, Intervals, Results, table_rows
from .uncertainty import paired_bootstrap


class EvalReport(BaseModel):
    """Metrics per model label, per dim, per metric, with what they were measured on."""

    label: str
    dims: list[int]
    queries: int
    passages: int
    results: Results
    intervals: Intervals = {}
    ignored_queries: int = 0
    train_overlap: int | None = None
    train_overlap_relevant: int | None = None
    bm25: dict[str, float] | None = None
    hybrid: dict[int, dict[str, float]] | None = (
        None  # BM25 and the tuned model fused by reciprocal rank, full and smallest dim
    )
    ref: Ref | None = None


def evaluate_retrieval(
    model_dir: str,
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    batch_size: int = 64,
    show_progress: bool = False,
) -> dict[int, dict[str, float]]:
    """Metrics per dim of one model (score_retrieval without the per-query values)."""
    return score_retrieval(model_dir, corpus, queries, relevant, dims, batch_size, show_progress)[0]


def evaluate_models(
    models: dict[str, str],
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    batch_size: int = 64,
    show_progress: bool = False,
    passages: dict[str, np.ndarray] | None = None,
    backend: Backend = TORCH,
) -> tuple[Results, dict[str, PerQuery]]:
    """score_retrieval for each labelled model folder: {label: {dim: {metric: value}}} and the per-query values.
    `passages`: each label's corpus embeddings, where they exist already (row i = the i-th passage of `corpus`)."""
    passages = passages or {}
    scored = {
        label: score_retrieval(
            model_dir,
            corpus,
            queries,
            relevant,
            dims,
            batch_size,
            show_progress,
            load_model(model_dir, None, backend),
            passages.get(label),
        )
        for label, model_dir in models.items()
    }
    return {label: r for label, (r, _) in scored.items()}, {label: q for label, (_, q) in scored.items()}


def delta_intervals(per_query: dict[str, PerQuery], metrics: Iterable[str] = REPORT_METRICS) -> Intervals:
    """Paired-bootstrap intervals of tuned minus each other model ('tuned-base', 'tuned-current'), per dim and metric."""
    tuned = per_query.get("tuned")
    out: Intervals = {}
    for label, other in per_query.items():
        if label == "tuned" or tuned is None:
            continue
        out[f"tuned-{label}"] = {
            dim: {m: paired_bootstrap(tuned[dim][m], other[dim][m]) for m in metrics} for dim in tuned if dim in other
        }
    return out


def train_overlap(texts: Iterable[str], positives: Iterable[str]) -> int:
    """How many texts equal a training positive after whitespace normalisation."""
    known = {normalize(p, "whitespace") for p in positives}
    return sum(1 for text in texts if normalize(text, "whitespace") in known)


def evaluate_pairs(
    models: dict[str, str],
    eval_pair_rows: list[dict],
    corpus_rows: list[dict],
    dims: list[int],
    label: str = "synthetic",
    passages: dict[str, np.ndarray] | None = None,
    backend: Backend = TORCH,
) -> EvalReport:
    """Score models on (query, chunk) pairs against all chunks: a query's own chunk is its relevant passage.
    `passages`: each label's embeddings of the chunks, row for row, where they exist already."""
    corpus = {row["chunk_id"]: row["text"] for row in corpus_rows}
    queries, relevant = pairs_to_queries(eval_pair_rows)
    passages = with_tuned_passages(models, corpus, passages or {}, backend)
    results, per_query = evaluate_models(models, corpus, queries, relevant, dims, passages=passages, backend=backend)
    return EvalReport(
        label=label,
        dims=sorted(dims, reverse=True),
        queries=len(queries),
        passages=len(corpus),
        results=results,
        intervals=delta_intervals(per_query),
        bm25=score_bm25(corpus, queries, relevant),
        hybrid=hybrid(models, corpus, queries, relevant, dims, passages, backend),
    )


def with_tuned_passages(
    models: dict[str, str], corpus: dict[str, str], passages: dict[str, np.ndarray], backend: Backend = TORCH
) -> dict:
    """`passages` with the tuned model's embeddings of the corpus, computed here when missing (scoring and the hybrid
    row both read them)."""
    if "tuned" not in models or "tuned" in passages:
        return passages
    return {**passages, "tuned": embed_blocks(load_model(models["tuned"], None, backend), list(corpus.values()), 64)}


def hybrid(
    models: dict[str, str],
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    passages: dict[str, np.ndarray],
    backend: Backend = TORCH,
) -> dict[int, dict[str, float]] | None:
    """The hybrid row: BM25 and the tuned model fused, at its full and its smallest dim; None without a tuned model."""
    if "tuned" not in models:
        return None
    ends = [max(dims), min(dims)]
    return score_hybrid(models["tuned"], corpus, queries, relevant, ends, passages.get("tuned"), backend=backend)


def evaluate_dataset(
    models: dict[str, str],
    dataset: BeirDataset,
    dims: list[int],
    train_positives: set[str] | None = None,
    backend: Backend = TORCH,
) -> EvalReport:
    """Score models on a user's BEIR dataset; counts its passages that were also training positives."""
    passages = with_tuned_passages(models, dataset.corpus, {}, backend)
    results, per_query = evaluate_models(
        models, dataset.corpus, dataset.queries, dataset.relevant, dims, passages=passages, backend=backend
    )
    report = EvalReport(
        label=f"user:{dataset.name}",
        dims=sorted(dims, reverse=True),
        queries=len(dataset.queries),
        passages=len(dataset.corpus),
        results=results,
        intervals=delta_intervals(per_query),
        ignored_queries=dataset.ignored_queries,
        bm25=score_bm25(dataset.corpus, dataset.queries, dataset.relevant),
        hybrid=hybrid(models, dataset.corpus, dataset.queries, dataset.relevant, dims, passages, backend),
    )
    if train_positives is not None:
        judged = {cid for cids in dataset.relevant.values() for cid in cids}
        report.train_overlap = train_overlap(dataset.texts.values(), train_positives)
        report.train_overlap_relevant = train_overlap((dataset.texts[c] for c in judged), train_positives)
    return report


def _publish(report: EvalReport, store_url: str) -> EvalReport:
    """Store the report JSON, log every figure and publish the evaluation-report table."""
    report.ref = RunStore(store_url).put_json("evaluation", report.model_dump(exclude={"ref"}))
    logger = get_run_logger()
    for row in table_rows(report.results, bm25=report.bm25):
        figures = {k: v for k, v in row.items() if "@" in k}
        logger.info("%s dim %s %s: %s", report.label, row["dim"], row["model"], figures)
    user = report.label.startswith("user:")
    what = "your labelled queries" if user else "LLM-generated questions on held-out documents"
    description = f"Retrieval on the **{report.label}** eval set ({what}): "
    description += f"{report.queries} queries, {report.passages} passages"
    if report.train_overlap is not None:
        description += f"; {report.train_overlap} passages ({report.train_overlap_relevant} judged relevant) were training positives"
    rows = [
        {"dataset": report.label, **row}
        for row in table_rows(report.results, REPORT_METRICS, report.intervals, report.bm25, report.hybrid)
    ]
    publish_table("evaluation-report", rows, description)
    return report


@task(
    name="evaluate",
    cache_policy=code_and_inputs(exclude=("models", "backend")),  # the backends offered give the same vectors
    persist_result=True,
    retries=1,
    retry_condition_fn=retry_if_transient,
)
def evaluate_task(
    models: dict[str, str],
    model_shas: dict[str, str],
    eval_pairs: Ref,
    corpus: Ref,
    dims: list[int],
    store_url: str,
    label: str = "synthetic",
    backend: str = "torch",
) -> EvalReport:
    """Evaluate labelled models on the eval pairs; cached on model_shas (content), not on model paths. Each model's
    embeddings of the corpus come from the run store (computed once per corpus and model, then reused by publish)."""
    store = RunStore(store_url)
    passages = {
        name: read_npy(corpus_embeddings(corpus, folder, store, backend=backend)) for name, folder in models.items()
    }
    rows = read_jsonl(eval_pairs), read_jsonl(corpus)
    report = evaluate_pairs(models, *rows, dims, label, passages, Backend(backend, store.url))
    return _publish(report, store_url)


@task(
    name="evaluate-beir",
    cache_policy=code_and_inputs(exclude=("models", "dataset_dir", "backend")),
    persist_result=True,
    retries=1,
    retry_condition_fn=retry_if_transient,
)
def evaluate_beir_task(
    models: dict[str, str],
    model_shas: dict[str, str],
    dataset_dir: str,
    dataset_sha: str,
    dims: list[int],
    store_url: str,
    train_pairs: Ref | None = None,
    corpus: Ref | None = None,
    backend: str = "torch",
) -> EvalReport:
    """Evaluate on a BEIR folder (cached on its content hash, domain_embed.tasks.evaluation.beir.beir_fingerprint); the training
    positives are the corpus chunks named by train_pairs."""
    positives = None
    if train_pairs is not None and corpus is not None:
        chunk_ids = {row["chunk_id"] for row in read_jsonl(train_pairs)}
        positives = {row["text"] for row in read_jsonl(corpus) if row["chunk_id"] in chunk_ids}
    report = evaluate_dataset(models, load_beir(dataset_dir), dims, positives, Backend(backend, store_url))
    return _publish(report, store_url)
