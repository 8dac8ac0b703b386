"""Generate stage: questions for every chunk from an LLM, cached per chunk as answers arrive, then filtered."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine, Optional

import litellm
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel
from tqdm import tqdm

from flows.config import EMBEDDED_LLM, FilterSettings, LLMSettings
from tasks.embed import resolve_model
from tasks.llm import (
    LLMClient,
    LLMEndpoint,
    LLMError,
    LLMFatalError,
    LLMRejectedError,
    LLMTransientError,
    Usage,
    resolve_api_key,
)
from tasks.qa_filters import filter_questions
from tasks.caching import code_and_inputs
from tasks.store import Ref, RunStore, atomic_write, exists, read_json, read_jsonl, sha256_bytes, stable_hash

PROMPT_VERSION = "qa-v1"  # bump whenever the prompt below changes: it is part of every per-chunk cache key
SINGLE_PROMPT_VERSION = "single-v1"  # the one-question prompt for tiny local models; bump when it changes
SINGLE_PROMPT = "Read the text and write one short question about it.\n\nText: {text}\n\nQuestion:"
ANSWER_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*[:.)-]|\d+\s*[.)-])\s*", re.I)
SYSTEM_PROMPT = (
    "You write search queries for training a document retrieval model: queries that the given passage answers. "
    "Mix short keyword queries (2-6 words) with full natural questions. Write in the passage's language. "
    "Each query must make sense without seeing the passage: never say 'the passage' or 'the text', "
    "never copy long phrases from it. Answer with JSON only."
)
USER_PROMPT = "{section}<passage>\n{text}\n</passage>\nWrite {n} different search queries answered by this passage."
# one worked example (a few-shot turn): small local models follow it far better than instructions alone
EXAMPLE_PASSAGE = (
    "The Eiffel Tower in Paris was built by Gustave Eiffel's company for the 1889 World's Fair. It is 330 metres "
    "tall, was the tallest man-made structure in the world until 1930, and is repainted every seven years."
)
EXAMPLE_QUERIES = [
    "eiffel tower height",
    "When was the Eiffel Tower built?",
    "who built the eiffel tower",
    "Why was the Eiffel Tower built?",
    "tallest structure until 1930",
    "How often is the Eiffel Tower repainted?",
    "eiffel tower 1889 world's fair",
    "How tall is the Eiffel Tower in metres?",
    "eiffel tower repainting schedule",
    "Which company built the tower in Paris?",
]
MALFORMED = "malformed answer"
FAILED_LIST_CAP = 50
PROGRESS_KEY = "qa-progress"
FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
log = logging.getLogger("domain_embed.generate")


class GenerationResult(BaseModel):
    """Kept (query, chunk) pairs in the run store and what happened to every chunk and question."""

    pairs: Ref
    stats: dict


class MalformedAnswer(ValueError):
    """The LLM's answer holds no list of questions."""


def prompt_style(llm: LLMSettings) -> str:
    """'single' (one plain question per call: tiny local models do far better) or 'json' (n questions per call)."""
    if llm.prompt_style != "auto":
        return llm.prompt_style
    return "single" if llm.model == EMBEDDED_LLM else "json"


def prompt_version(llm: LLMSettings) -> str:
    """The version of the prompt this run uses."""
    return SINGLE_PROMPT_VERSION if prompt_style(llm) == "single" else PROMPT_VERSION


def cache_key(text: str, llm: LLMSettings) -> str:
    """Per-chunk cache key: content and the settings that change the answer (never the endpoint or a path)."""
    return stable_hash(
        {
            "text": text,
            "model": llm.model,
            "prompt_version": prompt_version(llm),
            "questions_per_chunk": llm.questions_per_chunk,
            "temperature": llm.temperature,
            "max_tokens": llm.max_tokens,
        }
    )


def build_messages(text: str, section: str, n: int) -> list[dict]:
    """The chat messages asking for n questions about one chunk: instructions, one worked example, the chunk."""
    example = USER_PROMPT.format(section="", text=EXAMPLE_PASSAGE, n=n)
    answer = json.dumps({"questions": EXAMPLE_QUERIES[:n]}, ensure_ascii=False)
    user = USER_PROMPT.format(section=f"Section: {section}\n" if section else "", text=text, n=n)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": example},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": user},
    ]


