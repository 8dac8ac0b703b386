"""Questions per second of the embedded LLMs (SmolLM2-135M, Qwen2.5-Coder-1.5B on llama.cpp) per server setting and prompt.

Real passages: the demo corpus (examples/postgresql) parsed and chunked by the pipeline's own stages. For each
variant a fresh server starts and the generate stage's own code (domain_embed.tasks.questions.generate.collect_answers, empty store) asks
for questions about the same chunks. Question quality is checked beside speed: the share of questions whose own
chunk ranks first, and in the top 5, among the sampled chunks under the base model (the round-trip rule), and
the share kept by the pipeline's filters. Prints one JSON line per variant.

    python -m benchmarks.stages.embedded_llm [--chunks 40] [--variant NAME ...] [--llama-server PATH]

The llama-server variants need llama.cpp's own server, built from the llama-cpp-python sdist's vendor/llama.cpp:
    cmake -S vendor/llama.cpp -B build -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF
    cmake --build build --target llama-server -j 2          # then --llama-server build/bin/llama-server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.flows.env import set_offline_defaults  # noqa: E402

set_offline_defaults()

VARIANTS: dict[str, dict] = {
    # name: llama_cpp.server options, LLM settings
    "default": {"server": {}, "llm": {}},
    "no-logits-all": {"server": {"logits_all": "false"}, "llm": {}},
    "no-logits-all+flash": {"server": {"logits_all": "false", "flash_attn": "true"}, "llm": {}},
    "no-logits-all+ubatch128": {"server": {"logits_all": "false", "n_batch": "512", "n_ubatch": "128"}, "llm": {}},
    "threads1": {"server": {"logits_all": "false"}, "llm": {}, "threads": 1},
    "no-logits-all+ctx1024": {"server": {"logits_all": "false", "n_ctx": "1024"}, "llm": {}},
    "no-logits-all+prompt-cache": {"server": {"logits_all": "false", "cache": "true"}, "llm": {}},
    "json-2-in-1": {"server": {"logits_all": "false"}, "llm": {"prompt_style": "json"}},
    "single+few-shot": {"server": {}, "llm": {"few_shot": 8}},
    "large-single": {"server": {}, "llm": {"model": "embedded-large", "prompt_style": "single"}},
    "large-json": {"server": {}, "llm": {"model": "embedded-large", "prompt_style": "json"}},
    "large-json+few-shot": {"server": {}, "llm": {"model": "embedded-large", "prompt_style": "json", "few_shot": 8}},
    "large-single+few-shot": {
        "server": {},
        "llm": {"model": "embedded-large", "prompt_style": "single", "few_shot": 8},
    },
    # llama.cpp's own llama-server (--llama-server PATH): N parallel slots with continuous batching, N in flight
    "llama-server-np1": {"server": {}, "llm": {}, "slots": 1},
    "llama-server-np2": {"server": {}, "llm": {"max_concurrency": 2}, "slots": 2},
    "llama-server-np4": {"server": {}, "llm": {"max_concurrency": 4}, "slots": 4},
    "large-llama-server-np1": {"server": {}, "llm": {"model": "embedded-large"}, "slots": 1},
    "large-llama-server-np4": {"server": {}, "llm": {"model": "embedded-large", "max_concurrency": 4}, "slots": 4},
}


TINY = {"chunks": 2, "variant": ["default"], "documents": 2}  # --tiny: what CI runs


def demo_chunks(documents: int | None = None) -> list[dict]:
    """Every chunk of the demo corpus (of its first `documents` pages), made by the pipeline's parse and chunk functions."""
    from domain_embed.tasks.core.objects import read_jsonl, sha256_file
    from domain_embed.tasks.core.store import RunStore
    from domain_embed.tasks.embedding.models import max_seq_length, resolve_model
    from domain_embed.tasks.ingest.chunk import chunk_document
    from domain_embed.tasks.ingest.parse import parse_document
    from domain_embed.tasks.settings import ChunkSettings, ParseSettings

    store = RunStore(tempfile.mkdtemp(prefix="llm-bench-store-"))
    model = resolve_model("all-MiniLM-L6-v2")
    chunks: list[dict] = []
    for path in sorted((ROOT / "examples" / "postgresql").rglob("*.html"))[:documents]:
        sha = sha256_file(path)
        parsed = parse_document(str(path), sha, path.suffix, ParseSettings(), store)
        chunks += read_jsonl(chunk_document(parsed.ref, sha, ChunkSettings(), model, max_seq_length(model), store).ref)
    return chunks


