"""One embedded LLM server per machine, shared by every run on it and stopped when its last run ends.

Several llama.cpp servers on one machine starve each other (three on 2 cores ran ~15x slower than one). A run
registers in a folder under the user's cache; the first run starts a supervisor process that runs llama_cpp.server,
later runs reuse its port (llama.cpp then serves their requests in turn, at one server's speed). The supervisor stops
the server once no registered run is alive, a run killed with -9 included, so no server outlives its runs; a server
that dies under its runs is started again on the same port while they retry.

Each embedded model has its own folder, server and supervisor.

    python -m domain_embed.tasks.llm_host FOLDER PORT [MODEL]   # the supervisor (started by shared_embedded_server)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from filelock import FileLock

from domain_embed.tasks.llm_endpoint import LLMEndpoint
from domain_embed.tasks.local_llm import (
    EmbeddedLLMError, embedded_model, endpoint_for, free_port, server_command, stop_process, wait_until_ready,
)
from domain_embed.tasks.settings import EMBEDDED_LLM

IDLE_GRACE_S = 5.0  # a run that starts right after another still finds the server up
RESTARTS = 3
POLL_S = 0.5


def host_folder(model: str = EMBEDDED_LLM) -> Path:
    """Where runs of an embedded model register: DOMAIN_EMBED_LLM_HOST, else the user's cache (XDG_CACHE_HOME or
    ~/.cache); the default model's folder is the root, another model's a sub-folder named after it."""
    root = os.environ.get("DOMAIN_EMBED_LLM_HOST") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domain-embed" / "llm-host"
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


def running_host(folder: Path) -> Optional[dict]:
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
        process = subprocess.Popen([sys.executable, "-m", "domain_embed.tasks.llm_host", str(folder), str(port), model],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
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


def idle_stop(folder: Path) -> bool:
    """Under the lock: if no run is registered, withdraw the host record and say the server may stop."""
    with FileLock(str(folder / "host.lock")):
        if live_users(folder):
            return False
        (folder / "host.json").unlink(missing_ok=True)
        return True


def die_with_parent() -> None:
    """On Linux, the server gets SIGTERM when its supervisor dies, even by kill -9 (elsewhere: nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(port: int, model: str) -> subprocess.Popen:
    """llama_cpp.server on this port, stopped with its supervisor."""
    return subprocess.Popen(server_command(port, model=model), stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)


def supervise(folder: Path, port: int, model: str = EMBEDDED_LLM) -> None:
    """Run llama_cpp.server until no registered run has been alive for IDLE_GRACE_S; a server that dies (killed, out
    of memory) is started again on the same port, RESTARTS times at most, while runs retry their requests."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = start_server(port, model)
    restarts = 0
    idle_since: Optional[float] = None
    try:
        while True:
            if server.poll() is not None:
                if restarts == RESTARTS:
                    raise EmbeddedLLMError(f"llama_cpp.server exited with code {server.returncode} ({RESTARTS} restarts)")
                restarts += 1
                print(f"llama_cpp.server exited with code {server.returncode}; restart {restarts} of {RESTARTS}", file=sys.stderr)
                server = start_server(port, model)
            if live_users(folder):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_GRACE_S and idle_stop(folder):
                return
            time.sleep(POLL_S)
    finally:
        stop_process(server)


if __name__ == "__main__":
    supervise(Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