def response_format_for(endpoint: LLMEndpoint, n: int) -> Optional[dict]:
    """The strongest JSON constraint the endpoint takes, or None.

    Self-hosted OpenAI-compatible servers (openai/ + api_base: llama-cpp-python, vLLM) get json_object with a
    "schema", which llama-cpp-python turns into a grammar (it refuses type json_schema); hosted models that support
    it get json_schema; others json_object when litellm says the provider takes response_format.
    """
    schema = {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": n}},
        "required": ["questions"],
        "additionalProperties": False,
    }
    try:
        model, provider, _, _ = litellm.get_llm_provider(endpoint.model, api_base=endpoint.api_base)
    except Exception:  # unknown to litellm: ask without
        return None
    if provider == "openai" and endpoint.api_base:
        return {"type": "json_object", "schema": schema}
    if litellm.supports_response_schema(model, provider):
        return {"type": "json_schema", "json_schema": {"name": "questions", "schema": schema}}
    if "response_format" in (litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []):
        return {"type": "json_object"}
    return None


def parse_questions(text: str) -> list[str]:
    """Questions from an answer: code fences stripped, the first JSON object or list holding strings."""
    fenced = FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, ch in enumerate(body):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(body, i)
            except json.JSONDecodeError:
                continue
            questions = _questions_in(value)
            if questions:
                return questions
    raise MalformedAnswer(MALFORMED)


def _questions_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        lists = [value.get(k) for k in ("questions", "queries")] + list(value.values())
        value = next((v for v in lists if isinstance(v, list)), [])
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("question") or item.get("query") or item.get("text")
        if isinstance(item, str) and " ".join(item.split()) and " ".join(item.split()) not in out:
            out.append(" ".join(item.split()))
    return out


