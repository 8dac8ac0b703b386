"""Per-item cache in the run store: one small JSON record per document, under a key of its content, settings and code."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .caching import source_hash
from .objects import intact, refs_in, stable_hash
from .store import RunStore, put_record, read_record

Item = TypeVar("Item", bound=BaseModel)


def item_key(module: str, **content: Any) -> str:
    """Cache key of one item: its content hashes and settings, plus the source of the stage's module and its imports."""
    return stable_hash({**content, "code": source_hash(module)})


def load_item(store: RunStore, kind: str, key: str, model: type[Item]) -> Item | None:
    """The cached record under `key`, or None when absent, unreadable, or its objects in the store are gone or corrupt
    (then it is recomputed)."""
    record = read_record(store.key_path(kind, key, ".json"))
    try:
        item = model.model_validate(record) if record is not None else None
    except ValidationError:
        return None
    return item if item is not None and all(intact(ref) for ref in refs_in(item)) else None


def save_item(store: RunStore, kind: str, key: str, item: BaseModel) -> None:
    """Write one item's record atomically under `key`, sealed."""
    put_record(store.key_path(kind, key, ".json"), item.model_dump(mode="json"))
