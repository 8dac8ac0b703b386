"""The LLM layer against a real OpenAI-compatible server on 127.0.0.1, called through litellm like a hosted provider."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DO_NOT_TRACK", "true")

import pytest  # noqa: E402
from llm_stub import LLMStub  # noqa: E402

from domain_embed.tasks.llm.client import LLMClient  # noqa: E402
from domain_embed.tasks.llm.endpoint import LLMEndpoint, resolve_api_key  # noqa: E402
from domain_embed.tasks.llm.errors import (  # noqa: E402
    LLMFatalError,
    LLMRejectedError,
    LLMTransientError,
    retry_after_s,
)
from domain_embed.tasks.llm.ratelimit import RateLimiter  # noqa: E402
from domain_embed.tasks.settings import LLMSettings  # noqa: E402

JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "q", "schema": {"type": "object"}}}
JSON_OBJECT = {"type": "json_object", "schema": {"type": "object"}}


def ask_for(i: int, filler: int = 0) -> list[dict]:
    passage = f"Passage number {i} about tides. " + "The moon pulls the oceans. " * filler
    return [{"role": "user", "content": f"Write 2 questions.\n<passage>\n{passage}\n</passage>"}]


def settings(**kw) -> LLMSettings:
    base = dict(model="stub", backoff_base_s=0.05, max_tokens=32, timeout_s=5, max_attempts=4)
    return LLMSettings(**{**base, **kw})


def client_for(stub: LLMStub, **kw) -> LLMClient:
    return LLMClient(LLMEndpoint(model="openai/stub-model", api_base=stub.api_base), settings(**kw), api_key="sk-test")


def run_many(client: LLMClient, n: int, filler: int = 0) -> list:
    async def main():
        return await asyncio.gather(*(client.complete(ask_for(i, filler)) for i in range(n)))

    return asyncio.run(main())


def max_in_window(stub: LLMStub, window: float, weight=lambda r: 1) -> float:
    """The most any `window`-second stretch received (weighted), over all start points."""
    reqs = stub.requests
    return max(sum(weight(r) for r in reqs if start.t <= r.t < start.t + window) for start in reqs)


def test_request_rate_never_exceeds_limit():
    with LLMStub(latency_s=0.02) as stub:
        client = client_for(stub, requests_per_minute=1200, tokens_per_minute=10**7, max_concurrency=8)
        answers = run_many(client, 30)
    assert len(answers) == 30 and all(a.text for a in answers)
    burst = client.limiter.requests.capacity  # half a second's worth
    for window in (0.25, 0.5, 1.0):
        assert max_in_window(stub, window) <= 20 * window + burst + 1


def test_token_rate_never_exceeds_limit():
    with LLMStub() as stub:
        client = client_for(stub, requests_per_minute=10**5, tokens_per_minute=60_000, max_concurrency=8)
        run_many(client, 16, filler=14)
        biggest = max(r.tokens for r in stub.requests)
    assert client.usage.calls == 16 == stub.count(200)
    # tokens as the server counted them; the bucket may go one request into debt
    for window in (0.5, 1.0):
        bound = 1000 * window + client.limiter.tokens.capacity + biggest
        assert max_in_window(stub, window, lambda r: r.tokens) <= bound


def test_server_side_rate_limit_is_absorbed_with_retry_after():
    with LLMStub(rpm=300, burst_s=1.0) as stub:
        client = client_for(stub, requests_per_minute=6000, max_concurrency=8, max_attempts=8)
        answers = run_many(client, 16)
    assert len(answers) == 16 and stub.count(200) == 16
    assert stub.count(429) > 0 and client.usage.rate_limited == stub.count(429)


def test_retry_after_is_honoured():
    with LLMStub(faults=["429"], retry_after_s=1.2) as stub:
        client = client_for(stub)
        answer = asyncio.run(client.complete(ask_for(0)))
        first, second = stub.requests
    assert answer.text and client.usage.rate_limited == 1
    assert (first.status, second.status) == (429, 200)
    assert second.t - first.t >= 1.2


def test_transient_faults_are_retried_until_success():
    with LLMStub(faults=["500", "503", "timeout", "429"], retry_after_s=0.1, hang_s=3) as stub:
        client = client_for(stub, timeout_s=0.5, max_attempts=5)
        answer = asyncio.run(client.complete(ask_for(0)))
    assert '"questions"' in answer.text
    assert [r.fault for r in stub.requests] == ["500", "503", "timeout", "429", "ok"]
    assert client.usage.calls == 5 and client.usage.retries == 4
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0 and answer.cost_usd == 0.0


def test_gives_up_after_max_attempts():
    with LLMStub(faults=["503"] * 10) as stub:
        client = client_for(stub, max_attempts=3)
        with pytest.raises(LLMTransientError, match="gave up after 3 attempts.*503"):
            asyncio.run(client.complete(ask_for(0)))
    assert stub.count() == 3


@pytest.mark.parametrize("fault, error", [("400", LLMRejectedError), ("404", LLMFatalError)])
def test_client_errors_fail_at_once(fault, error):
    with LLMStub(faults=[fault] * 5) as stub:
        client = client_for(stub)
        with pytest.raises(error, match=f"openai/stub-model: {fault}"):
            asyncio.run(client.complete(ask_for(0)))
    assert stub.count() == 1


def test_auth_error_names_the_variable_never_the_key(monkeypatch):
    monkeypatch.setenv("STUB_LLM_KEY", "sk-very-secret-123")
    llm = settings(api_key_env="STUB_LLM_KEY")
    with LLMStub(faults=["401"] * 5) as stub:
        endpoint = LLMEndpoint(model="openai/stub-model", api_base=stub.api_base)
        client = LLMClient(endpoint, llm, api_key=resolve_api_key(llm))
        with pytest.raises(LLMFatalError) as caught:
            asyncio.run(client.complete(ask_for(0)))
    assert stub.count() == 1
    assert "STUB_LLM_KEY" in str(caught.value) and "401" in str(caught.value)
    assert "sk-very-secret-123" not in str(caught.value)


def test_missing_key_variable_fails_before_any_call(monkeypatch):
    monkeypatch.delenv("NO_SUCH_LLM_KEY", raising=False)
    with pytest.raises(LLMFatalError, match="NO_SUCH_LLM_KEY"):
        resolve_api_key(settings(api_key_env="NO_SUCH_LLM_KEY"))
    assert resolve_api_key(settings()) is None


@pytest.mark.parametrize(
    "reject, response_format, status",
    [(True, JSON_OBJECT, 400), (False, JSON_SCHEMA, 500)],  # 500: llama-cpp-python's answer to json_schema
)
def test_refused_response_format_falls_back_once(reject, response_format, status):
    with LLMStub(reject_response_format=reject) as stub:
        client = client_for(stub)
        answers = [asyncio.run(client.complete(ask_for(i), response_format)) for i in range(3)]
    assert all('"questions"' in a.text for a in answers)
    assert [r.status for r in stub.requests] == [status, 200, 200, 200]
    assert client.response_format_ok is False


def test_accepted_response_format_is_kept():
    with LLMStub() as stub:
        client = client_for(stub)
        asyncio.run(client.complete(ask_for(0), JSON_OBJECT))
    assert stub.count(200) == 1 and client.response_format_ok is True


def test_retry_after_header_forms():
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert retry_after_s(SimpleNamespace(litellm_response_headers={"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(SimpleNamespace(litellm_response_headers={"retry-after": "7"})) == 7.0
    assert 25 < retry_after_s(SimpleNamespace(litellm_response_headers={"retry-after": http_date})) <= 30
    assert retry_after_s(SimpleNamespace(litellm_response_headers={})) is None


def test_pause_holds_back_every_caller():
    async def main():
        limiter = RateLimiter(6000, 10**7, 4)
        limiter.pause(0.3)
        started = time.monotonic()
        async with limiter.slot(10):
            return time.monotonic() - started

    assert asyncio.run(main()) >= 0.3
