"""LLM calls through litellm: one endpoint, retries on transient faults only, usage and cost."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field

import openai

from ..core.env import import_defaults
from ..settings import LLMSettings
from .endpoint import LLMEndpoint
from .errors import (
    LLMFatalError,
    LLMRejectedError,
    LLMTransientError,
    LLMUnavailableError,
    classify,
    error_status,
    refuses_format,
    retry_after_s,
)
from .ratelimit import RateLimiter

with import_defaults("LITELLM_LOCAL_MODEL_COST_MAP"):  # never fetch the price list at import
    import litellm

litellm.suppress_debug_info = True
log = logging.getLogger("domain_embed.llm")

PLACEHOLDER_KEY = "sk-no-key-required"
LITELLM_PREFIX = re.compile(r"^(litellm\.\w+: )?(\w+Error: )?(\w+(Exception|Error) - )?")
PROBE_PAUSE_CAP_S = (
    2.0  # longest pause between requests to a failing endpoint (a restarting server is back in seconds)
)


@dataclass
class Completion:
    """One successful answer with its usage."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class Usage:
    """Running totals of a client: real calls (retries included), tokens, cost and faults seen."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    faults: dict = field(default_factory=dict)

    def count_fault(self, name: str) -> None:
        self.faults[name] = self.faults.get(name, 0) + 1


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """Tokens a request may use before it is sent: ~4 characters a token for the prompt plus the completion cap."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + 4 * len(messages) + max_tokens


Outcome = Completion | openai.OpenAIError | None


