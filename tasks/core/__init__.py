"""The plumbing every stage stands on: the run store and its references, cache keys, claims, faults, the
environment, progress and artifacts, file names, pre-flight checks, models as store references, task runners.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:
    from .caching import code_and_inputs, source_hash
    from .claims import exclusive
    from .env import OFFLINE_DEFAULTS, ONLINE_ENV, set_offline_defaults
    from .faults import is_transient, retry_if_transient
    from .lifeline import api_answers, die_with_worker
    from .model_ref import ModelRef, local_model, put_model
    from .names import escape_name, unescape_name
    from .objects import CorruptObject, Ref, exists, intact, iter_jsonl, read_json, read_jsonl, read_npy, stable_hash
    from .preflight import check_output_folder, check_store, store_need
    from .progress import Progress, Stopwatch, run_logger
    from .reports import markdown_table, png_line_chart, publish_markdown, publish_table
    from .runner import batches, label, task_runner
    from .store import RunStore, StoreFull, default_store_url, out_of_space

EXPORTS = {
    "CorruptObject": "objects",
    "ModelRef": "model_ref",
    "OFFLINE_DEFAULTS": "env",
    "ONLINE_ENV": "env",
    "Progress": "progress",
    "Ref": "objects",
    "RunStore": "store",
    "Stopwatch": "progress",
    "StoreFull": "store",
    "api_answers": "lifeline",
    "batches": "runner",
    "check_output_folder": "preflight",
    "check_store": "preflight",
    "code_and_inputs": "caching",
    "default_store_url": "store",
    "die_with_worker": "lifeline",
    "escape_name": "names",
    "exclusive": "claims",
    "exists": "objects",
    "intact": "objects",
    "is_transient": "faults",
    "iter_jsonl": "objects",
    "label": "runner",
    "local_model": "model_ref",
    "markdown_table": "reports",
    "out_of_space": "store",
    "png_line_chart": "reports",
    "publish_markdown": "reports",
    "publish_table": "reports",
    "put_model": "model_ref",
    "read_json": "objects",
    "read_jsonl": "objects",
    "read_npy": "objects",
    "retry_if_transient": "faults",
    "run_logger": "progress",
    "set_offline_defaults": "env",
    "source_hash": "caching",
    "stable_hash": "objects",
    "store_need": "preflight",
    "task_runner": "runner",
    "unescape_name": "names",
}
__all__ = [
    "CorruptObject",
    "ModelRef",
    "OFFLINE_DEFAULTS",
    "ONLINE_ENV",
    "Progress",
    "Ref",
    "RunStore",
    "Stopwatch",
    "StoreFull",
    "api_answers",
    "batches",
    "check_output_folder",
    "check_store",
    "code_and_inputs",
    "default_store_url",
    "die_with_worker",
    "escape_name",
    "exclusive",
    "exists",
    "intact",
    "is_transient",
    "iter_jsonl",
    "label",
    "local_model",
    "markdown_table",
    "out_of_space",
    "png_line_chart",
    "publish_markdown",
    "publish_table",
    "put_model",
    "read_json",
    "read_jsonl",
    "read_npy",
    "retry_if_transient",
    "run_logger",
    "set_offline_defaults",
    "source_hash",
    "stable_hash",
    "store_need",
    "task_runner",
    "unescape_name",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
