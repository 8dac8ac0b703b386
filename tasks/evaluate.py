"""Evaluate stage: retrieval metrics per Matryoshka dimension, base vs tuned, on the synthetic or a user's set."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tasks.beir import BeirDataset, load_beir, normalize_ws, pairs_to_queries
from tasks.embed import load_model
from tasks.caching import code_and_inputs
from tasks.store import Ref, RunStore, read_jsonl
from tasks.uncertainty import DeltaInterval, paired_bootstrap

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100")
REPORT_METRICS = ("ndcg@10", "mrr@10", "recall@10")
METRIC_NAMES = {
    "ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@10": "Recall@10", "recall@100": "Recall@100", "map@100": "MAP@100"
}
DELTA_LABEL = "tuned - base"
ENCODE_BLOCK = 8192  # passages embedded per encode call, written into one preallocated array
MAX_SCORE_CELLS = 1 << 25  # query x passage scores held at once while ranking (128 MiB of float32)

Results = dict[str, dict[int, dict[str, float]]]
Intervals = dict[str, dict[int, dict[str, DeltaInterval]]]  # 'tuned-base' -> dim -> metric -> interval


class EvalReport(BaseModel):
    """Metrics per model label, per dim, per metric, with what they were measured on."""

    label: str
    dims: list[int]
    queries: int
    passages: int
    results: Results
    intervals: Intervals = {}
    ignored_queries: int = 0
    train_overlap: Optional[int] = None
    train_overlap_relevant: Optional[int] = None
    ref: Optional[Ref] = None


def check_dims(dims: Iterable[int], full: int, model: str) -> list[int]:
    """Distinct dims, largest first; a dim outside 1..full is a clear error."""
    checked = sorted({int(d) for d in dims}, reverse=True)
    if not checked:
        raise ValueError("no evaluation dimension given")
    bad = [d for d in checked if d < 1 or d > full]
    if bad:
        raise ValueError(f"dimension {bad[0]} is not available: model {model} has {full} dimensions")
    return checked


def embed_blocks(
    model, texts: list[str], batch_size: int, show_progress: bool = False, query: bool = False
) -> np.ndarray:
    """L2-normalised float32 passage (or query) embeddings, encoded block by block into one array."""
    encode = model.encode_query if query else model.encode_document
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    starts = range(0, len(texts), ENCODE_BLOCK)
    if show_progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="Embedding queries" if query else "Embedding passages", unit="block")
    for start in starts:
        block = texts[start : start + ENCODE_BLOCK]
        out[start : start + len(block)] = encode(
            block, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    return out


class _FixedQueries:
    """Stands in for the model in InformationRetrievalEvaluator.compute_all_metrics: queries embedded already."""

    def __init__(self, embeddings) -> None:
        self.embeddings = embeddings

    def encode_query(self, *args, **kwargs):
        return self.embeddings


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first dim components of each row, re-normalised to unit length."""
    head = np.array(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    head /= np.maximum(norms, 1e-12)
    return head


PerQuery = dict[int, dict[str, list[float]]]  # dim -> metric -> one value per query, in a fixed query order


def _ir_evaluator_class():
    """InformationRetrievalEvaluator that also keeps each query's metrics (the library's definitions, query by query)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class PerQueryEvaluator(InformationRetrievalEvaluator):
        per_query: list[dict] = []

        def compute_metrics(self, queries_result_list):
            ids, texts = self.queries_ids, self.queries
            per_query = []
            try:
                for qid, text, hits in zip(ids, texts, queries_result_list):
                    self.queries_ids, self.queries = [qid], [text]
                    per_query.append(super().compute_metrics([hits]))
            finally:
                self.queries_ids, self.queries = ids, texts
            self.per_query = per_query
            return super().compute_metrics(queries_result_list)

    return PerQueryEvaluator


def _metric_values(scores: dict) -> dict[str, float]:
    return {
        "ndcg@10": float(scores["ndcg@k"][10]),
        "mrr@10": float(scores["mrr@k"][10]),
        "recall@10": float(scores["recall@k"][10]),
        "recall@100": float(scores["recall@k"][100]),
        "map@100": float(scores["map@k"][100]),
    }


def score_retrieval(
    model_dir: str,
    corpus: dict[str, str],
    queries: dict[str, str],
    relevant: dict[str, set[str]],
    dims: list[int],
    batch_size: int = 64,
    show_progress: bool = False,
) -> tuple[dict[int, dict[str, float]], PerQuery]:
    """Metrics per dim and each query's metrics per dim: corpus and queries embedded once, truncated per dim."""
    import torch
    from sentence_transformers.util import cos_sim

    model = load_model(model_dir)
    dims = check_dims(dims, model.get_embedding_dimension(), model_dir)
    missing = next((cid for cids in relevant.values() for cid in cids if cid not in corpus), None)
    if missing is not None:
        raise ValueError(f"relevant passage id '{missing}' is not in the corpus")
    evaluator = _ir_evaluator_class()(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        corpus_chunk_size=min(50_000, max(1024, MAX_SCORE_CELLS // max(1, len(queries)))),
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, 100],
        map_at_k=[100],
        batch_size=batch_size,
        write_csv=False,
        score_functions={"cosine": cos_sim},
    )
    if not evaluator.queries:
        raise ValueError("no query has a relevant passage")
    full = embed_blocks(model, evaluator.corpus, batch_size, show_progress)
    full_queries = embed_blocks(model, evaluator.queries, batch_size, show_progress, query=True)
    results: dict[int, dict[str, float]] = {}
    per_query: PerQuery = {}
    for dim in dims:
        passages = torch.from_numpy(truncate(full, dim)).to(model.device)
        queries_at_dim = _FixedQueries(torch.from_numpy(truncate(full_queries, dim)).to(model.device))
        results[dim] = _metric_values(evaluator.compute_all_metrics(queries_at_dim, corpus_embeddings=passages)["cosine"])
        rows = [_metric_values(scores) for scores in evaluator.per_query]
        per_query[dim] = {metric: [row[metric] for row in rows] for metric in METRICS}
    return results, per_query


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
) -> tuple[Results, dict[str, PerQuery]]:
    """score_retrieval for each labelled model folder: {label: {dim: {metric: value}}} and the per-query values."""
    scored = {
        label: score_retrieval(model_dir, corpus, queries, relevant, dims, batch_size, show_progress)
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


def table_rows(results: Results, metrics: Iterable[str] = METRICS, intervals: Optional[Intervals] = None) -> list[dict]:
    """One row per dim x model (largest dim first), plus a 'tuned - base' row when both labels exist, and beside it
    the 95% paired-bootstrap interval and verdict of the NDCG@10 difference when `intervals` has them."""
    metrics = list(metrics)
    dims = sorted({dim for per_dim in results.values() for dim in per_dim}, reverse=True)
    rows = []
    for dim in dims:
        for label, per_dim in results.items():
            if dim in per_dim:
                rows.append({"dim": dim, "model": label, **{METRIC_NAMES[m]: round(per_dim[dim][m], 4) for m in metrics}})
        base, tuned = results.get("base", {}).get(dim), results.get("tuned", {}).get(dim)
        if base and tuned:
            delta = {METRIC_NAMES[m]: round(tuned[m] - base[m], 4) for m in metrics}
            rows.append({"dim": dim, "model": DELTA_LABEL, **delta})
            found = (intervals or {}).get("tuned-base", {}).get(dim, {}).get("ndcg@10")
            if found is not None:
                rows[-1]["NDCG@10 95% CI"] = f"[{found.low:+.4f}, {found.high:+.4f}]: {found.verdict}"
    return rows


def render_table(results: Results, title: str, metrics: Iterable[str] = METRICS) -> str:
    """Markdown table of table_rows under a bold title; deltas carry an explicit sign."""
    metrics = list(metrics)
    header = ["dim", "model", *(METRIC_NAMES[m] for m in metrics)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(results, metrics):
        spec = "+.4f" if row["model"] == DELTA_LABEL else ".4f"
        cells = [str(row["dim"]), row["model"], *(format(row[METRIC_NAMES[m]], spec) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_overlap(texts: Iterable[str], positives: Iterable[str]) -> int:
    """How many texts equal a training positive after whitespace normalisation."""
    known = {normalize_ws(p) for p in positives}
    return sum(1 for text in texts if normalize_ws(text) in known)


def evaluate_pairs(
    models: dict[str, str],
    eval_pair_rows: list[dict],
    corpus_rows: list[dict],
    dims: list[int],
    label: str = "synthetic",
) -> EvalReport:
    """Score models on (query, chunk) pairs against all chunks: a query's own chunk is its relevant passage."""
    corpus = {row["chunk_id"]: row["text"] for row in corpus_rows}
    queries, relevant = pairs_to_queries(eval_pair_rows)
    results, per_query = evaluate_models(models, corpus, queries, relevant, dims)
    return EvalReport(
        label=label, dims=sorted(dims, reverse=True), queries=len(queries), passages=len(corpus), results=results,
        intervals=delta_intervals(per_query),
    )  # fmt: skip


def evaluate_dataset(
    models: dict[str, str], dataset: BeirDataset, dims: list[int], train_positives: Optional[set[str]] = None
) -> EvalReport:
    """Score models on a user's BEIR dataset; counts its passages that were also training positives."""
    results, per_query = evaluate_models(models, dataset.corpus, dataset.queries, dataset.relevant, dims)
    report = EvalReport(
        label=f"user:{dataset.name}",
        dims=sorted(dims, reverse=True),
        queries=len(dataset.queries),
        passages=len(dataset.corpus),
        results=results,
        intervals=delta_intervals(per_query),
        ignored_queries=dataset.ignored_queries,
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
    for row in table_rows(report.results):
        figures = {k: v for k, v in row.items() if "@" in k}
        logger.info("%s dim %d %s: %s", report.label, row["dim"], row["model"], figures)
    user = report.label.startswith("user:")
    what = "your labelled queries" if user else "LLM-generated questions on held-out documents"
    description = f"Retrieval on the **{report.label}** eval set ({what}): "
    description += f"{report.queries} queries, {report.passages} passages"
    if report.train_overlap is not None:
        description += (
            f"; {report.train_overlap} passages ({report.train_overlap_relevant} judged relevant) were training positives"
        )
    create_table_artifact(
        key="evaluation-report",
        table=[{"dataset": report.label, **row} for row in table_rows(report.results, REPORT_METRICS, report.intervals)],
        description=description,
    )
    return report


@task(name="evaluate", cache_policy=code_and_inputs("tasks.beir", exclude=("models",)), persist_result=True, retries=1)
def evaluate_task(
    models: dict[str, str],
    model_shas: dict[str, str],
    eval_pairs: Ref,
    corpus: Ref,
    dims: list[int],
    store_url: str,
    label: str = "synthetic",
) -> EvalReport:
    """Evaluate labelled models on the eval pairs; cached on model_shas (content), not on model paths."""
    report = evaluate_pairs(models, read_jsonl(eval_pairs), read_jsonl(corpus), dims, label)
    return _publish(report, store_url)


@task(
    name="evaluate-beir",
    cache_policy=code_and_inputs("tasks.beir", exclude=("models", "dataset_dir")),
    persist_result=True,
    retries=1,
)
def evaluate_beir_task(
    models: dict[str, str],
    model_shas: dict[str, str],
    dataset_dir: str,
    dataset_sha: str,
    dims: list[int],
    store_url: str,
    train_pairs: Optional[Ref] = None,
    corpus: Optional[Ref] = None,
) -> EvalReport:
    """Evaluate on a BEIR folder (cached on its content hash, tasks.beir.beir_fingerprint); the training
    positives are the corpus chunks named by train_pairs."""
    positives = None
    if train_pairs is not None and corpus is not None:
        chunk_ids = {row["chunk_id"] for row in read_jsonl(train_pairs)}
        positives = {row["text"] for row in read_jsonl(corpus) if row["chunk_id"] in chunk_ids}
    report = evaluate_dataset(models, load_beir(dataset_dir), dims, positives)
    return _publish(report, store_url)
