"""Training questions: the LLM's (prompts, generate, filters), the ones that cost no call (supervision), and the
split by document.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .generate import generate_pairs, generate_task
    from .report import GenerationResult
    from .split import SplitResult, split_task
    from .supervision import SupervisionResult, supervise_task

EXPORTS = {
    "GenerationResult": "report",
    "SplitResult": "split",
    "SupervisionResult": "supervision",
    "generate_pairs": "generate",
    "generate_task": "generate",
    "split_task": "split",
    "supervise_task": "supervision",
}
__all__ = [
    "GenerationResult",
    "SplitResult",
    "SupervisionResult",
    "generate_pairs",
    "generate_task",
    "split_task",
    "supervise_task",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
