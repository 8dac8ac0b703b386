"""Hard negatives: positive-aware mining (TopK-PercPos) with the base model and FAISS.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .mine import MiningResult, mine_task

EXPORTS = {
    "MiningResult": "mine",
    "mine_task": "mine",
}
__all__ = [
    "MiningResult",
    "mine_task",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