def parse_single(text: str) -> str:
    """One question from a plain answer: first line, without 'Question:' or numbering, cut after its '?'."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = ANSWER_PREFIX.sub("", line).strip().strip('"\'*').strip()
    if "?" in line:
        line = line[: line.index("?") + 1]
    if len(line.split()) < 3:
        raise MalformedAnswer(MALFORMED)
    return line


async def ask_single(client: LLMClient, chunk: dict, n: int) -> tuple[list[str], float]:
    """n calls of the one-question prompt (distinct answers kept); each malformed answer is asked again once."""
    messages = [{"role": "user", "content": SINGLE_PROMPT.format(text=chunk["text"])}]
    questions: list[str] = []
    cost = 0.0
    for _ in range(2 * n):
        completion = await client.complete(messages, None)
        cost += completion.cost_usd
        try:
            question = parse_single(completion.text)
        except MalformedAnswer:
            continue
        if question not in questions:
            questions.append(question)
        if len(questions) == n:
            break
    if not questions:
        raise MalformedAnswer(MALFORMED)
    return questions, cost


async def ask(client: LLMClient, chunk: dict, n: int, response_format: Optional[dict]) -> tuple[list[str], float]:
    """Questions for one chunk and what they cost; a malformed answer is asked again once, then MalformedAnswer."""
    if prompt_style(client.settings) == "single":
        return await ask_single(client, chunk, n)
    messages = build_messages(chunk["text"], chunk.get("section") or "", n)
    cost = 0.0
    for _ in range(2):
        completion = await client.complete(messages, response_format)
        cost += completion.cost_usd
        try:
            return parse_questions(completion.text)[:n], cost
        except MalformedAnswer:
            continue
    raise MalformedAnswer(MALFORMED)


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(TaskRunContext.get() or FlowRunContext.get())


def _logger() -> logging.Logger | logging.LoggerAdapter:
    return get_run_logger() if _in_run() else log


class _Progress:
    """A tqdm bar in the terminal, a Prefect progress artifact inside a run, and a log line every quarter."""

    def __init__(self, total: int, usage: Usage) -> None:
        self.total, self.done, self.failed, self.usage = total, 0, 0, usage
        self.bar = tqdm(total=total, desc="generate", unit="chunk", disable=None, dynamic_ncols=True)
        self.artifact_id = None
        self.in_run = _in_run()
        self.last_push = 0.0
        self.next_quarter = 1

    async def start(self) -> None:
        if self.in_run:
            await self._push(force=True)

    async def advance(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        self.bar.update(1)
        self.bar.set_postfix(
            calls=self.usage.calls, failed=self.failed, cost=f"${self.usage.cost_usd:.4f}", refresh=False
        )
        if self.done * 4 >= self.next_quarter * self.total:
            self.next_quarter += 1
            _logger().info("generate: %s", self._line())
        if self.in_run:
            await self._push(force=self.done == self.total)

    def _line(self) -> str:
        u = self.usage
        tokens = u.prompt_tokens + u.completion_tokens
        cost = f"${u.cost_usd:.4f}"
        return f"{self.done}/{self.total} chunks, {self.failed} failed, {u.calls} calls, {tokens} tokens, {cost}"

    async def stopped(self, error: BaseException) -> None:
        """Leave the reason on the progress artifact when generation stops early."""
        if self.in_run:
            await self._push(force=True, note=f"stopped: {str(error)[:300]}")

    async def _push(self, force: bool, note: str = "") -> None:
        if not force and time.monotonic() - self.last_push < 2.0:
            return
        self.last_push = time.monotonic()
        from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

        percent = 100.0 * self.done / max(1, self.total)
        line = f"{self._line()} {note}".strip()
        try:
            if self.artifact_id is None:
                self.artifact_id = await acreate_progress_artifact(percent, key=PROGRESS_KEY, description=line)
            else:
                await aupdate_progress_artifact(self.artifact_id, percent, description=line)
        except Exception as exc:  # the UI view must never stop generation
            log.debug("progress artifact not updated: %s", exc)
            self.in_run = False

    def close(self) -> None:
        self.bar.close()


async def collect_answers(
    chunks: list[dict], llm: LLMSettings, endpoint: LLMEndpoint, store: RunStore
) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]], dict]:
    """Questions per cache key (cached or asked now, each persisted as it arrives), failures per key, and run stats."""
    answers: dict[str, list[str]] = {}
    cached_cost = 0.0
    todo: dict[str, dict] = {}
    for chunk in chunks:
        key = cache_key(chunk["text"], llm)
        if key in answers or key in todo:
            continue
        path = store.key_path("qa-cache", key, ".json")
        record = _read_record(path) if exists(path) else None
        if record is not None:
            answers[key] = record["questions"]
            cached_cost += float(record.get("cost_usd", 0.0))
        else:
            todo[key] = chunk
    stats = {"cache_hits": len(answers), "cost_usd_cached": cached_cost, "response_format": None}
    failures: dict[str, tuple[str, str]] = {}
    usage = Usage()
    if todo:
        client = LLMClient(endpoint, llm, api_key=await asyncio.to_thread(resolve_api_key, llm))
        usage = client.usage
        fmt = response_format_for(endpoint, llm.questions_per_chunk) if prompt_style(llm) == "json" else None
        await _ask_all(todo, client, llm, fmt, store, answers, failures)
        stats["response_format"] = (fmt or {}).get("type") if client.response_format_ok else "rejected, sent without"
    stats.update(
        llm_calls=usage.calls,
        retries=usage.retries,
        rate_limited=usage.rate_limited,
        faults=dict(usage.faults),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=usage.cost_usd,
    )
    return answers, failures, stats


def _read_record(path: str) -> Optional[dict]:
    try:
        record = read_json(path)
    except (ValueError, OSError):  # unreadable entry: ask again
        return None
    return record if isinstance(record, dict) and record.get("questions") else None


async def _ask_all(
    todo: dict[str, dict],
    client: LLMClient,
    llm: LLMSettings,
    fmt: Optional[dict],
    store: RunStore,
    answers: dict[str, list[str]],
    failures: dict[str, tuple[str, str]],
) -> None:
    """Ask for every pending chunk with max_concurrency workers; stop the run on a fatal error or a failure streak."""
    queue = deque(todo.items())
    progress = _Progress(len(todo), client.usage)
    streak: list[LLMError] = []

    async def worker() -> None:
        while queue:
            key, chunk = queue.popleft()
            try:
                questions, cost = await ask(client, chunk, llm.questions_per_chunk, fmt)
            except MalformedAnswer:
                error: LLMError = LLMRejectedError(f"{MALFORMED}: twice no JSON list of questions")
                failures[key] = (MALFORMED, str(error))
            except LLMFatalError:
                raise
            except LLMError as exc:
                error = exc
                failures[key] = (failure_kind(exc), str(exc))
            else:
                record = dict(questions=questions, model=llm.model, prompt_version=prompt_version(llm), cost_usd=cost)
                data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
                await asyncio.to_thread(atomic_write, store.key_path("qa-cache", key, ".json"), data)
                answers[key] = questions
                streak.clear()
                await progress.advance(failed=False)
                continue
            streak.append(error)
            await progress.advance(failed=True)
            if len(streak) >= llm.max_consecutive_failures:
                kind = LLMTransientError if error.transient else LLMRejectedError
                raise kind(
                    f"stopped generating: {len(streak)} chunks in a row failed ({len(answers)} answered and cached "
                    f"so far, a re-run resumes from there); last error: {error}"
                )

    await progress.start()
    workers = [asyncio.create_task(worker()) for _ in range(min(llm.max_concurrency, len(todo)))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        progress.close()
    for w in done:
        if w.exception():
            await progress.stopped(w.exception())
            raise w.exception()


def _run(coro: Coroutine) -> Any:
    """Run a coroutine to completion from sync code, in a fresh thread when an event loop is already running."""
    if not _loop_running():
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, coro).result()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def failure_kind(exc: LLMError) -> str:
    """A short, countable reason for a chunk that failed."""
    status = exc.status or "no response"
    if exc.transient:
        return f"transient faults outlasted every attempt ({status})"
    return f"rejected by the provider ({status})"


def sample_chunks(chunks: list[dict], fraction: float) -> list[dict]:
    """A stable sample: a chunk is in iff its id hashes below the fraction, so adding documents never reshuffles it."""
    if fraction >= 1:
        return chunks
    threshold = int(fraction * 2**32)
    return [c for c in chunks if int(sha256_bytes(c["chunk_id"].encode())[:8], 16) < threshold]


def generate_pairs(
    chunks: list[dict],
    llm: LLMSettings,
    filters: FilterSettings,
    endpoint: LLMEndpoint,
    base_model_dir: str,
    store: RunStore,
) -> GenerationResult:
    """Ask the LLM for questions about every chunk (paying only for uncached ones), filter them, store the pairs."""
    started = time.monotonic()
    corpus, chunks = chunks, sample_chunks(chunks, llm.chunk_fraction)
    answers, failures, stats = _run(collect_answers(chunks, llm, endpoint, store))
    keys = [cache_key(c["text"], llm) for c in chunks]
    candidates = [
        {"query": q, "chunk_id": c["chunk_id"], "doc_id": c["doc_id"]}
        for c, k in zip(chunks, keys)
        for q in answers.get(k, [])
    ]
    texts = {c["chunk_id"]: c["text"] for c in corpus}
    kept, dropped = filter_questions(candidates, texts, filters, base_model_dir)
    rows = sorted(kept, key=lambda r: (r["doc_id"], r["chunk_id"], r["query"]))
    failed = [
        {"chunk_id": c["chunk_id"], "reason": failures[k][0], "detail": failures[k][1][:300]}
        for c, k in zip(chunks, keys)
        if k in failures
    ]
    stats.update(
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
        cost_usd=round(stats["cost_usd"], 6),
        cost_usd_total=round(stats["cost_usd"] + stats.pop("cost_usd_cached"), 6),
        model=llm.model,
        served_by=endpoint.model,
        prompt_version=prompt_version(llm),
        elapsed_s=round(time.monotonic() - started, 2),
        samples=_samples(kept, dropped, texts),
    )
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


def _retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry condition: only transient LLM faults (endpoint down, rate limits outlasting every attempt)."""
    exc = state.result(raise_on_failure=False, _sync=True)
    return isinstance(exc, LLMError) and exc.transient


