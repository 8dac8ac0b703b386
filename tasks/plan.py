"""`domain-embed plan`: what a run will do and cost, before any LLM call. Documents the run store has parsed and chunked
before are counted exactly (their chunks, the chunks already answered); the others are estimated from their size."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import fsspec
from pydantic import BaseModel

from .core.item_cache import load_item
from .core.store import RunStore, read_record
from .embedding.models import max_seq_length, model_fingerprint
from .ingest.chunk import ChunkedDoc, ChunkJob, chunk_cache_key
from .ingest.corpus import corpus_rows
from .ingest.discover import DocFile
from .ingest.formats import ParseError, decode_text
from .ingest.parse import ParsedDoc, parse_cache_key
from .llm.local import EMBEDDED_MODELS
from .questions.prompts import build_messages, max_tokens
from .questions.qa_cache import cache_key, candidates_per_chunk, read_answer, sample_chunks
from .questions.split import assign_eval_docs, assign_val_docs
from .questions.supervision import supervised_pairs
from .settings import PipelineConfig
from .training.trainer import planned_steps

CHARS_PER_TOKEN = 4.0  # English prose, base model's and LLM's tokens alike, where the text is not at hand
CHUNK_FILL = 0.67  # chunks end at paragraphs and sentences: 9,868 chunks where full ones would make 6,568 (plan_speed)
TEXT_PER_BYTE = {".pdf": 0.25, ".docx": 0.3, ".html": 0.35, ".htm": 0.35}  # text a parse keeps per byte
TEXT_FORMATS = (".txt", ".text", ".md", ".markdown", ".rst")  # decoded for the estimate: their text is what is chunked
KEEP_RATE = 0.92  # generated questions the filters keep: 1,566 of 1,700 in benchmarks.quality's run
SUPERVISED_PER_CHUNK = 1.5  # heading and inverse-cloze pairs per training chunk there (5,980 of ~4,000 chunks)
COMPLETION_TOKENS_PER_QUESTION = 24
CPU_SECONDS_PER_STEP = 12.5  # all-MiniLM-L6-v2 (90.9 MB of weights), batch 32, on 2 cores: 0.08 steps/s
MINILM_WEIGHT_BYTES = 90.9e6


class Plan(BaseModel):
    """What a run would do: counts exact for documents the store knows, estimated for the others."""

    documents: int
    documents_skipped: int
    documents_known: int  # parsed and chunked before: their counts below are exact
    chunks: int
    chunks_to_ask: int  # sampled for the LLM and not answered in the store yet
    chunks_answered: int  # sampled and answered before: free
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # litellm's price map; None when it has no price for the model
    llm_minutes: float
    llm_minutes_basis: str
    training_rows: int
    steps: int
    device_minutes: float
    device_basis: str


def known_chunks(doc: DocFile, config: PipelineConfig, store: RunStore, model_sha: str, max_len: int):
    """The document's chunks from the store's parse and chunk caches: a ChunkedDoc, False when it parsed to nothing,
    None when it was not chunked before."""
    parsed = load_item(store, "parse-cache", parse_cache_key(doc, config.parse), ParsedDoc)
    if parsed is None or parsed.ref is None:
        return None if parsed is None else False
    job = ChunkJob(elements=parsed.ref, doc_sha=doc.sha256 or "", rel_path=doc.rel_path)
    return load_item(store, "chunk-cache", chunk_cache_key(job, config.chunk, model_sha, max_len), ChunkedDoc)


def estimated_chunks(doc: DocFile, config: PipelineConfig, max_len: int) -> int:
    """Chunks a document not seen before will make: from its text for plain text and Markdown (none for binary data),
    else from its size (HTML, PDF and DOCX keep a share of their bytes as text)."""
    chars = doc.size * TEXT_PER_BYTE.get(doc.ext, 1.0)
    if doc.ext in TEXT_FORMATS:
        try:
            text = decode_text(Path(doc.os_path).read_bytes())
        except (OSError, ParseError):
            return 0
        chars = len(text)
    tokens = chars / CHARS_PER_TOKEN
    stride = max(1.0, (min(config.chunk.chunk_tokens, max_len) - config.chunk.overlap_tokens) * CHUNK_FILL)
    return max(1, math.ceil(tokens / stride)) if tokens >= config.chunk.min_tokens else 0


def llm_minutes(config: PipelineConfig, calls: int, tokens: int) -> tuple[float, str]:
    """Minutes the LLM stage takes: an embedded model at its measured speed, a hosted one at the rate limits."""
    llm = config.llm
    if llm.model in EMBEDDED_MODELS:
        per_call = EMBEDDED_MODELS[llm.model].seconds_per_call
        return calls * per_call / 60, f"{per_call} s per call on 2 CPU cores, measured"
    by_requests = calls / llm.requests_per_minute
    by_tokens = tokens / llm.tokens_per_minute
    bound = "requests" if by_requests >= by_tokens else "tokens"
    return max(by_requests, by_tokens), f"at the {bound}-per-minute limit (provider latency not counted)"


def device_minutes(config: PipelineConfig, store: RunStore, model_dir: str, steps: int) -> tuple[float, str]:
    """Training minutes: the store's latest training measured its speed, else this CPU's rate scaled by model size."""
    measured = last_training(store)
    if measured:
        per_step = measured["seconds"] / measured["steps"] * config.train.batch_size / measured["batch_size"]
        return (
            steps * per_step / 60,
            f"{per_step:.2f} s per step, as this store's last training ran ({measured['device']})",
        )
    weights = sum(f.stat().st_size for f in Path(model_dir).rglob("*") if f.suffix in (".safetensors", ".bin"))
    per_step = CPU_SECONDS_PER_STEP * weights / MINILM_WEIGHT_BYTES * config.train.batch_size / 32
    return steps * per_step / 60, f"{per_step:.1f} s per step estimated for 2 CPU cores (a GPU is far faster)"


def last_training(store: RunStore) -> dict | None:
    """The newest training result in the store that trained (not served from cache): seconds, steps, device, batch."""
    fs, root = fsspec.core.url_to_fs(store.uri("train-results"))
    paths = sorted(fs.glob(f"{root}/*/*.json") if fs.exists(root) else [], key=fs.modified, reverse=True)
    for path in paths:
        result = read_record(fs.unstrip_protocol(path)) or {}  # sealed: a corrupt one is dropped, never trusted
        if result.get("steps") and not result.get("cached") and result.get("samples_per_second"):
            batch = result["samples_per_second"] * result["seconds"] / result["steps"]
            return {**result, "batch_size": max(1.0, batch)}
    return None


def plan_run(config: PipelineConfig, docs: list[DocFile], model_dir: str) -> Plan:
    """Count what the run would do over `docs` (as check_config found them), using the store's caches."""
    store, llm = RunStore(config.store_url), config.llm
    readable = [d for d in docs if not d.skipped]
    model_sha, max_len = model_fingerprint(model_dir), max_seq_length(model_dir)
    ids = sorted({d.doc_id for d in readable})
    held_out = assign_eval_docs(ids, config.split)
    held_out |= assign_val_docs(ids, held_out, config.split)
    chunked, estimated, estimated_train, known = [], 0, 0, 0
    for doc in readable:
        chunks = known_chunks(doc, config, store, model_sha, max_len)
        if chunks is None:
            count = estimated_chunks(doc, config, max_len)
            estimated += count
            estimated_train += count if doc.doc_id not in held_out else 0
        else:
            known += 1
            chunked += [chunks] if chunks else []
    rows = list(corpus_rows(chunked, Counter()))
    sampled = sample_chunks(rows, llm.chunk_fraction)
    unique = {cache_key(c["text"], llm): c for c in sampled}  # the run asks once per distinct key
    to_ask = [c for key, c in unique.items() if read_answer(store.key_path("qa-cache", key, ".json")) is None]
    new_calls = round(estimated * min(1.0, llm.chunk_fraction))
    prompt_chars = sum(_prompt_chars(c["text"], c.get("section", ""), llm) for c in to_ask)
    prompt_tokens = round(prompt_chars / CHARS_PER_TOKEN) + new_calls * round(
        _prompt_chars("x" * round(config.chunk.chunk_tokens * CHARS_PER_TOKEN), "", llm) / CHARS_PER_TOKEN
    )
    calls = len(to_ask) + new_calls
    per_call = min(max_tokens(llm), candidates_per_chunk(llm) * COMPLETION_TOKENS_PER_QUESTION)
    completion_tokens = calls * per_call
    train_sampled = sum(1 for c in sampled if c["doc_id"] not in held_out) + estimated_train * min(
        1.0, llm.chunk_fraction
    )
    supervised = len(supervised_pairs(rows, set(ids) - held_out, config.supervision))
    training_rows = round(
        train_sampled * llm.questions_per_chunk * KEEP_RATE + supervised + estimated_train * SUPERVISED_PER_CHUNK
    )
    steps = planned_steps(training_rows, config.train) if training_rows else 0
    minutes, basis = llm_minutes(config, calls, prompt_tokens + completion_tokens)
    device, device_basis = device_minutes(config, store, model_dir, steps)
    return Plan(
        documents=len(docs),
        documents_skipped=len(docs) - len(readable),
        documents_known=known,
        chunks=len(rows) + estimated,
        chunks_to_ask=calls,
        chunks_answered=len(unique) - len(to_ask),
        llm_calls=calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=llm_cost(llm.model, prompt_tokens, completion_tokens),
        llm_minutes=round(minutes, 1),
        llm_minutes_basis=basis,
        training_rows=training_rows,
        steps=steps,
        device_minutes=round(device, 1),
        device_basis=device_basis,
    )


