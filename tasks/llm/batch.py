"""Ask the LLM about many chunks: a worker pool that persists each answer as it arrives and stops on a failure streak."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.claims import release, try_claim
from ..core.progress import Progress
from ..core.reports import ProgressArtifact
from ..core.store import RunStore, put_record
from .client import Usage
from .errors import (
    MALFORMED,
    LLMError,
    LLMFatalError,
    LLMRejectedError,
    LLMTransientError,
    LLMUnavailableError,
    MalformedAnswer,
)

PROGRESS_KEY = "qa-progress"
CLAIM_POLL_S = 0.5  # how often a run looks whether another run has answered the chunks it waits on

Ask = Callable[
    [dict, list[str]], Awaitable[tuple[list[str], float]]
]  # (chunk, questions already held) -> questions, cost


def failure_kind(exc: LLMError) -> str:
    """A short, countable reason for a chunk that failed."""
    status = exc.status or "no response"
    if exc.transient:
        return f"transient faults outlasted every attempt ({status})"
    return f"rejected by the provider ({status})"


def usage_line(usage: Usage, failed: int) -> str:
    """'12 failed, 340 calls, 71234 tokens, $0.0000'."""
    return f"{failed} failed, {usage.calls} calls, {usage.prompt_tokens + usage.completion_tokens} tokens, ${usage.cost_usd:.4f}"


@dataclass
class Sharing:
    """How runs on one store share the asking: each chunk is claimed before it is asked (tasks/core/claims.py); a chunk
    another live run holds waits until that run stores its answer (`stored` reads it) or lets go of it."""

    lease_s: float
    stored: Callable[[str], list[str] | None]


@dataclass
class AskPlan:
    """How ask_all asks: the call per chunk, the cache record it stores and where, its usage counter, how runs share
    the asking, how many requests at once, and when a streak of failed chunks stops it."""

    ask: Ask
    record: Callable[[list[str], float], dict]
    store: RunStore
    usage: Usage
    sharing: Sharing
    concurrency: int = 1
    max_consecutive_failures: int = 10
    answered_before: int = 0  # chunks already answered from the cache: counted in a stopped run's message


@dataclass
class Asked:
    """What ask_all got: the questions per cache key, each failed chunk's (reason, detail), and how many chunks another
    run on the same store answered meanwhile."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    shared: int = 0

    def resumable(self, before: int) -> str:
        """What a stopped run keeps: '12 chunks answered and cached so far, a re-run resumes from there'."""
        return f"{before + len(self.answers)} chunks answered and cached so far, a re-run resumes from there"


async def ask_all(todo: dict[str, tuple[dict, list[str]]], plan: AskPlan) -> Asked:
    """Ask about every pending (chunk, questions held) under its cache key with plan.concurrency workers; each answer is
    written to qa-cache/<key> as it arrives; a fatal error or a streak of failed chunks stops the run."""
    asked = Asked()
    store, usage, sharing, ask = plan.store, plan.usage, plan.sharing, plan.ask
    queue = deque(todo.items())
    waiting: dict[str, tuple[dict, list[str]]] = {}
    checking = asyncio.Lock()
    failed = 0
    progress = Progress("generate", len(todo), "chunks", extra=lambda: usage_line(usage, failed))
    artifact = ProgressArtifact(PROGRESS_KEY)
    streak: list[LLMError] = []

    async def taken_from_another_run(key: str) -> bool:
        """Whether another run has stored the answer to `key` (then it is this run's answer too)."""
        if (questions := await asyncio.to_thread(sharing.stored, key)) is None:
            return False
        asked.answers[key] = questions
        asked.shared += 1
        progress.advance()
        return True

    async def check_waiting() -> None:
        """Take the answers other runs stored; claim back the chunks they let go of."""
        for key in list(waiting):
            if await taken_from_another_run(key):
                del waiting[key]
            elif await asyncio.to_thread(try_claim, store, "qa-cache", key, sharing.lease_s):
                queue.append((key, waiting.pop(key)))

    async def next_item() -> tuple[str, tuple[dict, list[str]]] | None:
        """The next chunk this run holds the claim on and nobody has answered, or None when none is left."""
        while queue or waiting:
            if queue:
                key, item = queue.popleft()
                if not await asyncio.to_thread(try_claim, store, "qa-cache", key, sharing.lease_s):
                    waiting[key] = item
                elif await taken_from_another_run(key):  # answered between this run's first look and its claim
                    release(store, "qa-cache", key)
                else:
                    return key, item
                continue
            async with checking:
                await check_waiting()
            if not queue and waiting:
                await asyncio.sleep(CLAIM_POLL_S)
        return None

    async def settle(key: str, chunk: dict, have: list[str]) -> None:
        """Ask about one claimed chunk; store its answer, or count its failure."""
        nonlocal failed
        try:
            questions, cost = await ask(chunk, have)
        except MalformedAnswer:
            error: LLMError = LLMRejectedError(f"{MALFORMED}: no usable question in the answers")
            asked.failures[key] = (MALFORMED, str(error))
        except LLMFatalError:
            raise
        except LLMUnavailableError as exc:
            raise LLMUnavailableError(f"stopped generating: {exc} ({asked.resumable(plan.answered_before)})") from None
        except LLMError as exc:
            error = exc
            asked.failures[key] = (failure_kind(exc), str(exc))
        else:
            await asyncio.to_thread(put_record, store.key_path("qa-cache", key, ".json"), plan.record(questions, cost))
            asked.answers[key] = questions
            streak.clear()
            progress.advance()
            await artifact.push(
                100.0 * progress.done / max(1, progress.total), progress.line(), force=progress.done == progress.total
            )
            return
        failed += 1
        streak.append(error)
        progress.advance()
        if len(streak) >= plan.max_consecutive_failures:
            kind = LLMTransientError if error.transient else LLMRejectedError
            stopped = f"{len(streak)} chunks in a row failed ({asked.resumable(plan.answered_before)})"
            raise kind(f"stopped generating: {stopped}; last error: {error}")

    async def worker() -> None:
        while item := await next_item():
            key, (chunk, have) = item
            try:
                await settle(key, chunk, have)
            finally:
                release(store, "qa-cache", key)  # answered, failed or stopped: no other run waits on it any more

    await artifact.push(0.0, progress.line(), force=True)
    workers = [asyncio.create_task(worker()) for _ in range(min(plan.concurrency, len(todo)))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    for w in done:
        if w.exception():
            await artifact.push(
                100.0 * progress.done / max(1, progress.total), f"stopped: {str(w.exception())[:300]}", force=True
            )
            raise w.exception()
    return asked


def run_sync(coro: Coroutine) -> Any:
    """Run a coroutine to completion from sync code, in a fresh thread when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, coro).result()
