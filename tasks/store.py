"""Run store: content-addressed files on any fsspec URL, passed around as small references."""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile
from pydantic import BaseModel


logger = logging.getLogger(__name__)
SPOOL_BYTES = 16 << 20  # a stream larger than this goes to the store while it is written


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

    def put_blocks(self, kind: str, blocks: Iterable[bytes], suffix: str) -> Ref:
        """Store a stream of bytes: up to SPOOL_BYTES as put_bytes does, past that streamed to a temporary object then named by its hash."""
        blocks = iter(blocks)
        head, size = [], 0
        for block in blocks:
            head.append(block)
            size += len(block)
            if size > SPOOL_BYTES:
                break
        else:
            return self.put_bytes(kind, b"".join(head), suffix)
        parent = f"{self.root}/{kind}"
        tmp, digest = _write_temp(self.fs, parent, itertools.chain(head, blocks))
        target = f"{parent}/{digest}{suffix}"
        if self.fs.exists(target):
            self.fs.rm(tmp)
        else:
            self.fs.mv(tmp, target)
        return Ref(uri=self.uri(kind, f"{digest}{suffix}"), sha256=digest)

    def put_jsonl(self, kind: str, rows: Iterable[dict]) -> Ref:
        """Store rows as JSON lines, streamed (rows may be a generator of any length); the reference counts the rows."""
        count = 0

        def lines() -> Iterator[bytes]:
            nonlocal count
            for row in rows:
                count += 1
                yield (json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode()

        ref = self.put_blocks(kind, lines(), ".jsonl")
        return ref.model_copy(update={"count": count})

    def put_json(self, kind: str, obj: Any) -> Ref:
        """Store one JSON document."""
        body = json.dumps(_plain(obj), sort_keys=True, ensure_ascii=False, indent=1).encode()
        return self.put_bytes(kind, body, ".json", count=1)

    def put_npy(self, kind: str, array: np.ndarray) -> Ref:
        """Store a numpy array as .npy; the reference counts its rows."""
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.put_bytes(kind, buffer.getvalue(), ".npy", count=int(array.shape[0]))

    def put_npy_stream(self, kind: str, rows: int, arrays: Iterable[np.ndarray], empty_dim: int) -> Ref:
        """Store float32 2-D arrays, one after another, as one `rows`-row .npy, streamed (same bytes as put_npy).

        The columns are the first array's; `empty_dim` only when there are none.
        """
        return self.put_blocks(kind, _npy_blocks(int(rows), arrays, int(empty_dim)), ".npy").model_copy(update={"count": int(rows)})

    def key_path(self, kind: str, key: str, suffix: str) -> str:
        """URI for a keyed (not content-addressed) entry, such as a per-item cache record."""
        return self.uri(kind, key[:2], f"{key}{suffix}")


def _npy_blocks(rows: int, arrays: Iterable[np.ndarray], empty_dim: int) -> Iterator[bytes]:
    """The bytes np.save writes for the float32 arrays stacked: header, then each array; ValueError if rows or columns differ."""
    arrays = iter(arrays)
    first = next(arrays, None)
    dim = empty_dim if first is None else int(first.shape[-1])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
    yield header.getvalue()
    seen = 0
    for array in itertools.chain(() if first is None else (first,), arrays):
        if array.ndim != 2 or array.shape[1] != dim:
            raise ValueError(f"an array of shape {array.shape} in a stream of {dim}-column rows")
        seen += array.shape[0]
        if seen > rows:
            raise ValueError(f"more than the {rows} rows announced were streamed")
        yield np.ascontiguousarray(array, dtype="<f4").tobytes()
    if seen != rows:
        raise ValueError(f"{seen} rows streamed where {rows} were announced")


def atomic_write(uri: str, data: bytes) -> None:
    """Write to a hidden temporary sibling, flush it to disk, then rename: a crash never leaves a half file."""
    fs, path = fsspec.core.url_to_fs(uri)
    tmp, _ = _write_temp(fs, path.rsplit("/", 1)[0], [data])
    fs.mv(tmp, path)


def _write_temp(fs: fsspec.AbstractFileSystem, parent: str, blocks: Iterable[bytes]) -> tuple[str, str]:
    """Write blocks to a hidden temporary file in parent, flushed to disk; its path and the blocks' sha256 (nothing left on error)."""
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    handle = fs.open(tmp, "wb")
    try:
        for block in blocks:
            digest.update(block)
            handle.write(block)
        if isinstance(fs, LocalFileSystem):  # else a power cut may keep the rename but not the bytes
            handle.flush()
            os.fsync(handle.fileno())
        handle.close()
    except BaseException:
        _undo_temp(fs, tmp, handle)
        raise
    return tmp, digest.hexdigest()


def _undo_temp(fs: fsspec.AbstractFileSystem, tmp: str, handle: Any) -> None:
    """Abandon a failed temporary write; a failure here is logged, never raised over the first.

    An object store's upload (an fsspec buffered file) is discarded unfinished, so it never becomes an object; a file
    is closed and removed.
    """
    if isinstance(handle, AbstractBufferedFile):  # closing would upload the rest and commit it
        steps = [handle.discard, functools.partial(setattr, handle, "closed", True)]
    else:
        steps = [handle.close]
    steps.append(lambda: fs.rm(tmp) if fs.exists(tmp) else None)
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 (the stream's own error is the one to raise)
            logger.warning("could not clean up the temporary %s after a failed write: %r", tmp, error)


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
    """Yield rows of a JSON-lines object, read as a stream (lines end at \\n only: a row's text may hold U+2028)."""
    with fsspec.open(ref.uri if isinstance(ref, Ref) else ref, "rt", encoding="utf-8", newline="\n") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_jsonl(ref: Ref | str) -> list[dict]:
    """All rows of a JSON-lines object."""
    return list(iter_jsonl(ref))


def read_npy(ref: Ref | str) -> np.ndarray:
    """Load a numpy array from the store."""
    return np.load(io.BytesIO(read_bytes(ref.uri if isinstance(ref, Ref) else ref)), allow_pickle=False)