class LLMClient:
    """Calls one endpoint through litellm with our own retry loop under a shared RateLimiter."""

    def __init__(
        self,
        endpoint: LLMEndpoint,
        settings: LLMSettings,
        limiter: RateLimiter | None = None,
        api_key: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.limiter = limiter or RateLimiter(
            settings.requests_per_minute,
            settings.tokens_per_minute,
            settings.max_concurrency,
            concurrency_limit=settings.concurrency_limit,
        )
        endpoint_key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        self.api_key = api_key or endpoint_key or self._default_key()
        self.response_format_ok = True
        self.usage = Usage()
        self.unanswered_in_row = 0
        self.unanswered_since = 0.0  # when the streak's first unanswered request failed (time.monotonic)
        self.last_unanswered: BaseException | None = None
        self._warm = False
        self._warming = asyncio.Lock()

    def _default_key(self) -> str | None:
        """None lets litellm read the provider's env vars; a self-hosted OpenAI-compatible server gets a placeholder."""
        try:
            _, provider, _, _ = litellm.get_llm_provider(self.endpoint.model, api_base=self.endpoint.api_base)
        except Exception:  # unknown provider: litellm will say so on the first call
            return None
        if provider == "openai" and self.endpoint.api_base and not os.environ.get("OPENAI_API_KEY"):
            return PLACEHOLDER_KEY
        return None

    def key_hint(self) -> str:
        """Where the key should come from, naming variables and blocks but never the key itself."""
        if self.settings.api_key_env:
            return f"check the key in the environment variable {self.settings.api_key_env} (LLMSettings.api_key_env)"
        if self.settings.api_key_secret_block:
            return f"check the API key in the Prefect Secret block '{self.settings.api_key_secret_block}'"
        try:
            missing = litellm.validate_environment(model=self.endpoint.model).get("missing_keys") or []
        except Exception:  # litellm may not know the provider
            missing = []
        also = f" or set {' / '.join(missing)}" if missing else ""
        return f"set LLMSettings.api_key_env to the name of an environment variable holding the key{also}"

    def describe(self, exc: BaseException) -> str:
        """The provider's message with the model named and the key scrubbed out."""
        message = LITELLM_PREFIX.sub("", str(getattr(exc, "message", None) or exc).strip())
        if self.api_key and self.api_key != PLACEHOLDER_KEY:
            message = message.replace(self.api_key, "***")
        return f"{self.endpoint.model}: {error_status(exc)} {message[:400]}"

    def backoff(self, attempt: int, exc: BaseException) -> float:
        """Retry-After when the server gave one (plus up to 10% jitter), else exponential backoff with equal jitter."""
        cap = self.settings.max_backoff_s
        server = retry_after_s(exc)
        if server is not None:
            server = min(server, cap)
            return server + random.uniform(0, min(1.0, 0.1 * server))
        delay = min(cap, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    async def complete(self, messages: list[dict], response_format: dict | None = None) -> Completion:
        """One chat completion; transient faults are retried up to max_attempts, anything else raises at once."""
        attempt = 0
        while True:
            attempt += 1
            outcome, sent_at = await self._first_or_concurrent(messages, response_format)
            if outcome is None:  # response_format refused: ask again without, not counted as an attempt
                attempt -= 1
                continue
            if isinstance(outcome, Completion):
                self.unanswered_in_row = 0
                self.limiter.succeeded()
                return outcome
            error, kind = outcome, classify(outcome)
            self.usage.count_fault(error_status(error))
            status = getattr(error, "status_code", None)
            self.count_unanswered(error, kind, sent_at)
            self.check_streak()
            if kind == "fatal":
                raise LLMFatalError(f"{self.describe(error)} ({self.key_hint()})", status)
            if kind == "rejected":
                raise LLMRejectedError(self.describe(error), status)
            if attempt >= self.settings.max_attempts:
                raise LLMTransientError(f"gave up after {attempt} attempts: {self.describe(error)}", status)
            delay = self.backoff(attempt, error)
            self.usage.retries += 1
            if status == 429:
                self.usage.rate_limited += 1
                self.limiter.throttled(delay)
            await asyncio.sleep(delay)

    def count_unanswered(self, error: openai.OpenAIError, kind: str, sent_at: float) -> None:
        """Count requests in a row that got no answer (connection error, timeout, 5xx; a 429 is an answer); the
        requests already in flight when the streak began fail with it and count as one."""
        if kind != "transient" or getattr(error, "status_code", None) == 429:
            self.unanswered_in_row = 0
            return
        if self.unanswered_in_row == 0 or sent_at >= self.unanswered_since:
            self.unanswered_in_row += 1
            if self.unanswered_in_row == 1:
                self.unanswered_since = time.monotonic()
        self.last_unanswered = error
        self._warm = False  # requests go one at a time until one is answered

    def check_streak(self) -> None:
        """Stop before another request once max_consecutive_failures requests in a row went unanswered."""
        if self.unanswered_in_row >= self.settings.max_consecutive_failures:
            raise LLMUnavailableError(
                f"{self.endpoint.model}: {self.unanswered_in_row} requests in a row got no answer "
                f"(connection error, timeout or 5xx), last: {self.describe(self.last_unanswered)}"
            )

    async def _first_or_concurrent(self, messages: list[dict], response_format: dict | None) -> tuple[Outcome, float]:
        """One attempt and when it was sent. Until a request is answered (at the start, and again after a fault)
        requests go one at a time, after a growing pause (PROBE_PAUSE_CAP_S at most) while the endpoint is failing:
        litellm's cold start would bunch them, a bad key costs one call, a server restarting (seconds) is waited for,
        and a dead endpoint costs max_consecutive_failures calls."""
        if not self._warm:
            async with self._warming:
                if not self._warm:
                    self.check_streak()
                    if self.unanswered_in_row:
                        await asyncio.sleep(
                            min(PROBE_PAUSE_CAP_S, self.backoff(self.unanswered_in_row, self.last_unanswered))
                        )
                    sent_at = time.monotonic()
                    outcome = await self._attempt(messages, response_format)
                    self._warm = not isinstance(outcome, openai.OpenAIError) or classify(outcome) != "fatal"
                    return outcome, sent_at
        self.check_streak()
        sent_at = time.monotonic()
        return await self._attempt(messages, response_format), sent_at

    async def _attempt(self, messages: list[dict], response_format: dict | None) -> Outcome:
        """One call under the limiter: the completion, the provider's error, or None if response_format was refused."""
        fmt = response_format if self.response_format_ok else None
        async with self.limiter.slot(estimate_tokens(messages, self.settings.max_tokens)) as slot:
            self.usage.calls += 1
            try:
                response = await litellm.acompletion(**self._kwargs(messages, fmt))
            except openai.OpenAIError as exc:
                if fmt is not None and refuses_format(exc):
                    self.response_format_ok = False
                    log.warning("%s rejected response_format; asking without it from now on", self.endpoint.model)
                    return None
                return exc
            completion = self._account(response)
            slot.actual_tokens = completion.prompt_tokens + completion.completion_tokens or None
            return completion

    def _kwargs(self, messages: list[dict], fmt: dict | None) -> dict:
        kwargs = dict(
            model=self.endpoint.model,
            messages=messages,
            api_base=self.endpoint.api_base,
            api_key=self.api_key,
            timeout=self.settings.timeout_s,
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_tokens,
            num_retries=0,
            drop_params=True,
        )
        if fmt is not None:
            kwargs["response_format"] = fmt
        return kwargs

    def _account(self, response) -> Completion:
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unpriced model (local, self-hosted): free as far as we know
            cost = 0.0
        self.usage.prompt_tokens += prompt
        self.usage.completion_tokens += completion
        self.usage.cost_usd += cost
        text = (response.choices[0].message.content or "") if response.choices else ""
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost)
