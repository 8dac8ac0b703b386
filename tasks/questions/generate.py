"""Generate stage: questions for every chunk from an LLM, cached per chunk as answers arrive, then filtered."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import numpy as np
from prefect import task
from prefect.logging import get_run_logger

from ..core.caching import code_and_inputs
from ..core.faults import retry_if_transient
from ..core.objects import Ref, read_jsonl, read_npy
from ..core.store import RunStore
from ..embedding.models import Backend, resolve_model
from ..llm.batch import AskPlan, Sharing, ask_all, run_sync
from ..llm.client import LLMClient, Usage
from ..llm.endpoint import LLMEndpoint, resolve_api_key
from ..llm.errors import LLMRejectedError, LLMTransientError
from ..settings import FilterSettings, LLMSettings
from .filters import filter_questions
from .prompts import Example, ask, domain_examples, max_tokens, prompt_fingerprint, prompt_style, response_format_for
from .qa_cache import cache_key, candidates_per_chunk, read_answer, sample_chunks
from .report import GenerationResult, GenerationStats, publish_report, samples, shared_note

FAILED_LIST_CAP = 50


async def collect_answers(
    chunks: list[dict], llm: LLMSettings, endpoint: LLMEndpoint, store: RunStore, examples: list[Example] = ()
) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]], GenerationStats]:
    """Questions per cache key (cached or asked now, each persisted as it arrives), failures per key, and run stats."""
    wanted = candidates_per_chunk(llm)
    answers: dict[str, list[str]] = {}
    cached_cost = 0.0
    todo: dict[str, tuple[dict, list[str]]] = {}
    for chunk in chunks:
        key = cache_key(chunk["text"], llm)
        if key in answers or key in todo:
            continue
        record = read_answer(store.key_path("qa-cache", key, ".json"))
        have = record["questions"] if record else []
        cached_cost += float(record.get("cost_usd", 0.0)) if record else 0.0
        if len(have) >= wanted:
            answers[key] = have[:wanted]
        else:
            todo[key] = (chunk, have)
    stats = GenerationStats(cache_hits=len(answers))
    failures: dict[str, tuple[str, str]] = {}
    usage = Usage()
    if todo:
        settings = llm.model_copy(update={"max_tokens": max_tokens(llm)})
        client = LLMClient(endpoint, settings, api_key=await asyncio.to_thread(resolve_api_key, llm))
        usage = client.usage
        fmt = response_format_for(endpoint, wanted) if prompt_style(llm) == "json" else None
        record = lambda questions, cost: dict(
            questions=questions, model=llm.model, prompt=prompt_fingerprint(llm), cost_usd=cost
        )  # noqa: E731

        def stored(key: str) -> list[str] | None:  # another run's answer, once it has stored enough questions
            nonlocal cached_cost
            found = read_answer(store.key_path("qa-cache", key, ".json"))
            if not found or len(found["questions"]) < wanted:
                return None
            cached_cost += float(found.get("cost_usd", 0.0))
            return found["questions"][:wanted]

        plan = AskPlan(
            ask=lambda chunk, have: ask(client, chunk, wanted, fmt, have, examples),
            record=record,
            store=store,
            usage=usage,
            sharing=Sharing(lease_s=llm.max_attempts * (llm.timeout_s + llm.max_backoff_s), stored=stored),
            concurrency=llm.max_concurrency,
            max_consecutive_failures=llm.max_consecutive_failures,
            answered_before=len(answers),
        )
        asked = await ask_all(todo, plan)
        answers.update(asked.answers)
        failures = asked.failures
        stats.cache_hits += asked.shared
        stats.answered_by_other_run = asked.shared
        stats.response_format = (fmt or {}).get("type") if client.response_format_ok else "rejected, sent without"
    for key, (_, have) in todo.items():  # a chunk that failed now still has its earlier questions
        if key not in answers and have:
            answers[key] = have
    return (
        answers,
        failures,
        stats.model_copy(
            update=dict(
                llm_calls=usage.calls,
                retries=usage.retries,
                rate_limited=usage.rate_limited,
                faults=dict(usage.faults),
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=round(usage.cost_usd, 6),
                cost_usd_total=round(usage.cost_usd + cached_cost, 6),
            )
        ),
    )


def generate_pairs(
    chunks: list[dict],
    llm: LLMSettings,
    filters: FilterSettings,
    endpoint: LLMEndpoint,
    base_model_dir: str,
    store: RunStore,
    chunk_vectors: np.ndarray | None = None,
    backend: str = "torch",
) -> GenerationResult:
    """Ask the LLM for questions about every chunk (paying only for uncached ones), filter them, store the pairs.

    chunk_vectors: the base model's embeddings of the chunks, row for row (else the round-trip filter computes them).

    Each kept row carries `candidate`, the question's place among its chunk's answers (the split keeps the first
    ones for held-out documents) and `base_rank`, its chunk's rank under the base model (the round-trip rule).
    """
    started = time.monotonic()
    corpus, chunks = chunks, sample_chunks(chunks, llm.chunk_fraction)
    examples = domain_examples(corpus, llm.few_shot)
    answers, failures, stats = run_sync(collect_answers(chunks, llm, endpoint, store, examples))
    keys = [cache_key(c["text"], llm) for c in chunks]
    candidates = [
        {"query": q, "chunk_id": c["chunk_id"], "doc_id": c["doc_id"], "candidate": i}
        for c, k in zip(chunks, keys)
        for i, q in enumerate(answers.get(k, []))
    ]
    texts = {c["chunk_id"]: c["text"] for c in corpus}
    kept, dropped = filter_questions(
        candidates, texts, filters, base_model_dir, chunk_vectors, Backend(backend, store.url)
    )
    rows = sorted(kept, key=lambda r: (r["doc_id"], r["chunk_id"], r["candidate"]))
    failed = [
        {"chunk_id": c["chunk_id"], "reason": failures[k][0], "detail": failures[k][1][:300]}
        for c, k in zip(chunks, keys)
        if k in failures and k not in answers
    ]
    stats = stats.model_copy(
        update=dict(
            chunks_in=len(corpus),
            chunks_asked=len(chunks),
            chunks_not_sampled=len(corpus) - len(chunks),
            chunks_answered=sum(1 for k in keys if k in answers),
            chunks_failed=failed[:FAILED_LIST_CAP],
            chunks_failed_count=len(failed),
            failed_reasons=dict(Counter(f["reason"] for f in failed)),
            questions_raw=len(candidates),
            questions_kept=len(kept),
            dropped=dict(Counter(d["reason"] for d in dropped)),
            model=llm.model,
            served_by=endpoint.model,
            prompt=prompt_fingerprint(llm),
            candidates_per_chunk=candidates_per_chunk(llm),
            elapsed_s=round(time.monotonic() - started, 2),
            samples=samples(kept, dropped, texts),
            examples=[q for q, _ in examples],
        )
    )
    return GenerationResult(pairs=store.put_jsonl("pairs", rows), stats=stats)


@task(
    name="generate",
    cache_policy=code_and_inputs(exclude=("endpoint", "embeddings", "backend")),  # backends give the same vectors
    persist_result=True,
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_if_transient,
)
def generate_task(
    corpus: Ref,
    llm: LLMSettings,
    filters: FilterSettings,
    base_model: str,
    store_url: str,
    endpoint: LLMEndpoint,
    embeddings: Ref | None = None,
    backend: str = "torch",
) -> GenerationResult:
    """Questions for every chunk of the corpus; cached per chunk, so only new or failed chunks cost LLM calls.

    embeddings: the corpus embeddings under base_model, which the round-trip filter then reuses instead of recomputing;
    backend: embed.backend as the run resolved it."""
    logger = get_run_logger()
    chunks = read_jsonl(corpus)
    asked = len(sample_chunks(chunks, llm.chunk_fraction))
    if chunks and not asked:
        raise ValueError(f"llm.chunk_fraction {llm.chunk_fraction:g} picks none of the {len(chunks)} chunks: raise it")
    logger.info(
        "Generating %d questions per chunk for %d of %d chunks (chunk_fraction %g) with %s (served by %s, prompt %s)",
        candidates_per_chunk(llm),
        asked,
        len(chunks),
        llm.chunk_fraction,
        llm.model,
        endpoint.model,
        prompt_fingerprint(llm),
    )
    vectors = read_npy(embeddings) if embeddings is not None and filters.roundtrip_top_k > 0 else None
    model_dir, store = resolve_model(base_model), RunStore(store_url)
    result = generate_pairs(chunks, llm, filters, endpoint, model_dir, store, vectors, backend)
    s = result.stats
    if chunks and not s.chunks_answered:
        reason = s.chunks_failed[0]["detail"] if s.chunks_failed else "no answer"
        transient = any(r.startswith("transient") for r in s.failed_reasons)
        raise (LLMTransientError if transient else LLMRejectedError)(f"no chunk was answered; first failure: {reason}")
    logger.info(
        "Kept %d of %d questions (%s); %d chunks answered, %d failed; %d LLM calls, %d cache hits%s, %d tokens, $%.4f",
        s.questions_kept,
        s.questions_raw,
        ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "none dropped",
        s.chunks_answered,
        s.chunks_failed_count,
        s.llm_calls,
        s.cache_hits,
        shared_note(s),
        s.prompt_tokens + s.completion_tokens,
        s.cost_usd,
    )
    if s.chunks_failed_count:
        logger.warning(
            "%d chunks failed and will be asked again next run: %s", s.chunks_failed_count, s.failed_reasons
        )
    publish_report(result)
    return result
