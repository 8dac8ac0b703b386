"""A flow run started by a `domain-embed up` worker dies with that worker, its own child processes with it.

A process worker starts each flow run as a child in a session of its own; when the worker is killed (kill -9
included) the run would go on as an orphan of PID 1, out of any worker's reach. Prefect's heartbeat automation
then marks it Crashed (see deployments/crash_detection.py) and a re-run resumes from the run store's caches.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

ENV = "DOMAIN_EMBED_LIFELINE"  # set by `domain-embed up` for its workers, inherited by their flow runs
POLL_S = 1.0
_started: set[int] = set()


def die_with_worker() -> bool:
    """In a flow run under an `up` worker: watch the parent process and end this run's process group once it is gone.

    Returns whether a watch was started (once per process; nothing outside an `up` worker's flow run)."""
    pid = os.getpid()
    if os.environ.get(ENV) != "1" or pid in _started:
        return False
    _started.add(pid)
    threading.Thread(target=watch, args=(os.getppid(),), name="lifeline", daemon=True).start()
    return True


def watch(parent: int) -> None:
    """Poll until this process is re-parented (its parent died), then kill the run."""
    while os.getppid() == parent:
        time.sleep(POLL_S)
    kill_run()


def kill_run() -> None:
    """SIGKILL this process's own process group when it leads one, else its descendants; then itself."""
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    os.kill(os.getpid(), signal.SIGKILL)
