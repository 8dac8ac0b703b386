"""Client-side rate limiting for LLM calls: request and token buckets, a concurrency cap, a shared Prefect quota."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TokenBucket:
    """Refills at `per_minute`/60 per second and holds at most `burst_s` seconds of quota (at least one unit)."""

    def __init__(self, per_minute: float, burst_s: float = 0.5) -> None:
        self.full_rate = self.rate = per_minute / 60.0
        self.burst_s = burst_s
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken; a demand above capacity waits for a full bucket and runs into debt."""
        self._refill(now)
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Correct an earlier estimate: positive returns quota, negative charges more."""
        self.level = min(self.capacity, self.level + amount)

    def scale(self, factor: float, now: float) -> None:
        """Run at `factor` of the configured rate (and burst) from now on."""
        self._refill(now)
        self.rate = self.full_rate * factor
        self.capacity = max(1.0, self.rate * self.burst_s)
        self.level = min(self.level, self.capacity)


class RateLimiter:
    """Requests/minute and tokens/minute token buckets plus a semaphore; optionally a Prefect `rate_limit` per request.

    Grants are FIFO. A 429 from the server pauses every caller until its Retry-After has passed and halves the rate
    (once per pause); each success wins back 5% of the configured rate, so the client settles under a server's real
    limit when that is lower than configured (a shared key, a wrong setting).
    """

    MIN_FACTOR = 1 / 32
    RECOVERY_STEP = 0.05

    def __init__(
        self,
        requests_per_minute: float,
        tokens_per_minute: float,
        max_concurrency: int,
        burst_s: float = 0.5,
        concurrency_limit: str | None = None,
    ) -> None:
        self.requests = TokenBucket(requests_per_minute, burst_s)
        self.tokens = TokenBucket(tokens_per_minute, burst_s)
        self.concurrency_limit = concurrency_limit
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self.factor = 1.0
        self.waited_s = 0.0

    def pause(self, seconds: float) -> None:
        """Hold back all new requests for `seconds`."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def throttled(self, retry_after_s: float) -> None:
        """The server answered 429: pause everyone and halve the rate, unless this 429 belongs to the current pause."""
        now = time.monotonic()
        if now >= self._paused_until:
            self._set_factor(max(self.MIN_FACTOR, self.factor / 2), now)
        self.requests.level = min(self.requests.level, 0.0)  # no burst credit when the server says we are over
        self.pause(retry_after_s)

    def succeeded(self) -> None:
        """A request went through: win back some of the rate."""
        if self.factor < 1.0:
            self._set_factor(min(1.0, self.factor + self.RECOVERY_STEP), time.monotonic())

    def _set_factor(self, factor: float, now: float) -> None:
        self.factor = factor
        self.requests.scale(factor, now)
        self.tokens.scale(factor, now)

    async def _acquire(self, tokens: int) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = max(
                    self._paused_until - now, self.requests.wait_time(1, now), self.tokens.wait_time(tokens, now)
                )
                if wait <= 0:
                    self.requests.take(1, now)
                    self.tokens.take(tokens, now)
                    return
                self.waited_s += wait
                await asyncio.sleep(wait)

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[Reservation]:
        """Hold a concurrency slot and the quota of one request; settle the token estimate on exit."""
        async with self._semaphore:
            await self._acquire(estimated_tokens)
            if self.concurrency_limit:  # outside our lock: one slow API call must not serialise the others
                await shared_rate_limit(self.concurrency_limit)
            reservation = Reservation(estimated_tokens)
            try:
                yield reservation
            finally:
                if reservation.actual_tokens is not None:
                    self.tokens.give_back(estimated_tokens - reservation.actual_tokens)


class QuotaError(RuntimeError):
    """The configured Prefect global concurrency limit cannot be used."""


async def shared_rate_limit(name: str) -> None:
    """Take one slot of a Prefect global concurrency limit with slot decay, shared by every run that names it."""
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

    try:
        await rate_limit(name, strict=True)
    except ConcurrencySlotAcquisitionError as exc:
        raise QuotaError(
            f"Prefect global concurrency limit '{name}' (LLMSettings.concurrency_limit) is not usable ({exc}); "
            f"create it with a slot decay, e.g. `prefect gcl create {name} --limit 10 --slot-decay-per-second 8`"
        ) from None


class Reservation:
    """The quota one request holds; set `actual_tokens` once the provider reported its usage."""

    def __init__(self, estimated_tokens: int) -> None:
        self.estimated_tokens = estimated_tokens
        self.actual_tokens: int | None = None
