"""A flow run started by a `domain-embed up` worker dies with that worker, or once its Prefect API is gone; its own
child processes die with it.

A process worker starts each flow run as a child in a session of its own; when the worker is killed (kill -9
included) the run would go on as an orphan of PID 1, out of any worker's reach. When the server is killed, the run
cannot record a state, and Prefect retries its tasks and waits on its API for many minutes. In both cases the run
ends; Prefect's heartbeat automation then marks it Crashed (see deployments/crash_detection.py) and a re-run
resumes from the run store's caches.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request

import psutil

ENV = "DOMAIN_EMBED_LIFELINE"  # set by `domain-embed up` for its workers, inherited by their flow runs
POLL_S = 1.0
API_POLL_S = 5.0
API_GONE_S = 90.0  # no answer from the API for this long: its server was killed or is gone
_started: set[int] = set()


def die_with_worker() -> bool:
    """In a flow run under an `up` worker: watch the parent process and the API; end this run's process group once
    either is gone.

    Returns whether a watch was started (once per process; nothing outside an `up` worker's flow run)."""
    pid = os.getpid()
    if os.environ.get(ENV) != "1" or pid in _started:
        return False
    _started.add(pid)
    watched = (os.getppid(), os.environ.get("PREFECT_API_URL"), API_GONE_S)
    threading.Thread(target=watch, args=watched, name="lifeline", daemon=True).start()
    return True


def api_answers(api: str, timeout: float = 10.0) -> bool:
    """Whether the Prefect API at `api` (…/api) answers its health check within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def watch(parent: int, api: str | None, gone_s: float) -> None:
    """Poll until this process is re-parented (its parent died) or `api` has not answered for `gone_s`, then kill the run."""
    answered = next_check = time.monotonic()
    while os.getppid() == parent:
        now = time.monotonic()
        if api and now >= next_check:
            next_check = now + API_POLL_S
            if api_answers(api):
                answered = now
            elif now - answered > gone_s:
                print(
                    f"domain-embed: the Prefect API at {api} has not answered for {gone_s:.0f} s: ending this flow run "
                    "(its work so far is in the run store; once the server is back it shows Crashed)",
                    file=sys.stderr,
                    flush=True,
                )
                break
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
