"""What a run leaves: promotion, the output folder (model, index, reports, card), the run's record and the
folder's saved configuration; search and ONNX export of a finished run.

Names are imported on first use (tasks/core/lazy.py): a light entrypoint loads only what it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

if TYPE_CHECKING:
    from .export_check import export_rows, export_run
    from .folder_config import (
        choose_config,
        folder_key,
        load_folder_config,
        save_folder_config,
        save_folder_config_task,
        saved_uri,
        settle,
    )
    from .promote import (
        Promotion,
        compared_models,
        corpus_changed,
        decide,
        promote,
        promote_task,
        read_current,
        record_run,
        record_run_task,
    )
    from .publish import publish_task, write_run_report, write_run_report_task
    from .report_tables import bm25_rows, comparison_rows, hybrid_rows, secondary_rows
    from .run_report import build_report
    from .search import Hit, SearchResult, search_run

EXPORTS = {
    "Hit": "search",
    "Promotion": "promote",
    "SearchResult": "search",
    "bm25_rows": "report_tables",
    "build_report": "run_report",
    "choose_config": "folder_config",
    "compared_models": "promote",
    "comparison_rows": "report_tables",
    "corpus_changed": "promote",
    "decide": "promote",
    "export_rows": "export_check",
    "export_run": "export_check",
    "folder_key": "folder_config",
    "hybrid_rows": "report_tables",
    "load_folder_config": "folder_config",
    "promote": "promote",
    "promote_task": "promote",
    "publish_task": "publish",
    "read_current": "promote",
    "record_run": "promote",
    "record_run_task": "promote",
    "save_folder_config": "folder_config",
    "save_folder_config_task": "folder_config",
    "saved_uri": "folder_config",
    "search_run": "search",
    "secondary_rows": "report_tables",
    "settle": "folder_config",
    "write_run_report": "publish",
    "write_run_report_task": "publish",
}
__all__ = [
    "Hit",
    "Promotion",
    "SearchResult",
    "bm25_rows",
    "build_report",
    "choose_config",
    "compared_models",
    "comparison_rows",
    "corpus_changed",
    "decide",
    "export_rows",
    "export_run",
    "folder_key",
    "hybrid_rows",
    "load_folder_config",
    "promote",
    "promote_task",
    "publish_task",
    "read_current",
    "record_run",
    "record_run_task",
    "save_folder_config",
    "save_folder_config_task",
    "saved_uri",
    "search_run",
    "secondary_rows",
    "settle",
    "write_run_report",
    "write_run_report_task",
]
__getattr__ = lazy_exports(__name__, EXPORTS)
