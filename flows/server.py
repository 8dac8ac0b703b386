"""Server mode: a local Prefect server (SQLite), the cpu and gpu work pools and workers, the deployments of prefect.yaml."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.resources import as_file, files
from pathlib import Path

import psutil

from ..tasks.core import api_answers

PACKAGE = "domain_embed"  # prefect.yaml is its package data; deployments/ its subpackage domain_embed.deployments
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
DEFAULT_STATE = ".domain-embed"
# The bundled example exists only in a source checkout (the package's folder is the checkout's root there).
DEFAULT_DOCS = Path(__file__).resolve().parent.parent / "examples" / "postgresql"
POOLS = ("cpu", "gpu")
STATE_FILE = "processes.json"
HEARTBEAT_S = "30"  # Prefect's minimum; crash detection marks a run Crashed after 4 missed heartbeats


class ServerError(RuntimeError):
    """Server mode could not start or stop."""


def ui_url(port: int) -> str:
    """The Prefect UI address."""
    return f"http://{HOST}:{port}"


def api_url(port: int) -> str:
    """The Prefect API address."""
    return f"{ui_url(port)}/api"


def read_state(state: Path) -> dict:
    """What `up` recorded in the state folder: {"port": int, "processes": {name: {"pid", "started"}}}; empty if none."""
    path = state / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(state: Path, record: dict) -> None:
    """Record the port and the processes started so far (written after each start, so `down` always finds them)."""
    tmp = state / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(state / STATE_FILE)


def live_process(entry: dict) -> psutil.Process | None:
    """The recorded process if it still runs; None when gone or when its pid now belongs to another process."""
    try:
        proc = psutil.Process(entry["pid"])
        return (
            proc
            if abs(proc.create_time() - entry["started"]) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
            else None
        )
    except psutil.Error:
        return None


def running_api_url(state: Path) -> str | None:
    """The API address of a server `up` started from this state folder, if it still runs."""
    record = read_state(state)
    server = record.get("processes", {}).get("server")
    return api_url(record["port"]) if server and live_process(server) else None


def child_env(state: Path, port: int, docs_dir: Path) -> dict[str, str]:
    """Environment of the server, workers and deploy steps: own PREFECT_HOME, this server's API, the docs folder and
    the flow runs' working directory (the one `up` runs in; prefect.yaml's pull step reads DOMAIN_EMBED_ROOT)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_KEY", "PREFECT_PROFILE")}
    env.update(
        PREFECT_HOME=str((state / "prefect").resolve()),
        PREFECT_API_URL=api_url(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",  # a 503 ("busy database, retry") leaves its cause in the server log
        DOMAIN_EMBED_ROOT=str(Path.cwd().resolve()),
        DOMAIN_EMBED_DOCS=str(docs_dir.resolve()),
        DOMAIN_EMBED_LIFELINE="1",  # flow runs die with their worker, or once this API is gone (tasks/core/lifeline.py)
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", HEARTBEAT_S),
    )
    return env


def port_in_use(port: int) -> bool:
    """Whether something already listens on HOST:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def spawn(name: str, argv: list[str], env: dict[str, str], state: Path, record: dict) -> psutil.Process:
    """Start a background process in its own process group, logging to logs/<name>.log, and record it.

    It runs in the state folder: `python -m` puts its working directory first on sys.path, and the folder `up`
    was started from may hold anything (a tasks.py, a flows/ folder)."""
    log = state / "logs" / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=state.resolve(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = psutil.Process(popen.pid)
    record["processes"][name] = {"pid": popen.pid, "started": proc.create_time(), "argv": argv[1:]}
    write_state(state, record)
    return proc


def run_step(name: str, argv: list[str], env: dict[str, str], state: Path, timeout: float) -> None:
    """Run a setup command to completion, logging to logs/<name>.log; raise ServerError with the log tail on failure."""
    log = state / "logs" / f"{name}.log"
    with open(log, "wb") as out:
        try:
            code = subprocess.run(
                argv,
                env=env,
                cwd=state.resolve(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0:
        raise ServerError(f"{name} failed ({code}); see {log}:\n{log_tail(log)}")


def wait_healthy(port: int, server: psutil.Process, log: Path, timeout: float) -> None:
    """Poll /api/health until the server answers; fail early if its process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running() or server.status() == psutil.STATUS_ZOMBIE:
            raise ServerError(f"prefect server exited; see {log}:\n{log_tail(log)}")
        if api_answers(api_url(port), timeout=2):
            return
        time.sleep(0.5)
    raise ServerError(f"prefect server did not answer on {api_url(port)} within {timeout:.0f} s; see {log}")


def post_json(port: int, path: str, body: dict | None = None) -> list | dict:
    """POST a JSON body to the server's API and return the decoded answer."""
    request = urllib.request.Request(
        f"{api_url(port)}{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def deployment_names(port: int) -> list[str]:
    """The flow/deployment names registered on the server."""
    flows = {f["id"]: f["name"] for f in post_json(port, "/flows/filter")}
    return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in post_json(port, "/deployments/filter"))


def up(state: Path, port: int = DEFAULT_PORT, docs_dir: Path = DEFAULT_DOCS, timeout: float = 180) -> str:
    """Start the server, create the pools, deploy prefect.yaml, start one worker per pool; returns the UI address.

    prefect.yaml and the pools' job templates are read from the installed package (package data), never from
    the working directory; its entrypoints are module paths (domain_embed.flows.deployed:<flow>).

    On any failure everything started so far is stopped again.
    """
    clear_leftovers(state)
    if not docs_dir.is_dir():
        raise ServerError(f"docs folder not found: {docs_dir}")
    if port_in_use(port):
        raise ServerError(f"{HOST}:{port} is already in use; pick another --port")
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "prefect").mkdir(exist_ok=True)
    env = child_env(state, port, docs_dir)
    record: dict = {"port": port, "processes": {}}
    write_state(state, record)
    prefect = [sys.executable, "-m", "prefect"]
    try:
        server_argv = [sys.executable, "-m", "domain_embed.flows.prefect_server", "--host", HOST, "--port", str(port)]
        server = spawn("server", server_argv, env, state, record)
        print(f"Starting the Prefect server on {ui_url(port)} (database and logs in {state})")
        wait_healthy(port, server, state / "logs" / "server.log", timeout)
        run_step("pools", [sys.executable, "-m", f"{PACKAGE}.deployments.pools"], env, state, timeout)
        print(f"Work pools: {', '.join(POOLS)}")
        with as_file(files(PACKAGE) / "prefect.yaml") as spec:
            deploy = [*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(spec)]
            run_step("deploy", deploy, env, state, max(timeout, 600))
        run_step(
            "crash-detection", [sys.executable, "-m", f"{PACKAGE}.deployments.crash_detection"], env, state, timeout
        )
        print(f"Deployments: {', '.join(deployment_names(port))}")
        workers = []
        for pool in POOLS:
            argv = [*prefect, "worker", "start", "--pool", pool, "--type", "process", "--name", f"domain-embed-{pool}"]
            workers.append(f"{pool} (pid {spawn(f'worker-{pool}', argv, env, state, record).pid})")
        print(f"Workers: {', '.join(workers)}")
    except BaseException:
        down(state)
        raise
    return ui_url(port)


