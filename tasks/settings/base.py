"""The base of every settings group, and the names of the embedded generators."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

EMBEDDED_LLM = "embedded"
EMBEDDED_LARGE_LLM = "embedded-large"
EMBEDDED_LLMS = (EMBEDDED_LLM, EMBEDDED_LARGE_LLM)


class Settings(BaseModel):
    """A settings group: an unknown field is an error naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")
