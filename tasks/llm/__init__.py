"""The question-writing LLM: the litellm client with its rate limit, errors and batches, the endpoint and key, and
the embedded models served on this machine.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .client import LLMClient
    from .endpoint import LLMEndpoint, resolve_api_key
    from .errors import LLMError
    from .host import llm_endpoint, run_settings, shared_embedded_server
    from .local import EMBEDDED_MODELS, EmbeddedLLMError, embedded_llm_server, embedded_model

EXPORTS = {
    "EMBEDDED_MODELS": "local",
    "EmbeddedLLMError": "local",
    "LLMClient": "client",
    "LLMEndpoint": "endpoint",
    "LLMError": "errors",
    "embedded_llm_server": "local",
    "embedded_model": "local",
    "llm_endpoint": "host",
    "resolve_api_key": "endpoint",
    "run_settings": "host",
    "shared_embedded_server": "host",
}
__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedLLMError",
    "LLMClient",
    "LLMEndpoint",
    "LLMError",
    "embedded_llm_server",
    "embedded_model",
    "llm_endpoint",
    "resolve_api_key",
    "run_settings",
    "shared_embedded_server",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
