"""embed.backend: which inference backend embeds texts outside training. 'auto' is PyTorch on a GPU, else the faster of
PyTorch fp32 and ONNX Runtime fp32 on this CPU, timed once per machine and model and remembered in its local cache; a
corpus too small to repay the timing embeds with PyTorch untimed."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
from prefect import task
from prefect.logging import get_run_logger

from ..core.caching import source_hash
from ..core.model_ref import local_cache
from ..core.objects import Ref, iter_jsonl, stable_hash
from ..core.reports import publish_table
from ..core.store import put_record, read_record
from .models import Backend, best_device, embed_texts, model_fingerprint, resolve_model

SAMPLE = 48  # corpus texts each backend embeds, timed
WARM_UP = 8  # texts embedded first, untimed: loading, first-call allocations
SAME_COSINE = 0.9999  # ONNX Runtime must embed every sample text this close to PyTorch's vector to be chosen
MARGIN = 1.1  # and be this much faster: a near tie stays with PyTorch, the reference
# Timing costs ~16 s once per machine (export, two models in a child process); ONNX Runtime measured at most 1.36x
# PyTorch's speed, which on 2 cores at ~40 passages/s saves under 7 s per 1,000 chunks: a smaller corpus is not timed.
MIN_CHUNKS_TO_TIME = 1000


def cpu_name() -> str:
    """This CPU's model name (Linux's /proc/cpuinfo), else what the platform reports."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text(errors="replace").splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(model_dir: str, backend: str, store_url: str | None, texts: list[str]) -> tuple[np.ndarray, float]:
    """The backend's embeddings of texts and its texts/s (after an untimed warm-up)."""
    embed_texts(model_dir, texts[:WARM_UP], backend=Backend(backend, store_url))
    started = time.perf_counter()
    vectors = embed_texts(model_dir, texts, backend=Backend(backend, store_url))
    return vectors, len(texts) / max(time.perf_counter() - started, 1e-9)


def calibrate(model_dir: str, store_url: str | None, texts: list[str]) -> dict:
    """Time PyTorch fp32 and ONNX Runtime fp32 on the same texts; ONNX Runtime wins only if faster by MARGIN and the
    same to SAME_COSINE on every text."""
    import torch

    reference, torch_speed = timed(model_dir, "torch", store_url, texts)
    vectors, onnx_speed = timed(model_dir, "onnx", store_url, texts)
    cosine = float(np.min(np.sum(reference * vectors, axis=1)))
    chosen = "onnx" if onnx_speed > MARGIN * torch_speed and cosine >= SAME_COSINE else "torch"
    return {
        "backend": chosen,
        "reason": f"timed on {len(texts)} corpus texts",
        "passages_per_s": {"torch": round(torch_speed, 1), "onnx": round(onnx_speed, 1)},
        "min_cosine": round(cosine, 6),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }


def choose_backend(
    choice: str, model_dir: str, store_url: str | None, texts: list[str], chunks: int | None = None
) -> dict:
    """The backend to embed with ('torch' or 'onnx') and why: the setting itself, or auto's choice for this machine
    (timed on `texts` in a child process, once per model, CPU and thread count, and remembered in the machine's local
    cache); PyTorch, untimed and not remembered, while none is remembered and the corpus has fewer than
    MIN_CHUNKS_TO_TIME `chunks`."""
    if choice != "auto":
        return {"backend": choice, "reason": "embed.backend"}
    if best_device() == "cuda" or not texts:
        return {"backend": "torch", "reason": "GPU" if texts else "no texts to time"}
    import torch

    machine = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count()}
    key = stable_hash({"model": model_fingerprint(model_dir), **machine, "code": source_hash(__name__)})
    record_path = str(local_cache() / "backend-choices" / f"{key}.json")
    record = read_record(record_path)
    if record is None and chunks is not None and chunks < MIN_CHUNKS_TO_TIME:
        return {"backend": "torch", "reason": f"{chunks} chunks, too few to repay timing ONNX Runtime"}
    if record is None:
        spawn = multiprocessing.get_context("spawn")  # the export's and both models' memory goes with the child
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            record = child.submit(calibrate, model_dir, store_url, texts).result()
        put_record(record_path, record)
    return record


def sample_texts(corpus: Ref, count: int = SAMPLE) -> list[str]:
    """The first `count` chunk texts of the corpus."""
    with closing(iter_jsonl(corpus)) as rows:
        return [row["text"] for row in itertools.islice(rows, count)]


@task(name="choose-backend", persist_result=False, retries=1)
def choose_backend_task(choice: str, base_model: str, corpus: Ref, store_url: str) -> str:
    """embed.backend resolved for this run ('torch' or 'onnx'), with a table artifact of why."""
    record = choose_backend(choice, resolve_model(base_model), store_url, sample_texts(corpus), corpus.count)
    get_run_logger().info("embed.backend %s: %s (%s)", choice, record["backend"], record["reason"])
    speeds = record.get("passages_per_s", {})
    rows = [
        {"backend": name, "passages_per_s": speed, "chosen": name == record["backend"]}
        for name, speed in speeds.items()
    ]
    publish_table(
        "embed-backend",
        rows or [{"backend": record["backend"], "chosen": True}],
        f"embed.backend {choice}: {record['backend']} ({record['reason']})",
    )
    return record["backend"]
