"""The generate stage's account: the qa-report artifact (outcomes with counts and examples, tokens and cost)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..core.reports import publish_table

if TYPE_CHECKING:
    from .generate import GenerationResult, GenerationStats


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
