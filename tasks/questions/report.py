"""The generate stage's account: its stats, and the qa-report artifact (outcomes with counts and examples, tokens and cost)."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from ..core.objects import Ref
from ..core.reports import publish_table


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
    response_format: str | None = None
    elapsed_s: float = 0.0
    samples: dict = {}
    examples: list[str] = []  # the worked examples' queries (human-written headings of the corpus)

    def as_reused(self) -> GenerationStats:
        """These stats as seen by a run that reused this result from the task cache: no call, every chunk a cache hit."""
        free = dict(
            llm_calls=0,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            cache_hits=self.chunks_asked,
            answered_by_other_run=0,
        )
        return self.model_copy(update=free)


class GenerationResult(BaseModel):
    """Kept (query, chunk) pairs in the run store and what happened to every chunk and question."""

    pairs: Ref
    stats: GenerationStats


def samples(kept: list[dict], dropped: list[dict], texts: dict[str, str]) -> dict:
    """A few kept questions with their passages, and two dropped ones per reason: the report's examples."""
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
    return (
        f" ({s.answered_by_other_run} answered meanwhile by another run on this store)"
        if s.answered_by_other_run
        else ""
    )


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
        f"Model `{s.model}`, prompt {s.prompt}"
        + (f", worked examples: {'; '.join(s.examples)}. " if s.examples else ". ")
        + f"This run: {s.llm_calls} LLM calls ({s.retries} retries, {s.rate_limited} rate-limited), "
        f"{s.cache_hits} cache hits{shared_note(s)}, {s.prompt_tokens} prompt + {s.completion_tokens} completion tokens, "
        f"${s.cost_usd:.4f} (whole dataset ${s.cost_usd_total:.4f})."
    )
    publish_table("qa-report", rows, description)
