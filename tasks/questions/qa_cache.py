"""Which chunks are asked (a stable sample) and where each one's answer is kept: under a key of its text, the model,
the prompt and the sampling, never of the code or the endpoint, so an answer once paid for is never asked again."""

from __future__ import annotations

from ..core.objects import sha256_bytes, stable_hash
from ..core.store import read_record
from ..settings import LLMSettings
from .prompts import max_tokens, prompt_fingerprint


def candidates_per_chunk(llm: LLMSettings) -> int:
    """Questions asked for per chunk: candidates_per_chunk, else questions_per_chunk."""
    return llm.candidates_per_chunk or llm.questions_per_chunk


def cache_key(text: str, llm: LLMSettings) -> str:
    """Per-chunk cache key: content, model, prompt templates and sampling (not how many were asked, never the endpoint
    or a path): asking for more questions later pays only for the extra ones."""
    return stable_hash(
        {
            "text": text,
            "model": llm.model,
            "prompt": prompt_fingerprint(llm),
            "temperature": llm.temperature,
            "max_tokens": max_tokens(llm),
        }
    )


def read_answer(path: str) -> dict | None:
    """A chunk's stored answer, or None when it has none (or it is unreadable: the chunk is asked again)."""
    try:
        record = read_record(path)
    except OSError:  # unreadable entry: ask again
        return None
    return record if record and record.get("questions") else None


def sample_point(chunk_id: str) -> int:
    """Where a chunk falls in the stable sample: a 32-bit hash of its id."""
    return int(sha256_bytes(chunk_id.encode())[:8], 16)


def sample_chunks(chunks: list[dict], fraction: float) -> list[dict]:
    """A stable sample: a chunk is in iff its id hashes below the fraction, so adding documents never reshuffles it."""
    if fraction >= 1:
        return chunks
    threshold = int(fraction * 2**32)
    return [c for c in chunks if sample_point(c["chunk_id"]) < threshold]
