"""Fine-tuning: the train task, the fit (MNRL in MatryoshkaLoss with sentence-transformers' trainer), losses,
batching, the token cache, data-parallel ranks, checkpoints and the output rotation.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .fit import TrainResult, read_train_result, run_key, save_train_result
    from .task import publish_training_report, train_task, training_markdown
    from .trainer import matryoshka_dims

EXPORTS = {
    "TrainResult": "fit",
    "matryoshka_dims": "trainer",
    "publish_training_report": "task",
    "read_train_result": "fit",
    "run_key": "fit",
    "save_train_result": "fit",
    "train_task": "task",
    "training_markdown": "task",
}
__all__ = [
    "TrainResult",
    "matryoshka_dims",
    "publish_training_report",
    "read_train_result",
    "run_key",
    "save_train_result",
    "train_task",
    "training_markdown",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