def publish_report(result: GenerationResult) -> None:
    """The `qa-report` table artifact: outcomes with counts and examples; tokens and cost in the description."""
    from prefect.artifacts import create_table_artifact

    s = result.stats
    rows = [
        {"outcome": "kept (sample)", "count": "", "example": k["query"], "chunk": k["passage"]}
        for k in s["samples"]["kept"]
    ]
    if rows:
        rows[0].update(outcome="kept", count=s["questions_kept"])
    examples = {d["reason"]: d for d in reversed(s["samples"]["dropped"])}
    for reason, count in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
        example = examples.get(reason, {})
        rows.append(
            {
                "outcome": f"dropped: {reason}",
                "count": count,
                "example": example.get("query", ""),
                "chunk": example.get("chunk_id", ""),
            }
        )
    for reason, count in sorted(s["failed_reasons"].items(), key=lambda kv: -kv[1]):
        rows.append({"outcome": f"chunk failed: {reason}", "count": count, "example": "", "chunk": ""})
    description = (
        f"**{s['questions_kept']}** of {s['questions_raw']} questions kept from "
        f"{s['chunks_answered']}/{s['chunks_in']} chunks ({s['chunks_failed_count']} failed). "
        f"Model `{s['model']}`, prompt {s['prompt_version']}. "
        f"This run: {s['llm_calls']} LLM calls ({s['retries']} retries, {s['rate_limited']} rate-limited), "
        f"{s['cache_hits']} cache hits, {s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens, "
        f"${s['cost_usd']:.4f} (whole dataset ${s['cost_usd_total']:.4f})."
    )
    create_table_artifact(table=rows, key="qa-report", description=description)


