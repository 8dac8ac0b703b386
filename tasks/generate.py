"""Generate stage: questions for every chunk from an LLM, cached per chunk as answers arrive, then filtered."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Optional

import numpy as np
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from domain_embed.tasks.caching import code_and_inputs
from domain_embed.tasks.faults import retry_if_transient
from domain_embed.tasks.embed import resolve_model
from domain_embed.tasks.llm import LLMClient, Usage
from domain_embed.tasks.llm_endpoint import LLMEndpoint, resolve_api_key
from domain_embed.tasks.llm_errors import LLMRejectedError, LLMTransientError
from domain_embed.tasks.llm_batch import Sharing, ask_all, run_sync
from domain_embed.tasks.prompts import Example, ask, domain_examples, max_tokens, prompt_fingerprint, prompt_style, response_format_for
from domain_embed.tasks.qa_filters import filter_questions
from domain_embed.tasks.reports import publish_table
from domain_embed.tasks.settings import FilterSettings, LLMSettings
from domain_embed.tasks.store import Ref, RunStore, read_jsonl, read_npy, read_record, sha256_bytes, stable_hash

FAILED_LIST_CAP = 50


class GenerationStats(BaseModel):
    """What generation did: chunks asked, answered and failed, questions kept and dropped (with reasons), LLM usage."""

    model: str = ""
    served_by: str = ""
    prompt: str = ""
    candidates_per_chunk: int = 0
    chunks_in: int = 0
    chunks_asked: int = 0
    chunks_not_sampled: int = 0
    chunks_answered: int = 0
    chunks_failed: list[dict] = []
    chunks_failed_count: int = 0
    failed_reasons: dict[str, int] = {}
    questions_raw: int = 0
    questions_kept: int = 0
    dropped: dict[str, int] = {}
    cache_hits: int = 0
    answered_by_other_run: int = 0
    llm_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    faults: dict[str, int] = {}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_usd_total: float = 0.0
    response_format: Optional[str] = None
    elapsed_s: float = 0.0
    samples: dict = {}
    examples: list[str] = []  # the worked examples' queries (human-written headings of the corpus)

    def as_reused(self) -> "GenerationStats":
        """These stats as seen by a run that reused this result from the task cache: no call, every chunk a cache hit."""
        free = dict(llm_calls=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, cache_hits=self.chunks_asked, answered_by_other_run=0)
        return self.model_copy(update=free)


class GenerationResult(BaseModel):
    """Kept (query, chunk) pairs in the run store and what happened to every chunk and question."""

    pairs: Ref
    stats: GenerationStats


def candidates_per_chunk(llm: LLMSettings) -> int:
    """Questions asked for per chunk: candidates_per_chunk, else questions_per_chunk."""
    return llm.candidates_per_chunk or llm.questions_per_chunk


def cache_key(text: str, llm: LLMSettings) -> str:
    """Per-chunk cache key: content, model, prompt templates and sampling (not how many were asked, never the endpoint
    or a path): asking for more questions later pays only for the extra ones."""
    return stable_hash({"text": text, "model": llm.model, "prompt": prompt_fingerprint(llm), "temperature": llm.temperature,
                        "max_tokens": max_tokens(llm)})  # fmt: skip


def _read_record(path: str) -> Optional[dict]:
    try:
        record = read_record(path)
    except OSError:  # unreadable entry: ask again
        return None
    return record if record and record.get("questions") else None


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
        record = _read_record(store.key_path("qa-cache", key, ".json"))
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
        record = lambda questions, cost: dict(questions=questions, model=llm.model, prompt=prompt_fingerprint(llm), cost_usd=cost)  # noqa: E731

        def stored(key: str) -> Optional[list[str]]:  # another run's answer, once it has stored enough questions
            nonlocal cached_cost
            found = _read_record(store.key_path("qa-cache", key, ".json"))
            if not found or len(found["questions"]) < wanted:
                return None
            cached_cost += float(found.get("cost_usd", 0.0))
            return found["questions"][:wanted]

        sharing = Sharing(lease_s=llm.max_attempts * (llm.timeout_s + llm.max_backoff_s), stored=stored)
        shared = await ask_all(todo, lambda chunk, have: ask(client, chunk, wanted, fmt, have, examples), usage, record,
                                store, llm.max_concurrency, llm.max_consecutive_failures, answers, failures, sharing)  # fmt: skip
        stats.cache_hits += shared
        stats.answered_by_other_run = shared
        stats.response_format = (fmt or {}).get("type") if client.response_format_ok else "rejected, sent without"
    for key, (_, have) in todo.items():  # a chunk that failed now still has its earlier questions
        if key not in answers and have:
            answers[key] = have
    return answers, failures, stats.model_copy(update=dict(
        llm_calls=usage.calls, retries=usage.retries, rate_limited=usage.rate_limited, faults=dict(usage.faults),
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, cost_usd=round(usage.cost_usd, 6),
        cost_usd_total=round(usage.cost_usd + cached_cost, 6),
    ))  # fmt: skip


def sample_point(chunk_id: str) -> int:
    """Where a chunk falls in the stable sample: a 32-bit hash of its id."""
    return int(sha256_bytes(chunk_id.encode())[:8], 16)


def sample_chunks(chunks: list[dict], fraction: float) -> list[dict]:
    """A stable sample: a chunk is in iff its id hashes below the fraction, so adding documents never reshuffles it."""
    if fraction >= 1:
        return chunks
    threshold = int(fraction * 2**32)
    return [c for c in chunks if sample_point(c["chunk_id"]) < threshold]


def generate_pairs(
    chunks: list[dict],
    llm: LLMSettings,
    filters: FilterSettings,
    endpoint: LLMEndpoint,
    base_model_dir: str,
    store: RunStore,
    chunk_vectors: Optional[np.ndarray] = None,
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
    kept, dropped = filter_questions(candidates, texts, filters, base_model_dir, chunk_vectors)
    rows = sorted(kept, key=lambda r: (r["doc_id"], r["chunk_id"], r["candidate"]))
    failed = [
        {"chunk_id": c["chunk_id"], "reason": failures[k][0], "detail": failures[k][1][:300]}
        for c, k in zip(chunks, keys)
        if k in failures and k not in answers
    ]
    stats = stats.model_copy(update=dict(
        chunks_in=len(corpus), chunks_asked=len(chunks), chunks_not_sampled=len(corpus) - len(chunks),
        chunks_answered=sum(1 for k in keys if k in answers), chunks_failed=failed[:FAILED_LIST_CAP],
        chunks_failed_count=len(failed), failed_reasons=dict(Counter(f["reason"] for f in failed)),
        questions_raw=len(candidates), questions_kept=len(kept), dropped=dict(Counter(d["reason"] for d in dropped)),
        model=llm.model, served_by=endpoint.model, prompt=prompt_fingerprint(llm), candidates_per_chunk=candidates_per_chunk(llm),
        elapsed_s=round(time.monotonic() - started, 2), samples=_samples(kept, dropped, texts), examples=[q for q, _ in examples],
    ))  # fmt: skip
    return GenerationResult(pairs=store.put_jsonl("pairs", rows), stats=stats)


def _samples(kept: list[dict], dropped: list[dict], texts: dict[str, str]) -> dict:
    per_reason: Counter = Counter()
    some_dropped = []
    for row in dropped:
        if per_reason[row["reason"]] < 2:
            per_reason[row["reason"]] += 1
            some_dropped.append({"query": row["query"], "chunk_id": row["chunk_id"], "reason": row["reason"]})
    step = max(1, len(kept) // 5)
    some_kept = [
        {"query": r["query"], "chunk_id": r["chunk_id"], "passage": texts[r["chunk_id"]][:160]}
        for r in kept[::step][:5]
    ]
    return {"kept": some_kept, "dropped": some_dropped}


def shared_note(s: GenerationStats) -> str:
    """' (3 answered meanwhile by another run on this store)', or nothing."""
    return f" ({s.answered_by_other_run} answered meanwhile by another run on this store)" if s.answered_by_other_run else ""


def publish_report(result: GenerationResult) -> None:
    """The `qa-report` table artifact: outcomes with counts and examples; tokens and cost in the description."""
    s = result.stats
    rows = [
        {"outcome": "kept (sample)", "count": "", "example": k["query"], "chunk": k["passage"]}
        for k in s.samples.get("kept", [])
    ]
    if rows:
        rows[0].update(outcome="kept", count=s.questions_kept)
    examples = {d["reason"]: d for d in reversed(s.samples.get("dropped", []))}
    for reason, count in sorted(s.dropped.items(), key=lambda kv: -kv[1]):
        example = examples.get(reason, {})
        rows.append(
            {
                "outcome": f"dropped: {reason}",
                "count": count,
                "example": example.get("query", ""),
                "chunk": example.get("chunk_id", ""),
            }
        )
    for reason, count in sorted(s.failed_reasons.items(), key=lambda kv: -kv[1]):
        rows.append({"outcome": f"chunk failed: {reason}", "count": count, "example": "", "chunk": ""})
    description = (
        f"**{s.questions_kept}** of {s.questions_raw} questions kept from "
        f"{s.chunks_answered}/{s.chunks_in} chunks ({s.chunks_failed_count} failed), {s.candidates_per_chunk} asked per chunk. "
        f"Model `{s.model}`, prompt {s.prompt}" + (f", worked examples: {'; '.join(s.examples)}. " if s.examples else ". ") +
        f"This run: {s.llm_calls} LLM calls ({s.retries} retries, {s.rate_limited} rate-limited), "
        f"{s.cache_hits} cache hits{shared_note(s)}, {s.prompt_tokens} prompt + {s.completion_tokens} completion tokens, "
        f"${s.cost_usd:.4f} (whole dataset ${s.cost_usd_total:.4f})."
    )
    publish_table("qa-report", rows, description)


@task(
    name="generate",
    cache_policy=code_and_inputs("domain_embed.tasks.qa_filters", "domain_embed.tasks.llm", "domain_embed.tasks.llm_errors", "domain_embed.tasks.ratelimit", "domain_embed.tasks.prompts", "domain_embed.tasks.llm_batch", "domain_embed.tasks.text", exclude=("endpoint", "embeddings")),
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
    embeddings: Optional[Ref] = None,
) -> GenerationResult:
    """Questions for every chunk of the corpus; cached per chunk, so only new or failed chunks cost LLM calls.

    embeddings: the corpus embeddings under base_model, which the round-trip filter then reuses instead of recomputing.
    """
    logger = get_run_logger()
    chunks = read_jsonl(corpus)
    asked = len(sample_chunks(chunks, llm.chunk_fraction))
    if chunks and not asked:
        raise ValueError(f"llm.chunk_fraction {llm.chunk_fraction:g} picks none of the {len(chunks)} chunks: raise it")
    logger.info(
        "Generating %d questions per chunk for %d of %d chunks (chunk_fraction %g) with %s (served by %s, prompt %s)",
        candidates_per_chunk(llm), asked, len(chunks), llm.chunk_fraction, llm.model, endpoint.model, prompt_fingerprint(llm),
    )
    vectors = read_npy(embeddings) if embeddings is not None and filters.roundtrip_top_k > 0 else None
    result = generate_pairs(chunks, llm, filters, endpoint, resolve_model(base_model), RunStore(store_url), vectors)
    s = result.stats
    if chunks and not s.chunks_answered:
        reason = s.chunks_failed[0]["detail"] if s.chunks_failed else "no answer"
        transient = any(r.startswith("transient") for r in s.failed_reasons)
        raise (LLMTransientError if transient else LLMRejectedError)(f"no chunk was answered; first failure: {reason}")
    logger.info(
        "Kept %d of %d questions (%s); %d chunks answered, %d failed; %d LLM calls, %d cache hits%s, %d tokens, $%.4f",
        s.questions_kept, s.questions_raw, ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "none dropped",
        s.chunks_answered, s.chunks_failed_count, s.llm_calls, s.cache_hits, shared_note(s), s.prompt_tokens + s.completion_tokens,
        s.cost_usd,
    )  # fmt: skip
    if s.chunks_failed_count:
        logger.warning("%d chunks failed and will be asked again next run: %s", s.chunks_failed_count, s.failed_reasons)
    publish_report(result)
    return result
