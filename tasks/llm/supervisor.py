"""The supervisor of one embedded model's shared server: it runs llama_cpp.server while runs are registered.

python -m domain_embed.tasks.llm.supervisor FOLDER PORT [MODEL]   # started by host.shared_embedded_server
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from ..settings import EMBEDDED_LLM
from .host import IDLE_GRACE_S, POLL_S, RESTARTS, live_users
from .local import EmbeddedLLMError, server_command, stop_process


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
    idle_since: float | None = None
    try:
        while True:
            if server.poll() is not None:
                if restarts == RESTARTS:
                    raise EmbeddedLLMError(
                        f"llama_cpp.server exited with code {server.returncode} ({RESTARTS} restarts)"
                    )
                restarts += 1
                print(
                    f"llama_cpp.server exited with code {server.returncode}; restart {restarts} of {RESTARTS}",
                    file=sys.stderr,
                )
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
