"""Run store: content-addressed files on any fsspec URL, passed around as small references."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel


class Ref(BaseModel):
    """A pointer to data in the run store: where it is, what it hashes to, how many items."""

    uri: str
    sha256: str
    count: int = 0


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
    return sha256_bytes(json.dumps(_plain(obj), sort_keys=True, default=str).encode())


def _plain(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def default_store_url() -> str:
    """The store named by DOMAIN_EMBED_STORE, else a folder in the user's cache directory."""
    env = os.environ.get("DOMAIN_EMBED_STORE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "domain-embed" / "store")


class RunStore:
    """A folder (local path or fsspec URL) holding content-addressed objects written atomically."""

    def __init__(self, url: str | None = None) -> None:
        self.url = (url or default_store_url()).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.fs.makedirs(self.root, exist_ok=True)

    def uri(self, *parts: str) -> str:
        """Full URI for a path inside the store."""
        path = "/".join([self.root, *parts])
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    def put_bytes(self, kind: str, data: bytes, suffix: str, count: int = 0) -> Ref:
        """Write bytes under kind/<sha256><suffix> (no-op if present) and return its reference."""
        digest = sha256_bytes(data)
        target = self.uri(kind, f"{digest}{suffix}")
        if not self.fs.exists(target):
            atomic_write(target, data)
        return Ref(uri=target, sha256=digest, count=count)

    def put_jsonl(self, kind: str, rows: Iterable[dict]) -> Ref:
        """Store rows as JSON lines; the reference counts the rows."""
        rows = list(rows)
        body = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
        return self.put_bytes(kind, body.encode(), ".jsonl", count=len(rows))

    def put_json(self, kind: str, obj: Any) -> Ref:
        """Store one JSON document."""
        body = json.dumps(_plain(obj), sort_keys=True, ensure_ascii=False, indent=1).encode()
        return self.put_bytes(kind, body, ".json", count=1)

    def put_npy(self, kind: str, array: np.ndarray) -> Ref:
        """Store a numpy array as .npy; the reference counts its rows."""
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.put_bytes(kind, buffer.getvalue(), ".npy", count=int(array.shape[0]))

    def key_path(self, kind: str, key: str, suffix: str) -> str:
        """URI for a keyed (not content-addressed) entry, such as a per-item cache record."""
        return self.uri(kind, key[:2], f"{key}{suffix}")


def atomic_write(uri: str, data: bytes) -> None:
    """Write to a hidden temporary sibling, flush it to disk, then rename: a crash never leaves a half file."""
    fs, path = fsspec.core.url_to_fs(uri)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "wb") as handle:
        handle.write(data)
        if isinstance(fs, LocalFileSystem):  # else a power cut may keep the rename but not the bytes
            handle.flush()
            os.fsync(handle.fileno())
    fs.mv(tmp, path)


def read_bytes(uri: str) -> bytes:
    """Bytes at a store URI."""
    with fsspec.open(uri, "rb") as handle:
        return handle.read()


def exists(uri: str) -> bool:
    """Whether a store URI exists."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)


def read_json(ref: Ref | str) -> Any:
    """Load a JSON document from a reference or URI."""
    return json.loads(read_bytes(ref.uri if isinstance(ref, Ref) else ref))


def iter_jsonl(ref: Ref | str) -> Iterator[dict]:
    """Yield rows of a JSON-lines object."""
    for line in read_bytes(ref.uri if isinstance(ref, Ref) else ref).decode().splitlines():
        if line:
            yield json.loads(line)


def read_jsonl(ref: Ref | str) -> list[dict]:
    """All rows of a JSON-lines object."""
    return list(iter_jsonl(ref))


def read_npy(ref: Ref | str) -> np.ndarray:
    """Load a numpy array from the store."""
    return np.load(io.BytesIO(read_bytes(ref.uri if isinstance(ref, Ref) else ref)), allow_pickle=False)
