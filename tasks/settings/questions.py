"""Settings of the question stages: the LLM, the filter, the split and the pairs that cost no LLM call."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import EMBEDDED_LLM, Settings


class LLMSettings(Settings):
    """The question-generating LLM, called through litellm."""

    model: str = Field(
        EMBEDDED_LLM,
        description="'embedded' (SmolLM2-135M, a local GGUF model served on 127.0.0.1), 'embedded-large' "
        "(Qwen2.5-Coder-1.5B, the large-llm extra) or any litellm model string, e.g. gpt-4o-mini, ollama/llama3.1",
    )
    api_base: str | None = Field(None, description="Override the provider's endpoint")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key")
    api_key_secret_block: str | None = Field(None, description="Prefect Secret block holding the API key")
    chunk_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Fraction of chunks sent to the LLM (a stable hash sample: adding documents never "
        "changes which earlier chunks are picked); the rest stay in the corpus as retrieval distractors",
    )
    prompt_style: Literal["auto", "json", "single"] = Field(
        "auto",
        description="'json': n questions per call as JSON; 'single': one plain question per call (small local "
        "models follow it far better); 'auto': single for both embedded models, json otherwise",
    )
    questions_per_chunk: int = Field(2, ge=1, le=10, description="Questions kept per chunk")
    few_shot: int = Field(
        0,
        ge=0,
        le=16,
        description="Worked examples in the prompt, taken from the corpus: section headings people wrote "
        "over the start of their section (0: the json prompt shows one fixed example, the single one none; off by "
        "default: both embedded generators then wrote titles, not questions)",
    )
    candidates_per_chunk: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Questions asked for per chunk; the training documents keep the questions_per_chunk "
        "best by the round-trip rank (with filter.roundtrip_top_k set; else the first ones), held-out documents the "
        "first ones (empty: questions_per_chunk)",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="LLM sampling temperature (higher: more varied questions)")
    max_tokens: int = Field(256, ge=16, description="Completion token cap per call (one-question prompts cap at 64)")
    requests_per_minute: float = Field(500, gt=0, description="Client-side request rate limit")
    tokens_per_minute: float = Field(200_000, gt=0, description="Client-side token rate limit (prompt + completion)")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight at once")
    max_cost_usd: float | None = Field(
        None, ge=0, description="Refuse to start a run whose plan (`domain-embed plan`) costs more than this in USD"
    )
    timeout_s: float = Field(60, gt=0, description="Per-request timeout")
    max_attempts: int = Field(6, ge=1, description="Attempts per request on transient faults")
    concurrency_limit: str | None = Field(None, description="Prefect global concurrency limit of this provider's runs")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry wait; doubles each attempt, with jitter")
    max_backoff_s: float = Field(60, gt=0, description="Longest wait between attempts, Retry-After included")
    max_consecutive_failures: int = Field(
        10,
        ge=1,
        description="Stop generating when this many requests in a row get no answer (connection error, timeout, "
        "5xx; after one, requests go one at a time, 2 s apart at most, until one is answered; requests already in flight "
        "when it failed count once) or this many chunks in a row are rejected",
    )


class FilterSettings(Settings):
    """Which generated questions are kept."""

    min_chars: int = Field(12, ge=1, description="Drop questions shorter than this many characters")
    max_chars: int = Field(300, ge=10, description="Drop questions longer than this many characters")
    max_copied_words: int = Field(12, ge=3, description="Drop questions copying this many consecutive chunk words")
    near_duplicate_jaccard: float = Field(0.8, gt=0, le=1, description="Word Jaccard marking questions as duplicates")
    roundtrip_top_k: int = Field(
        0,
        ge=0,
        description="Keep a question only if its chunk ranks in the base model's top k (0 = off; off by default: on the "
        "FAQ dev queries the 40% of questions it dropped were worth +0.022 NDCG@10)",
    )


class SplitSettings(Settings):
    """Train / validation / eval split by document."""

    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of documents held out for evaluation")
    val_fraction: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="Fraction of documents whose questions choose the best checkpoint (neither trained on "
        "nor evaluated); 0: keep the last checkpoint",
    )
    seed: int = Field(13, description="Seed of the document split's hash")


class SupervisionSettings(Settings):
    """Training pairs that cost no LLM call, taken from the training documents themselves."""

    headings: bool = Field(True, description="Section headings (human-written) as queries for their sections' text")
    inverse_cloze: bool = Field(True, description="One sentence of each chunk as a query for the rest of the chunk")
    seed: int = Field(13, description="Seed of the inverse-cloze sentence choice")
