"""Claims on items in the run store, so that runs sharing a store at the same time do each item's paid work once.

A claim is a small JSON file created exclusively (a local O_EXCL create, or S3's conditional If-None-Match put) beside
the item's cache entry. It is released when its owner is done, and taken over when stale: its lease ran out, or
its owner was a process of this machine that is gone (a run killed with -9 leaves claims that die with it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import fsspec
import psutil
from fsspec import AbstractFileSystem
from pydantic import BaseModel, ValidationError

from .store import RunStore, atomic_write

HOST = socket.gethostname()
UNREADABLE_GRACE_S = 30.0  # a claim seen empty is being written; an older unreadable one is stale


class Claim(BaseModel):
    """Who holds an item: a process of a host, until `expires` (epoch seconds)."""

    owner: str
    host: str
    pid: int
    pid_started: float
    expires: float


TOKEN = uuid.uuid4().hex[:8]


def _owner() -> str:
    """This process's name as a claim owner (a forked child gets its own)."""
    return f"{HOST}:{os.getpid()}:{TOKEN}"


def _my_claim(lease_s: float) -> Claim:
    """A claim of this process, valid for `lease_s` from now."""
    pid = os.getpid()
    return Claim(
        owner=_owner(),
        host=HOST,
        pid=pid,
        pid_started=psutil.Process(pid).create_time(),
        expires=time.time() + lease_s,
    )


def claim_path(store: RunStore, kind: str, key: str) -> str:
    """Where the claim on item `key` of `kind` lives."""
    return store.key_path(f"{kind}-claims", key, ".json")


def _alive(claim: Claim) -> bool:
    """Whether the claim's owner may still be working: its lease holds and, on this host, its process still runs."""
    if claim.expires < time.time():
        return False
    if claim.host != HOST:
        return True
    try:
        return abs(psutil.Process(claim.pid).create_time() - claim.pid_started) < 1.0
    except psutil.Error:
        return False


def _read(fs: AbstractFileSystem, path: str) -> Claim:
    """The claim at `path` (FileNotFoundError when there is none); one unreadable for longer than a write takes is
    read as expired, one just being written as live."""
    try:
        with fs.open(path, "rb") as handle:
            return Claim.model_validate_json(handle.read())
    except ValidationError:
        expired = fs.modified(path).timestamp() + UNREADABLE_GRACE_S < time.time()
        return Claim(owner="?", host="?", pid=0, pid_started=0, expires=0.0 if expired else float("inf"))


def try_claim(store: RunStore, kind: str, key: str, lease_s: float) -> bool:
    """Claim item `key` for this process; False while another live owner holds it. A stale claim is taken over."""
    fs, path = fsspec.core.url_to_fs(claim_path(store, kind, key))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    claim = _my_claim(lease_s)
    for _ in range(2):
        try:
            with fs.open(path, "xb") as handle:
                handle.write(claim.model_dump_json().encode())
            return True
        except FileExistsError:
            try:
                held = _read(fs, path)
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if held.owner == _owner():
                return True
            if _alive(held):
                return False
            fs.rm(path)  # stale: its owner died or its lease ran out
    return False


def release(store: RunStore, kind: str, key: str) -> None:
    """Give up this process's claim on item `key` (done, or failed: another run may try it)."""
    fs, path = fsspec.core.url_to_fs(claim_path(store, kind, key))
    try:
        if _read(fs, path).owner == _owner():
            fs.rm(path)
    except FileNotFoundError:
        pass


def renew(store: RunStore, kind: str, key: str, lease_s: float) -> None:
    """Extend this process's claim on item `key` by `lease_s` from now (a long job keeps its claim alive)."""
    atomic_write(claim_path(store, kind, key), _my_claim(lease_s).model_dump_json().encode())


@contextmanager
def exclusive(
    store: RunStore,
    kind: str,
    key: str,
    lease_s: float,
    finished_by_other: Callable[[float], bool],
    poll_s: float = 5.0,
) -> Iterator[bool]:
    """Hold the claim on a long job `key` (renewed every lease_s/4), waiting while another live process holds it.

    Yields True when this process must do the job, False when the process it waited on finished it
    (`finished_by_other(since)`: its result appeared after `since`, when the wait began)."""
    since, waited = time.time(), False
    while not try_claim(store, kind, key, lease_s):
        waited = True
        time.sleep(poll_s)
    if waited and finished_by_other(since):
        release(store, kind, key)
        yield False
        return
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(lease_s / 4):
            renew(store, kind, key, lease_s)

    renewer = threading.Thread(target=keep_alive, name=f"claim-{kind}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        release(store, kind, key)
