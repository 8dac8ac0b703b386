"""Writing the run store: content-addressed objects on any fsspec URL, written atomically or streamed, keyed records
sealed with their hash, and a full disk said in one line."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from .names import escape_name
from .objects import Ref, discard_corrupt, plain_data, read_bytes, sha256_bytes, stable_hash

logger = logging.getLogger(__name__)
SPOOL_BYTES = 16 << 20  # a stream larger than this goes to the store while it is written


class StoreFull(OSError):
    """The run store's file system ran out of space (ENOSPC) while an object was written; nothing partial was kept."""

    def __str__(self) -> str:
        return str(self.strerror)


def out_of_space(exc: OSError) -> str:
    """One line for a write that found no space: a StoreFull's own, or the file's name for any other ENOSPC."""
    if isinstance(exc, StoreFull):
        return str(exc)
    where = f" writing {escape_name(exc.filename)}" if exc.filename else ""
    return f"no space left on the device{where}: free some space there, then run again (what was paid for is kept)"


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
        if not self.fs.exists(target) or self.fs.size(target) != len(data):  # absent, or cut short: written again
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
        body = json.dumps(plain_data(obj), sort_keys=True, ensure_ascii=False, indent=1).encode()
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
        return self.put_blocks(kind, _npy_blocks(int(rows), arrays, int(empty_dim)), ".npy").model_copy(
            update={"count": int(rows)}
        )

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


def remove(uri: str) -> None:
    """Remove a file or a whole folder of a store, if it is there."""
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def atomic_write(uri: str, data: bytes) -> None:
    """Write to a hidden temporary sibling, flush it to disk, then rename: a crash never leaves a half file."""
    fs, path = fsspec.core.url_to_fs(uri)
    tmp, _ = _write_temp(fs, path.rsplit("/", 1)[0], [data])
    fs.mv(tmp, path)


def _write_temp(fs: fsspec.AbstractFileSystem, parent: str, blocks: Iterable[bytes]) -> tuple[str, str]:
    """Write blocks to a hidden temporary file in parent, flushed to disk; its path and the blocks' sha256 (nothing left on error)."""
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    digest, written = hashlib.sha256(), 0
    try:
        handle = fs.open(tmp, "wb")
    except OSError as exc:
        raise store_full(exc, parent, 0) from exc
    try:
        for block in blocks:
            digest.update(block)
            handle.write(block)
            written += len(block)
        if isinstance(fs, LocalFileSystem):  # else a power cut may keep the rename but not the bytes
            handle.flush()
            os.fsync(handle.fileno())
        handle.close()
    except BaseException as exc:
        _undo_temp(fs, tmp, handle)
        raise store_full(exc, parent, written) from exc
    return tmp, digest.hexdigest()


def store_full(exc: BaseException, where: str, written: int) -> BaseException:
    """A StoreFull naming the run store and the size that did not fit when exc is ENOSPC, else exc itself."""
    if not isinstance(exc, OSError) or exc.errno != errno.ENOSPC or isinstance(exc, StoreFull):
        return exc
    store = default_store_url().rstrip("/")
    named = store if where == store or where.startswith(store + "/") else where
    free = f", {_size(shutil.disk_usage(where).free)} free" if os.path.isdir(where) else ""
    return StoreFull(
        errno.ENOSPC,
        f"the run store {escape_name(named)} is full: an object of at least {_size(written)} did not "
        f"fit in {escape_name(where)}{free}; free some space there or choose another --store, then run again "
        "(what was paid for is kept)",
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n} bytes"


def _undo_temp(fs: fsspec.AbstractFileSystem, tmp: str, handle: Any) -> None:
    """Abandon a failed temporary write; a failure here is logged, never raised over the first.

    An object store's upload (an fsspec buffered file) is discarded unfinished, so it never becomes an object; a file
    is closed (its unwritten buffer may fail again, as a full disk does: the file is closed all the same) and removed.
    """
    if isinstance(handle, AbstractBufferedFile):  # closing would upload the rest and commit it
        steps = [handle.discard, functools.partial(setattr, handle, "closed", True)]
    else:
        steps = [functools.partial(_close_quietly, handle)]
    steps.append(lambda: fs.rm(tmp) if fs.exists(tmp) else None)
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 (the stream's own error is the one to raise)
            logger.warning("could not clean up the temporary %s after a failed write: %r", tmp, error)


def _close_quietly(handle: Any) -> None:
    with contextlib.suppress(OSError):
        handle.close()


SEAL = "_sha256"  # a keyed record's own hash, inside it: keyed records are not named by their content


def put_record(uri: str, record: dict) -> None:
    """Write a keyed record (JSON object) atomically, sealed with the hash of its content."""
    atomic_write(
        uri, json.dumps({**plain_data(record), SEAL: stable_hash(record)}, sort_keys=True, ensure_ascii=False).encode()
    )


def read_record(uri: str) -> dict | None:
    """A keyed record, or None when absent; one that fails its seal (or is not JSON) is removed, logged and None.
    Records written before seals existed are taken as they are."""
    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(data)
        seal = record.pop(SEAL, None) if isinstance(record, dict) else "?"
    except ValueError:  # cut short, or a flipped byte in its syntax
        record, seal = None, "?"
    if seal is not None and (record is None or seal != stable_hash(record)):
        discard_corrupt(uri, seal, stable_hash(record) if record is not None else sha256_bytes(data), len(data))
        return None
    return record
