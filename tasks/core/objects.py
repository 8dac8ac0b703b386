"""Reading the run store: references, content hashes, and objects checked against their hash before they are served
(a corrupt one is removed and logged, so that it is made again)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
from pydantic import BaseModel

from .progress import run_logger


class CorruptObject(RuntimeError):
    """An object of the run store that no longer hashes to its name; it was removed, so the next run computes it again."""


class Ref(BaseModel):
    """A pointer to data in the run store: where it is, what it hashes to, how many items."""

    uri: str
    sha256: str
    count: int = 0

    def verify(self) -> None:
        """FileNotFoundError when the object is gone; CorruptObject, after removing it, when it no longer hashes to sha256."""
        verify(self.uri, self.sha256)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a local file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """Hex sha256 of a JSON-serialisable object with sorted keys (pydantic models allowed)."""
    return sha256_bytes(json.dumps(plain_data(obj), sort_keys=True, default=str).encode())


def plain_data(obj: Any) -> Any:
    """obj as JSON-able data: pydantic models dumped, keys made strings, tuples made lists."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): plain_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_data(v) for v in obj]
    return obj


def read_bytes(uri: str, expected: str | None = None) -> bytes:
    """Bytes at a store URI; with `expected`, they must hash to it (else CorruptObject, the object removed)."""
    with fsspec.open(uri, "rb") as handle:
        data = handle.read()
    if expected and sha256_bytes(data) != expected:
        raise discard_corrupt(uri, expected, sha256_bytes(data), len(data))
    return data


def _target(ref: Ref | str) -> tuple[str, str | None]:
    """The URI to read and the sha256 its bytes must have (a plain Ref's; a URI or a model manifest: none)."""
    return (ref.uri, ref.sha256) if type(ref) is Ref else (getattr(ref, "uri", ref), None)


_VERIFIED: dict[str, tuple] = {}  # uri -> (size, mtime or etag) when this process last found it whole


def verify(uri: str, expected: str) -> None:
    """Check that the object at uri hashes to `expected`, streamed; FileNotFoundError when absent, CorruptObject (after
    removing it) when not. Objects never change, so a check is remembered per size and modification time."""
    fs, path = fsspec.core.url_to_fs(uri)
    info = fs.info(path)
    signature = (info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag"))
    if _VERIFIED.get(uri) == (expected, signature):
        return
    digest, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    if digest.hexdigest() != expected:
        raise discard_corrupt(uri, expected, digest.hexdigest(), size)
    _VERIFIED[uri] = (expected, signature)


def intact(ref: Ref) -> bool:
    """Whether a reference's object is in the store and hashes to what the reference says (a corrupt one is removed)."""
    try:
        ref.verify()
    except (FileNotFoundError, CorruptObject):
        return False
    return True


def refs_in(value: object) -> list[Ref]:
    """Every run-store reference held in a value (pydantic models, dicts, lists, tuples, nested)."""
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, BaseModel):
        value = list(value.__dict__.values())
    elif isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in refs_in(item)]
    return []


def discard_corrupt(uri: str, expected: str, found: str, size: int) -> CorruptObject:
    """Remove an object that does not hash to what was written, say so in the log, and return the error to raise."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        fs.rm(path)
    except FileNotFoundError:
        pass
    _VERIFIED.pop(uri, None)
    message = (
        f"stored object {uri} is corrupt ({size} bytes hash to {found[:12]}, written as {expected[:12]}): "
        "removed; it is computed or fetched again"
    )
    run_logger().warning(message)
    return CorruptObject(message)


def modified_at(uri: str) -> float | None:
    """When the object at a store URI was last written (epoch seconds); None when it is absent."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.modified(path).timestamp() if fs.exists(path) else None


def matching(pattern: str) -> list[str]:
    """The paths of a store that match a glob pattern (a store URI with * in its last part), none when its folder is absent."""
    fs, path = fsspec.core.url_to_fs(pattern)
    return fs.glob(path) if fs.exists(path.rsplit("/", 1)[0]) else []


def exists(uri: str) -> bool:
    """Whether a store URI exists."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)


def read_json(ref: Ref | str) -> Any:
    """Load a JSON document from a reference or URI."""
    return json.loads(read_bytes(*_target(ref)))


def iter_jsonl(ref: Ref | str) -> Iterator[dict]:
    """Yield rows of a JSON-lines object, checked whole first, then read as a stream (lines end at \\n only: a row's
    text may hold U+2028)."""
    uri, expected = _target(ref)
    if expected:
        verify(uri, expected)
    with fsspec.open(uri, "rt", encoding="utf-8", newline="\n") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_jsonl(ref: Ref | str) -> list[dict]:
    """All rows of a JSON-lines object."""
    return list(iter_jsonl(ref))


def read_npy(ref: Ref | str) -> np.ndarray:
    """Load a numpy array from the store."""
    return np.load(io.BytesIO(read_bytes(*_target(ref))), allow_pickle=False)
