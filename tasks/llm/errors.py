"""How an LLM request failed: our error types, and reading a provider's error (kind, status, Retry-After)."""

from __future__ import annotations

import email.utils
import re
import time

from ..core.env import import_defaults
from ..core.faults import NotRetriable

with import_defaults("LITELLM_LOCAL_MODEL_COST_MAP"):  # never fetch the price list at import
    import litellm

TRANSIENT_TYPES = (
    litellm.RateLimitError,
    litellm.Timeout,
    litellm.APIConnectionError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.BadGatewayError,
)
FATAL_TYPES = (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.NotFoundError)
MISSING_KEY = re.compile(
    r"missing credentials|api[_ ]key.{0,40}(must be set|missing|not set)|missing.{0,20}api[_ ]key", re.I
)
RESPONSE_FORMAT = re.compile(r"response[_ ]format|json[_ ]schema|json[_ ]object|structured output", re.I)


class LLMError(RuntimeError, NotRetriable):
    """An LLM request that failed for good (the client's own retries are spent); `status` is the HTTP status if any."""

    transient = False

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMTransientError(LLMError):
    """Rate limits, timeouts, 5xx or connection faults outlasted every attempt; trying later may work."""

    transient = True


class LLMUnavailableError(LLMTransientError):
    """max_consecutive_failures requests in a row went unanswered (connection error, timeout, 5xx): the run stops."""


class LLMRejectedError(LLMError):
    """The provider rejected this request (400-type: bad request, context window, content policy)."""


class LLMFatalError(LLMError):
    """The endpoint refuses every request (missing or wrong key, no permission, unknown model): stop the run."""


def classify(exc: BaseException) -> str:
    """'fatal' (auth, payment, permission, unknown model, missing key), 'transient' (429, timeout, 5xx, connection)
    or 'rejected' (anything else the provider refused)."""
    status = getattr(exc, "status_code", None)
    if MISSING_KEY.search(str(exc)) or isinstance(exc, FATAL_TYPES) or status in (401, 402, 403, 404):
        return "fatal"
    server_side = isinstance(status, int) and status >= 500
    if isinstance(exc, TRANSIENT_TYPES) or status in (408, 409, 425, 429) or server_side:
        return "transient"
    return "rejected"


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date), if it said."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if not headers:
            continue
        try:
            if headers.get("retry-after-ms"):
                return max(0.0, float(headers["retry-after-ms"]) / 1000)
            value = headers.get("retry-after")
            if value:
                try:
                    return max(0.0, float(value))
                except ValueError:
                    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None


def error_status(exc: BaseException) -> str:
    """A short name for a fault: the HTTP status, or the exception type."""
    status = getattr(exc, "status_code", None)
    return str(status) if isinstance(status, int) else type(exc).__name__


def refuses_format(exc: BaseException) -> bool:
    """A refusal of response_format: 400/422, or a 500 from servers that fail validation (llama-cpp-python)."""
    status = getattr(exc, "status_code", None)
    return classify(exc) != "fatal" and status != 429 and bool(RESPONSE_FORMAT.search(str(exc)))


MALFORMED = "malformed answer"


class MalformedAnswer(ValueError):
    """The LLM's answer holds no usable question."""
