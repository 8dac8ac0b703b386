"""A finished run's out folder (model/, index/, report.json), checked with one clear error per missing part."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.objects import read_jsonl


class RunFolderError(ValueError):
    """The --run folder lacks what a command needs; the message names the missing part."""


@dataclass
class RunFolder:
    """Paths and report of a pipeline run's out folder."""

    root: Path
    report: dict

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"


def open_run(path: str, model: bool = True, index: bool = False) -> RunFolder:
    """The run folder at `path` with its report.json, and its published model and index when asked for."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RunFolderError(f"run folder not found: {path}")
    report_path = root / "report.json"
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise RunFolderError(
            f"{report_path} not found: --run must be the out folder of a finished pipeline run"
        ) from None
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{report_path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    run = RunFolder(root=root, report=report)
    if model and not (run.model_dir / "modules.json").is_file():
        raise RunFolderError(f"{run.model_dir} has no published SentenceTransformer model (modules.json missing)")
    if index and not all((run.index_dir / name).is_file() for name in ("index.faiss", "chunks.jsonl")):
        raise RunFolderError(f"{run.index_dir} has no published index (index.faiss and chunks.jsonl)")
    return run


def eval_split(run: RunFolder) -> tuple[list[dict], list[dict]]:
    """The run's synthetic eval split: (corpus chunk rows, eval pair rows), read from the run store refs in report.json."""
    store = run.report.get("store") if isinstance(run.report, dict) else None
    if not isinstance(store, dict) or not store.get("corpus") or not store.get("eval_pairs"):
        raise RunFolderError(f"{run.root / 'report.json'} has no store.corpus and store.eval_pairs entries")
    try:
        return read_jsonl(store["corpus"]), read_jsonl(store["eval_pairs"])
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read the run's eval split from its run store: {exc}") from None
