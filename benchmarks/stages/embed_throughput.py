"""Inference throughput per backend and dtype on this CPU: PyTorch fp32, PyTorch bf16 autocast, ONNX Runtime fp32 and
int8 (the model exported once into a temporary copy). Passages: the demo corpus (examples/) cut into ~150-word pieces.

Prints one JSON line: per backend passages/s, real (non-padding) tokens/s, achieved GFLOP/s (2 x non-embedding
parameters per processed token, plus attention's 4 x layers x sequence x hidden), its ratio to the CPU's peak for
that dtype (cores x clock x FLOP per cycle from the CPU's flags), and the lowest cosine to PyTorch fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.tasks.embedding.models import resolve_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")
WORDS_PER_PASSAGE = 150


def passages(count: int) -> list[str]:
    """`count` passages of about WORDS_PER_PASSAGE words from the demo corpus, repeated when it has fewer."""
    words = " ".join(p.read_text(errors="replace") for p in sorted((ROOT / "examples").rglob("*.md"))).split()
    pieces = [" ".join(words[i : i + WORDS_PER_PASSAGE]) for i in range(0, len(words), WORDS_PER_PASSAGE)]
    return (pieces * (count // max(1, len(pieces)) + 1))[:count]


def cpu_peak_gflops(dtype: str) -> dict:
    """Peak GFLOP/s of this machine's cores for a dtype, from /proc/cpuinfo: cores x MHz x FLOP per cycle per core."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = max((float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)), default=0.0)
    amd = "AuthenticAMD" in info
    # fp32 FMA lanes x 2 FLOP x FMA pipes: AVX-512 on Zen 4 runs as two 256-bit halves (2 pipes x 8 lanes)
    fp32 = 32 if "avx2" in flags else 8
    if "avx512f" in flags and not amd:
        fp32 = 64
    per_cycle = {"fp32": fp32, "bf16": fp32 * 2 if "avx512_bf16" in flags else fp32, "int8": fp32 * 4}
    if "avx512_vnni" not in flags and "avx_vnni" not in flags:
        per_cycle["int8"] = fp32 * 2
    cores = len(os.sched_getaffinity(0))
    return {"gflops": round(cores * mhz / 1000 * per_cycle[dtype], 1), "cores": cores, "mhz": mhz}


def flops_per_token(model, seq_len: int) -> float:
    """Forward FLOPs per processed token: 2 x non-embedding parameters, plus attention scores and their mix."""
    transformer = model[0].auto_model
    config = transformer.config
    embedding = sum(p.numel() for n, p in transformer.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in transformer.parameters()) - embedding
    return 2 * dense + 4 * config.num_hidden_layers * seq_len * config.hidden_size


def load(backend: str, model_dir: str):
    """The SentenceTransformer for a backend; ONNX files are exported into model_dir once."""
    from domain_embed.tasks.embedding.models import load_model
    from domain_embed.tasks.embedding.onnx_export import export_onnx, load_onnx_model, quantize_int8

    if backend.startswith("torch"):
        return load_model(model_dir, "cpu")
    onnx = Path(model_dir) / "onnx" / "model.onnx"
    if not onnx.exists():
        export_onnx(model_dir)
    return load_onnx_model(model_dir, quantize_int8(onnx) if backend == "onnx-int8" else onnx)


def measure(backend: str, model, texts: list[str], batch: int, counted) -> tuple[np.ndarray, dict]:
    """Embeddings of `texts` and the timing figures, after one warm-up batch; FLOPs are counted on `counted`, the
    PyTorch model (an ONNX stand-in has no parameters to count)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=backend == "torch-bf16")
    with torch.inference_mode(), autocast:
        model.encode(texts[:batch], batch_size=batch)
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        seconds = time.perf_counter() - started
    tokenizer = model.tokenizer
    encoded = tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    order = sorted(lengths, reverse=True)  # encode sorts by length, then pads each batch to its longest
    padded = sum(max(order[i : i + batch]) * len(order[i : i + batch]) for i in range(0, len(order), batch))
    flops = flops_per_token(counted, int(np.mean(lengths))) * padded
    return vectors.astype(np.float32), {
        "passages_per_s": round(len(texts) / seconds, 1),
        "tokens_per_s": round(sum(lengths) / seconds, 1),
        "gflops": round(flops / seconds / 1e9, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parse_args(parser, {"passages": 8, "backends": "torch"}, argv)
    texts = passages(args.passages)
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(shutil.copytree(resolve_model(args.model), Path(tmp) / "model"))
        counted = load("torch", model_dir)
        for backend in args.backends.split(","):
            vectors, figures = measure(backend, load(backend, model_dir), texts, args.batch_size, counted)
            reference = vectors if reference is None else reference
            dtype = {"torch-bf16": "bf16", "onnx-int8": "int8"}.get(backend, "fp32")
            peak = cpu_peak_gflops(dtype)
            figures["peak_gflops"] = peak["gflops"]
            figures["of_peak"] = round(figures["gflops"] / peak["gflops"], 3) if peak["gflops"] else None
            figures["min_cosine_to_first"] = round(float((reference * vectors).sum(axis=1).min()), 5)
            results[backend] = figures
    print(
        json.dumps(
            {
                "model": args.model,
                "passages": len(texts),
                "batch_size": args.batch_size,
                "cores": cpu_peak_gflops("fp32")["cores"],
                "torch_threads": torch.get_num_threads(),
                "backends": results,
            }
        )
    )


if __name__ == "__main__":
    main()