def roundtrip(questions: list[tuple[str, int]], texts: list[str]) -> dict:
    """Share of questions whose own chunk ranks first / in the top 5 among `texts` under the base model."""
    import numpy as np

    from domain_embed.tasks.embedding.models import embed_texts, resolve_model

    if not questions:
        return {"top1": 0.0, "top5": 0.0}
    model = resolve_model("all-MiniLM-L6-v2")
    q = embed_texts(model, [text for text, _ in questions])
    p = embed_texts(model, texts)
    scores = q @ p.T
    own = np.array([i for _, i in questions])
    ranks = (scores > scores[np.arange(len(own)), own][:, None] + 1e-6).sum(axis=1)
    return {"top1": round(float((ranks < 1).mean()), 3), "top5": round(float((ranks < 5).mean()), 3)}


@contextlib.contextmanager
def llama_server(binary: str, slots: int, model: str) -> Iterator:
    """llama.cpp's llama-server for an embedded model on 127.0.0.1: `slots` parallel slots, continuous batching."""
    from domain_embed.tasks.llm.local import embedded_model, endpoint_for, free_port, stop_process, wait_until_ready

    spec, port = embedded_model(model), free_port()
    command = [binary, "-m", spec.gguf(), "--alias", spec.alias, "--host", "127.0.0.1", "--port", str(port)]
    command += ["-t", str(os.cpu_count() or 1), "-np", str(slots), "-c", str(spec.context * slots)]
    with open(os.devnull, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(port, lambda: process.poll() is None, 120)
            yield endpoint_for(port, model)
        finally:
            stop_process(process)


def run_variant(name: str, spec: dict, corpus: list[dict], n: int, binary: str | None = None) -> dict:
    """Start the server with the variant's options, ask for 2 questions about each of n sampled chunks (worked
    examples, if any, from the whole corpus), time it, check the questions."""
    from domain_embed.tasks.core.store import RunStore
    from domain_embed.tasks.llm.local import embedded_llm_server
    from domain_embed.tasks.questions.filters import filter_questions
    from domain_embed.tasks.questions.generate import cache_key, collect_answers, sample_chunks
    from domain_embed.tasks.questions.prompts import domain_examples
    from domain_embed.tasks.settings import FilterSettings, LLMSettings

    llm = LLMSettings(**{"max_concurrency": 1, **spec["llm"]})
    chunks, examples = sample_chunks(corpus, 0.5)[:n], domain_examples(corpus, llm.few_shot)
    store = RunStore(tempfile.mkdtemp(prefix="llm-bench-"))
    if "slots" in spec and not binary:
        raise SystemExit(f"variant {name} runs llama.cpp's llama-server: give its path with --llama-server")
    server = (
        llama_server(binary, spec["slots"], llm.model)
        if "slots" in spec
        else embedded_llm_server(threads=spec.get("threads"), options=spec["server"], model=llm.model)
    )
    with server as endpoint:
        started = time.monotonic()
        answers, failures, stats = asyncio.run(collect_answers(chunks, llm, endpoint, store, examples))
        seconds = time.monotonic() - started
    asked = [(q, i) for i, c in enumerate(chunks) for q in answers.get(cache_key(c["text"], llm), [])]
    candidates = [{"query": q, "chunk_id": chunks[i]["chunk_id"], "doc_id": chunks[i]["doc_id"]} for q, i in asked]
    kept, _ = filter_questions(
        candidates, {c["chunk_id"]: c["text"] for c in chunks}, FilterSettings(roundtrip_top_k=0), None
    )
    return {
        "variant": name,
        "server": spec["server"],
        "llm": spec["llm"],
        "threads": spec.get("threads"),
        "slots": spec.get("slots"),
        "chunks": len(chunks),
        "questions": len(asked),
        "questions_per_s": round(len(asked) / seconds, 3),
        "seconds": round(seconds, 1),
        "calls": stats.llm_calls,
        "examples": [q for q, _ in examples],
        "sample": [q for q, _ in asked[:6]],
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "failed_chunks": len(failures),
        "kept_by_filters": round(len(kept) / max(1, len(asked)), 3),
        "roundtrip": roundtrip(asked, [c["text"] for c in chunks]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--documents", type=int, default=None, help="Pages of the demo corpus to chunk (default: all)")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--llama-server", default=None, help="llama.cpp's llama-server binary, for its variants")
    args = parse_args(parser, TINY)
    corpus = demo_chunks(args.documents)
    names = args.variant or [name for name, spec in VARIANTS.items() if "slots" not in spec or args.llama_server]
    for name in names:
        print(json.dumps(run_variant(name, VARIANTS[name], corpus, args.chunks, args.llama_server)), flush=True)


if __name__ == "__main__":
    main()
