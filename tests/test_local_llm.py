"""The embedded default: the packaged GGUF model served by llama-cpp-python, called through litellm."""

from __future__ import annotations

import httpx
import pytest

from tasks.generate import generate_pairs
from tasks.local_llm import embedded_llm_server
from tasks.settings import FilterSettings, LLMSettings
from tasks.store import read_jsonl

CHUNKS = [
    {"chunk_id": "c1", "doc_id": "d1", "section": "Partial Indexes", "n_tokens": 60,
     "text": "A partial index is an index built over a subset of a table; the subset is defined by a conditional "
             "expression called the predicate of the partial index. The index contains entries only for those "
             "table rows that satisfy the predicate."},
    {"chunk_id": "c2", "doc_id": "d2", "section": "Write-Ahead Logging", "n_tokens": 60,
     "text": "Write-Ahead Logging (WAL) is a standard method for ensuring data integrity. Changes to data files "
             "must be written only after those changes have been logged, that is, after WAL records describing "
             "the changes have been flushed to permanent storage."},
]  # fmt: skip


@pytest.mark.slow
def test_embedded_server_answers_through_litellm_and_stops(store, base_model_dir):
    llm = LLMSettings(questions_per_chunk=2)
    with embedded_llm_server() as endpoint:
        assert endpoint.api_base.startswith("http://127.0.0.1:")
        result = generate_pairs(CHUNKS, llm, FilterSettings(roundtrip_top_k=0), endpoint, base_model_dir, store)
        base = endpoint.api_base
    stats = result.stats
    assert stats.chunks_answered + stats.chunks_failed_count == 2
    assert stats.llm_calls >= 2 and stats.prompt_tokens > 0 and stats.cost_usd == 0
    assert stats.prompt.startswith("single-")
    assert all(len(row["query"]) >= 12 for row in read_jsonl(result.pairs))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/models", timeout=2)
