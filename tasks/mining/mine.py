"""Mine stage: positive-aware hard negatives (NV-Retriever TopK-PercPos) with the base model and FAISS."""

from __future__ import annotations

from collections.abc import Callable

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
from ..embedding.models import Backend, embed_texts, model_fingerprint, resolve_model
from ..settings import MineSettings
from .negatives import IndexInfo, NegativeStats, SelectionCounts, select_negatives


class MiningStats(SelectionCounts):
    """What mining found and what it refused: the pairs it was given, and the negative selection's counts."""

    pairs: int = 0
    pairs_missing_chunk: int = 0


class MiningResult(BaseModel):
    """References to the mined training rows and the embeddings behind them."""

    tuples: Ref
    pairs_without_negatives: Ref
    k: int
    index: IndexInfo | None = None
    stats: MiningStats
    corpus_embeddings: Ref | None = None
    query_embeddings: Ref | None = None


def _no_progress(message: str) -> None:
    """Default progress sink: say nothing."""


def mine_hard_negatives(
    pairs: list[dict],
    chunks: list[dict],
    base_model_dir: str,
    settings: MineSettings,
    store: RunStore,
    progress: Callable[[str], None] = _no_progress,
    backend: str = "torch",
) -> MiningResult:
    """Add k hard negatives from the whole corpus to each (query, chunk) pair; write n-tuples and leftover pairs.

    A pair's own `positive` text (a heading's section without the heading) replaces its chunk's text in the row.
    """
    row_of = {chunk["chunk_id"]: i for i, chunk in enumerate(chunks)}
    kept = [pair for pair in pairs if pair["chunk_id"] in row_of]
    corpus = store.put_jsonl("corpus", chunks)
    chunk_ref = corpus_embeddings(corpus, base_model_dir, store, settings.embed_batch_size, backend)
    progress(f"Corpus embeddings ready: {len(chunks)} chunks")
    queries = [pair["query"] for pair in kept]
    query_emb = embed_texts(
        base_model_dir, queries, batch_size=settings.embed_batch_size, backend=Backend(backend, store.url)
    )
    query_ref = store.put_npy("query-embeddings", query_emb)
    progress(f"Embedded {len(kept)} queries ({len(pairs) - len(kept)} pairs name no corpus chunk)")
    positive_idx = [row_of[pair["chunk_id"]] for pair in kept]
    k = settings.negatives_per_query
    neg_idx, found = np.zeros((0, k), np.int64), NegativeStats()
    if kept:
        neg_idx, found = select_negatives(
            query_emb,
            read_npy(chunk_ref),
            positive_idx,
            [chunk["doc_id"] for chunk in chunks],
            [normalize(chunk["text"]) for chunk in chunks],
            settings,
            query_texts=queries,
        )
    tuples, leftovers = [], []
    for pair, pos, negs in zip(kept, positive_idx, neg_idx):
        row = {"anchor": pair["query"], "positive": pair.get("positive") or chunks[pos]["text"]}
        if (negs >= 0).all():
            tuples.append(row | {f"negative_{j}": chunks[n]["text"] for j, n in enumerate(negs, start=1)})
        else:
            leftovers.append(row)
    stats = MiningStats(
        pairs=len(pairs), pairs_missing_chunk=len(pairs) - len(kept), **found.model_dump(exclude={"index"})
    )
    return MiningResult(
        tuples=store.put_jsonl("mined-tuples", tuples),
        pairs_without_negatives=store.put_jsonl("mined-pairs", leftovers),
        k=k,
        index=found.index,
        stats=stats,
        corpus_embeddings=chunk_ref,
        query_embeddings=query_ref,
    )


def report_rows(result: MiningResult) -> list[dict]:
    """The mining-report table: one (metric, value) row per figure."""
    stats, index = result.stats, result.index
    rows = [
        ("negatives per query (k)", result.k),
        ("index", f"{index.type} over {index.vectors} vectors{' on GPU' if index.gpu else ''}" if index else "none"),
        (f"index recall@{index.k if index else 0} vs exact", index.recall_at_k if index else None),
        ("pairs", stats.pairs),
        ("pairs naming no corpus chunk (dropped)", stats.pairs_missing_chunk),
        ("tuples written (all k negatives)", result.tuples.count),
        ("pairs written without negatives", result.pairs_without_negatives.count),
        ("queries with some but fewer than k negatives", stats.queries_with_some_negatives),
        ("queries with no negative", stats.queries_without_negative),
        ("candidates considered", stats.candidates_considered),
        ("rejected: positive of the same query", stats.rejected_positive),
        ("rejected: near-duplicate of the positive", stats.rejected_near_duplicate),
        ("rejected: same document", stats.rejected_same_document),
        ("rejected: false negative (score >= ratio x positive)", stats.rejected_false_negative),
        ("mean margin (positive - negative)", stats.mean_margin),
    ]
    for name, quantiles in (("positive", stats.positive_scores), ("negative", stats.negative_scores)):
        rows += [(f"{name} score {q}", v) for q, v in quantiles.model_dump().items()]
    return [{"metric": name, "value": "" if value is None else str(value)} for name, value in rows]


@task(
    name="mine",
    cache_policy=code_and_inputs(exclude=("base_model", "backend")),  # the backends offered give the same vectors
    persist_result=True,
    retries=1,
    retry_condition_fn=retry_if_transient,
)
def mine_task(
    train_pairs: Ref,
    corpus: Ref,
    base_model: str,
    settings: MineSettings,
    store_url: str,
    model_sha: str,
    backend: str = "torch",
) -> MiningResult:
    """Mine hard negatives for the train pairs; model_sha (model_fingerprint of the base model) keys the cache."""
    logger = get_run_logger()
    model_dir = resolve_model(base_model)
    if model_fingerprint(model_dir) != model_sha:
        raise ValueError(
            f"model_sha is not the fingerprint of {base_model}: pass model_fingerprint(resolve_model(name))"
        )
    logger.info(
        "Mining %d negative(s) for %d train pairs over %d chunks",
        settings.negatives_per_query,
        train_pairs.count,
        corpus.count,
    )
    store = RunStore(store_url)
    result = mine_hard_negatives(
        read_jsonl(train_pairs), read_jsonl(corpus), model_dir, settings, store, logger.info, backend
    )
    if result.index:
        index = result.index
        logger.info("Index %s over %d chunks, recall@%d %.4f", index.type, index.vectors, index.k, index.recall_at_k)
    logger.info(
        "Mined %d tuples and %d pairs without negatives; refused %d false negatives, %d near-duplicates, %d same-document",
        result.tuples.count,
        result.pairs_without_negatives.count,
        result.stats.rejected_false_negative,
        result.stats.rejected_near_duplicate,
        result.stats.rejected_same_document,
    )
    publish_table("mining-report", report_rows(result), "Hard-negative mining")
    return result
