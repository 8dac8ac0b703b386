"""One embedded LLM server per machine, shared by every run on it and stopped when its last run ends.

Several llama.cpp servers on one machine starve each other (three on 2 cores ran ~15x slower than one). A run
registers in a folder under the user's cache; the first run starts a supervisor process that runs llama_cpp.server,
later runs reuse its port (llama.cpp then serves their requests in turn, at one server's speed). The supervisor stops
the server once no registered run is alive, a run killed with -9 included, so no server outlives its runs; a server
that dies under its runs is started again on the same port while they retry.

Each embedded model has its own folder, server and supervisor.

The supervisor is tasks/llm/supervisor.py, started by shared_embedded_server.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from ..settings import EMBEDDED_LLM, EMBEDDED_LLMS, LLMSettings
from .endpoint import LLMEndpoint
from .local import (
    embedded_model,
    endpoint_for,
    free_port,
    wait_until_ready,
)

IDLE_GRACE_S = 5.0  # a run that starts right after another still finds the server up
RESTARTS = 3
POLL_S = 0.5


def host_folder(model: str = EMBEDDED_LLM) -> Path:
    """Where runs of an embedded model register: DOMAIN_EMBED_LLM_HOST, else the user's cache (XDG_CACHE_HOME or
    ~/.cache); the default model's folder is the root, another model's a sub-folder named after it."""
    root = (
        os.environ.get("DOMAIN_EMBED_LLM_HOST")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domain-embed" / "llm-host"
    )
    return Path(root) if model == EMBEDDED_LLM else Path(root) / model


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (zombies of our own children count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def live_users(folder: Path) -> list[Path]:
    """The registrations of runs still alive; those of dead runs are removed."""
    alive = []
    for entry in (folder / "users").glob("*"):
        if pid_alive(int(entry.name.split("-", 1)[0])):
            alive.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return alive


def running_host(folder: Path) -> dict | None:
    """The supervisor's record ({pid, port}) if it is still alive."""
    record = folder / "host.json"
    if not record.exists():
        return None
    host = json.loads(record.read_text())
    return host if pid_alive(host["pid"]) else None


def start_host(folder: Path, model: str = EMBEDDED_LLM) -> dict:
    """Start a supervisor (its own session, so a signal to the starting run does not reach it) and record it."""
    port = free_port()
    with open(folder / "host.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "domain_embed.tasks.llm.supervisor", str(folder), str(port), model],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = {"pid": process.pid, "port": port}
    (folder / "host.json").write_text(json.dumps(host))
    return host


@contextlib.contextmanager
def shared_embedded_server(model: str = EMBEDDED_LLM, startup_timeout_s: float = 180) -> Iterator[LLMEndpoint]:
    """Register this run, start the machine's server of this embedded model if none runs, yield its endpoint, unregister."""
    embedded_model(model).gguf()  # the model's file is there (joined, for a split model) before a supervisor starts
    folder = host_folder(model)
    (folder / "users").mkdir(parents=True, exist_ok=True)
    me = folder / "users" / f"{os.getpid()}-{secrets.token_hex(4)}"
    with FileLock(str(folder / "host.lock")):
        me.touch()
        host = running_host(folder) or start_host(folder, model)
    try:
        log = f" (see {folder / 'host.log'})"
        wait_until_ready(host["port"], lambda: pid_alive(host["pid"]), startup_timeout_s, log)
        yield endpoint_for(host["port"], model)
    finally:
        me.unlink(missing_ok=True)


@contextlib.contextmanager
def llm_endpoint(llm: LLMSettings) -> Iterator[LLMEndpoint]:
    """The endpoint litellm calls: the embedded model's shared server on this machine, or the configured provider."""
    if llm.model in EMBEDDED_LLMS:
        with shared_embedded_server(llm.model) as endpoint:
            yield endpoint
    else:
        yield LLMEndpoint.from_settings(llm)


def run_settings(llm: LLMSettings) -> LLMSettings:
    """The LLM settings a run asks with; an embedded server has one slot, so it is asked one request at a time
    (its prompt cache then serves the second question of a chunk without re-reading the chunk)."""
    return llm.model_copy(update={"max_concurrency": 1}) if llm.model in EMBEDDED_LLMS else llm