@task(
    name="generate",
    cache_policy=code_and_inputs("tasks.qa_filters", "tasks.llm", "tasks.ratelimit", exclude=("endpoint",)),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=_retry_if_transient,
)
def generate_task(
    corpus: Ref,
    llm: LLMSettings,
    filters: FilterSettings,
    base_model: str,
    store_url: str,
    endpoint: LLMEndpoint,
) -> GenerationResult:
    """Questions for every chunk of the corpus; cached per chunk, so only new or failed chunks cost LLM calls."""
    logger = get_run_logger()
    chunks = read_jsonl(corpus)
    logger.info(
        "Generating %d questions per chunk for %d of %d chunks (chunk_fraction %g) with %s (served by %s, prompt %s)",
        llm.questions_per_chunk, len(sample_chunks(chunks, llm.chunk_fraction)), len(chunks), llm.chunk_fraction,
        llm.model, endpoint.model, prompt_version(llm),
    )
    result = generate_pairs(chunks, llm, filters, endpoint, resolve_model(base_model), RunStore(store_url))
    s = result.stats
    if chunks and not s["chunks_answered"]:
        reason = s["chunks_failed"][0]["detail"] if s["chunks_failed"] else "no answer"
        transient = any(r.startswith("transient") for r in s["failed_reasons"])
        raise (LLMTransientError if transient else LLMRejectedError)(f"no chunk was answered; first failure: {reason}")
    logger.info(
        "Kept %d of %d questions (%s); %d chunks answered, %d failed; %d LLM calls, %d cache hits, %d tokens, $%.4f",
        s["questions_kept"],
        s["questions_raw"],
        ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "none dropped",
        s["chunks_answered"], s["chunks_failed_count"], s["llm_calls"], s["cache_hits"],
        s["prompt_tokens"] + s["completion_tokens"], s["cost_usd"],
    )
    if s["chunks_failed_count"]:
        logger.warning(
            "%d chunks failed and will be asked again next run: %s", s["chunks_failed_count"], s["failed_reasons"]
        )
    publish_report(result)
    return result