def _prompt_chars(text: str, section: str, llm) -> int:
    return sum(len(m["content"]) for m in build_messages(text, section, candidates_per_chunk(llm)))


def llm_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD from litellm's price map (0 for the embedded models); None when the map has no price for the model."""
    if model in EMBEDDED_MODELS or not prompt_tokens + completion_tokens:
        return 0.0
    import litellm

    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises a bare Exception for a model missing from its map
        return None
    return round(prompt + completion, 4)


def check_cost(config: PipelineConfig, docs: list[DocFile], model_dir: str) -> Plan | None:
    """With llm.max_cost_usd set, the plan; a ValueError naming the cost and the limit when it costs more."""
    limit = config.llm.max_cost_usd
    if limit is None:
        return None
    plan = plan_run(config, docs, model_dir)
    if plan.cost_usd is None:
        raise ValueError(
            f"llm.max_cost_usd (--max-cost) is {limit} but litellm's price map has no price for {config.llm.model}"
        )
    if plan.cost_usd > limit:
        raise ValueError(
            f"the plan costs ${plan.cost_usd:.4f} ({plan.llm_calls} LLM calls, {plan.prompt_tokens} prompt and "
            f"{plan.completion_tokens} completion tokens), over llm.max_cost_usd (--max-cost) ${limit}: raise it, or "
            "lower llm.chunk_fraction"
        )
    return plan


def plan_rows(plan: Plan) -> list[dict]:
    """The plan as (what, count, how it was counted) rows for a terminal table."""
    exact = f"exact for the {plan.documents_known} documents the store has chunked before, else from file sizes"
    cost = "no price in litellm's map" if plan.cost_usd is None else f"${plan.cost_usd:.4f}"
    rows = [
        ("documents", plan.documents, f"{plan.documents_skipped} skipped (reported by the run)"),
        ("chunks", plan.chunks, exact),
        ("chunks already answered in the store", plan.chunks_answered, "free"),
        ("LLM calls to pay", plan.llm_calls, "one per chunk to ask"),
        ("prompt / completion tokens", f"{plan.prompt_tokens} / {plan.completion_tokens}", "4 characters a token"),
        ("LLM cost", cost, "litellm's price map"),
        ("LLM time (min)", plan.llm_minutes, plan.llm_minutes_basis),
        ("training rows", plan.training_rows, f"{KEEP_RATE:.0%} of generated questions kept, plus the LLM-free pairs"),
        ("training steps", plan.steps, "train.epochs, else train.min_steps to max_steps"),
        ("device time (min)", plan.device_minutes, plan.device_basis),
    ]
    return [{"what": what, "count": count, "how": how} for what, count, how in rows]
