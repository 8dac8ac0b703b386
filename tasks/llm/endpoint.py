"""Which LLM is called and with which key: the endpoint litellm calls, and the key the settings name."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, SecretStr

from ..settings import EMBEDDED_LLMS, LLMSettings
from .errors import LLMFatalError


class LLMEndpoint(BaseModel):
    """What is actually called: a litellm model string and an optional api_base. Never part of a cache key."""

    model: str
    api_base: str | None = None
    api_key: SecretStr | None = Field(
        None, description="A local server's dummy key only; real keys come from LLMSettings (env var or Secret block)"
    )

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> LLMEndpoint:
        """The endpoint of a hosted or self-served model named in the settings (not 'embedded')."""
        if llm.model in EMBEDDED_LLMS:
            raise ValueError("the embedded model's endpoint comes from the local LLM server, not the settings")
        return cls(model=llm.model, api_base=llm.api_base)


def resolve_api_key(llm: LLMSettings) -> str | None:
    """The key from the env var named by api_key_env, else the Prefect Secret block, else None (provider env vars)."""
    if llm.api_key_env:
        value = os.environ.get(llm.api_key_env, "").strip()
        if not value:
            raise LLMFatalError(
                f"the environment variable {llm.api_key_env} (LLMSettings.api_key_env) is not set or empty"
            )
        return value
    if llm.api_key_secret_block:
        from prefect.blocks.system import Secret

        try:
            return str(Secret.load(llm.api_key_secret_block, _sync=True).get())
        except Exception as exc:  # missing block, no API, wrong type: all mean no key
            raise LLMFatalError(
                f"the Prefect Secret block '{llm.api_key_secret_block}' (LLMSettings.api_key_secret_block) "
                f"could not be loaded: {type(exc).__name__}"
            ) from None
    return None
