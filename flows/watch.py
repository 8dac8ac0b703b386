"""Flow watch-docs: fingerprint a docs folder and emit `docs.landed` when its documents changed."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.variables import Variable
from pydantic import BaseModel

from ..tasks.core import RunStore, die_with_worker, exists, read_json, stable_hash
from ..tasks.ingest import discover_documents
from ..tasks.publishing import folder_key
from ..tasks.settings import ParseSettings

EVENT = "docs.landed"
RESOURCE_PREFIX = "domain-embed.docs."
MAX_LISTED = 500  # file names per list in the event payload; the counts are always complete


class DocsDiff(BaseModel):
    """What changed in a docs folder since its last fingerprint."""

    docs_dir: str
    fingerprint: str
    files: int
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []
    first_seen: bool = False
    emitted: bool = False

    @property
    def changed_any(self) -> bool:
        """Whether any document was added, changed or removed."""
        return bool(self.added or self.changed or self.removed)


def fingerprint_variable(docs_dir: str) -> str:
    """The Prefect Variable holding the folder's last fingerprint."""
    return f"docs_fingerprint_{folder_key(docs_dir)}"


def resource_id(docs_dir: str) -> str:
    """The event resource id of a docs folder."""
    return RESOURCE_PREFIX + folder_key(docs_dir)


def fingerprint(docs_dir: str, settings: ParseSettings | None = None) -> dict[str, str]:
    """Relative path -> sha256 of every document the pipeline would parse (supported, non-empty, within the size cap)."""
    settings = settings or ParseSettings()
    docs = discover_documents(docs_dir, settings.extensions, settings.max_file_mb)
    return {d.rel_path: d.sha256 for d in docs if d.sha256}


def diff_fingerprints(old: dict[str, str], new: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, removed) relative paths, each sorted."""
    added = sorted(p for p in new if p not in old)
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    removed = sorted(p for p in old if p not in new)
    return added, changed, removed


def event_payload(diff: DocsDiff) -> dict:
    """The docs.landed payload: the folder, the changed files (lists capped at MAX_LISTED) and their counts."""
    lists = {k: getattr(diff, k) for k in ("added", "changed", "removed")}
    return {
        "docs_dir": diff.docs_dir,
        "fingerprint": diff.fingerprint,
        "files": diff.files,
        **{k: v[:MAX_LISTED] for k, v in lists.items()},
        "counts": {k: len(v) for k, v in lists.items()},
    }


def load_previous(record: dict | None) -> dict[str, str] | None:
    """The fingerprint a Variable record points to, or None when there is none (or its file is gone)."""
    if not record or not record.get("uri") or not exists(record["uri"]):
        return None
    return read_json(record["uri"])


@flow(name="watch-docs")
def watch_docs(docs_dir: str, variable_name: str | None = None, store_url: str | None = None) -> dict:
    """Compare the folder with its last fingerprint; emit docs.landed when documents were added, changed or removed."""
    die_with_worker()
    logger = get_run_logger()
    folder = str(Path(docs_dir).resolve())
    name = variable_name or fingerprint_variable(folder)
    current = fingerprint(folder)
    previous = load_previous(Variable.get(name, default=None))
    diff = DocsDiff(docs_dir=folder, fingerprint=stable_hash(current), files=len(current), first_seen=previous is None)
    if previous is not None:
        diff.added, diff.changed, diff.removed = diff_fingerprints(previous, current)
    if diff.changed_any:
        emit_event(
            event=EVENT,
            resource={"prefect.resource.id": resource_id(folder), "prefect.resource.name": folder},
            payload=event_payload(diff),
        )
        diff.emitted = True
        logger.info(
            "%s: %d added, %d changed, %d removed: emitted %s",
            folder,
            len(diff.added),
            len(diff.changed),
            len(diff.removed),
            EVENT,
        )
    if diff.first_seen or diff.changed_any:
        ref = RunStore(store_url).put_json("docs-fingerprints", current)
        Variable.set(
            name,
            {"docs_dir": folder, "fingerprint": diff.fingerprint, "files": diff.files, "uri": ref.uri},
            overwrite=True,
        )
    if diff.first_seen:
        logger.info("%s: first fingerprint recorded (%d documents) in Variable %s", folder, diff.files, name)
    elif not diff.changed_any:
        logger.info("%s: unchanged (%d documents)", folder, diff.files)
    return diff.model_dump()
