"""Ask the LLM about many chunks: a worker pool that persists each answer as it arrives and stops on a failure streak."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Coroutine

from domain_embed.tasks.llm import Usage
from domain_embed.tasks.llm_errors import LLMError, LLMFatalError, LLMRejectedError, LLMTransientError, LLMUnavailableError
from domain_embed.tasks.progress import Progress
from domain_embed.tasks.reports import ProgressArtifact
from domain_embed.tasks.prompts import MALFORMED, MalformedAnswer
from domain_embed.tasks.store import RunStore, atomic_write

PROGRESS_KEY = "qa-progress"

Ask = Callable[[dict, list[str]], Awaitable[tuple[list[str], float]]]  # (chunk, questions already held) -> questions, cost


def failure_kind(exc: LLMError) -> str:
    """A short, countable reason for a chunk that failed."""
    status = exc.status or "no response"
    if exc.transient:
        return f"transient faults outlasted every attempt ({status})"
    return f"rejected by the provider ({status})"


def usage_line(usage: Usage, failed: int) -> str:
    """'12 failed, 340 calls, 71234 tokens, $0.0000'."""
    return f"{failed} failed, {usage.calls} calls, {usage.prompt_tokens + usage.completion_tokens} tokens, ${usage.cost_usd:.4f}"


def resumable(answers: dict[str, list[str]]) -> str:
    """What a stopped run keeps: '12 chunks answered and cached so far, a re-run resumes from there'."""
    return f"{len(answers)} chunks answered and cached so far, a re-run resumes from there"


async def ask_all(
    todo: dict[str, tuple[dict, list[str]]],
    ask: Ask,
    usage: Usage,
    record: Callable[[list[str], float], dict],
    store: RunStore,
    concurrency: int,
    max_consecutive_failures: int,
    answers: dict[str, list[str]],
    failures: dict[str, tuple[str, str]],
) -> None:
    """Ask for every pending (chunk, questions held) under its cache key with `concurrency` workers; each answer is
    written to qa-cache/<key> as it arrives; a fatal error or a streak of failed chunks stops the run."""
    queue = deque(todo.items())
    failed = 0
    progress = Progress("generate", len(todo), "chunks", extra=lambda: usage_line(usage, failed))
    artifact = ProgressArtifact(PROGRESS_KEY)
    streak: list[LLMError] = []

    async def worker() -> None:
        nonlocal failed
        while queue:
            key, (chunk, have) = queue.popleft()
            try:
                questions, cost = await ask(chunk, have)
            except MalformedAnswer:
                error: LLMError = LLMRejectedError(f"{MALFORMED}: no usable question in the answers")
                failures[key] = (MALFORMED, str(error))
            except LLMFatalError:
                raise
            except LLMUnavailableError as exc:
                raise LLMUnavailableError(f"stopped generating: {exc} ({resumable(answers)})") from None
            except LLMError as exc:
                error = exc
                failures[key] = (failure_kind(exc), str(exc))
            else:
                data = json.dumps(record(questions, cost), ensure_ascii=False, sort_keys=True).encode()
                await asyncio.to_thread(atomic_write, store.key_path("qa-cache", key, ".json"), data)
                answers[key] = questions
                streak.clear()
                progress.advance()
                await artifact.push(100.0 * progress.done / max(1, progress.total), progress.line(), force=progress.done == progress.total)
                continue
            failed += 1
            streak.append(error)
            progress.advance()
            if len(streak) >= max_consecutive_failures:
                kind = LLMTransientError if error.transient else LLMRejectedError
                raise kind(f"stopped generating: {len(streak)} chunks in a row failed ({resumable(answers)}); last error: {error}")

    await artifact.push(0.0, progress.line(), force=True)
    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    for w in done:
        if w.exception():
            await artifact.push(100.0 * progress.done / max(1, progress.total), f"stopped: {str(w.exception())[:300]}", force=True)
            raise w.exception()


def run_sync(coro: Coroutine) -> Any:
    """Run a coroutine to completion from sync code, in a fresh thread when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, coro).result()