def clear_leftovers(state: Path) -> None:
    """Refuse when everything `up` started from this state folder still runs; stop what is left of a partial one
    (a worker or the server killed) so that `up` starts all again."""
    previous = read_state(state)
    entries = previous.get("processes", {})
    live = [name for name, entry in entries.items() if live_process(entry)]
    if live and len(live) == len(entries):
        raise ServerError(f"already up from {state} ({ui_url(previous['port'])}); run `domain-embed down` first")
    if live:
        print(
            f"Restarting: {', '.join(sorted(set(entries) - set(live)))} had stopped; stopping {', '.join(sorted(live))}"
        )
        down(state)


def stop(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM each process's group and its descendants; SIGKILL what is left after `grace` seconds."""
    victims: list[psutil.Process] = []
    for proc in procs:
        try:
            victims += [proc, *proc.children(recursive=True)]
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGTERM)
        except (psutil.Error, ProcessLookupError):
            pass
    for victim in victims:
        try:
            victim.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(victims, timeout=grace)
    for victim in alive:
        try:
            victim.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def down(state: Path, grace: float = 15) -> list[str]:
    """Stop the processes `up` recorded in this state folder (workers first, then the server); returns their names."""
    processes = read_state(state).get("processes", {})
    live = {name: proc for name, entry in processes.items() if (proc := live_process(entry))}
    workers = [proc for name, proc in live.items() if name != "server"]
    stop(workers, grace)
    if "server" in live:
        stop([live["server"]], grace)
    (state / STATE_FILE).unlink(missing_ok=True)
    return sorted(live)
