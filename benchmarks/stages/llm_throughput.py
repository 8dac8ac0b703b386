"""LLM throughput under a server's rate limits with faults: share of the RPM limit used, chunks lost, speedup.

The stub server enforces RPM and TPM with real 429s and Retry-After, answers after a fixed latency and injects 10%
500s and 5% malformed answers. The generate stage (rate limiter, retries, per-chunk cache) asks for every chunk, once
with the client's limits set to the server's and once set to `--overcommit` times them (a quota shared with others:
only 429s hold it back); a plain sequential loop of litellm.completion calls runs against the same server for the
speedup. Prints one JSON line: `rpm_ratio` is the matched run's admitted requests/min over the server's limit (it can
pass 1 by the client's half-second burst over the run's length; http_429 = 0 shows the server never saw more than its
limit); `chunks_lost` counts chunks still without questions after a second pass that, like the next run, asks again
only for the chunks that failed (a failed chunk is always listed with its reason, never silently lost).

    python benchmarks/stages/llm_throughput.py [--chunks 600 --rpm 1200 --tpm 600000 --latency 0.25 --sequential 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DO_NOT_TRACK", "true")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import litellm  # noqa: E402
from llm_stub import LLMStub  # noqa: E402

from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.tasks.core.store import RunStore  # noqa: E402
from domain_embed.tasks.llm.endpoint import LLMEndpoint  # noqa: E402
from domain_embed.tasks.questions.generate import cache_key, collect_answers  # noqa: E402
from domain_embed.tasks.questions.prompts import build_messages, parse_questions  # noqa: E402
from domain_embed.tasks.settings import LLMSettings  # noqa: E402

FAULTS = {"500": 0.10, "malformed": 0.05}
WORDS = (
    "reactor turbine valve pressure coolant sensor calibration firmware bearing gearbox lubricant torque voltage "
    "inverter transformer insulation breaker relay feeder substation harmonic frequency damping vibration fatigue "
    "corrosion weld flange gasket pump impeller cavitation manifold nozzle combustion exhaust catalyst emission "
    "filter membrane osmosis sediment turbidity chlorine dosage reservoir spillway aquifer borehole casing cement "
    "drilling mud viscosity density gradient fracture permeability porosity saturation seismic survey antenna "
    "waveguide amplifier oscillator modulation bandwidth latency packet router firewall certificate encryption "
    "checksum replication snapshot backup restore quorum partition failover throttle scheduler kernel interrupt"
).split()


TINY = {"chunks": 12, "rpm": 6000, "tpm": 3_000_000, "latency": 0.01, "sequential": 4}  # --tiny: what CI runs


def passages(n: int, seed: int) -> list[str]:
    """n distinct technical-sounding passages of ~70 words."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(8, 14))).capitalize() + "." for _ in range(6)]
        out.append(f"Section {i}. " + " ".join(sentences))
    return out


def as_chunks(texts: list[str]) -> list[dict]:
    return [
        {"chunk_id": f"{i:016x}", "doc_id": f"{i // 10:016x}", "section": "", "text": t, "n_tokens": 90}
        for i, t in enumerate(texts)
    ]


def admitted_rate_per_min(stub: LLMStub) -> float:
    """Requests the server admitted (everything but its 429s) per minute, between the first and last admitted."""
    times = [r.t for r in stub.requests if r.fault != "throttled"]
    return 60.0 * (len(times) - 1) / (times[-1] - times[0])


def sequential_loop(stub: LLMStub, texts: list[str], settings: LLMSettings) -> dict:
    """The plain way: one litellm.completion after the other, no retries; failures are lost chunks."""
    answered = 0
    started = time.monotonic()
    for text in texts:
        try:
            response = litellm.completion(
                model="openai/stub-model",
                messages=build_messages(text, "", settings.questions_per_chunk),
                api_base=stub.api_base,
                api_key="sk-bench",
                max_tokens=settings.max_tokens,
                timeout=settings.timeout_s,
            )
            parse_questions(response.choices[0].message.content or "")
            answered += 1
        except Exception:  # the plain loop just loses the chunk
            continue
    elapsed = time.monotonic() - started
    lost = len(texts) - answered
    return {"chunks": len(texts), "answered": answered, "lost": lost, "chunks_per_s": answered / elapsed}


def run_stage(chunks: list[dict], settings: LLMSettings, stub_kwargs: dict) -> dict:
    """The generate stage's LLM part against a fresh stub: rate achieved against the limit, faults seen, chunks lost.

    A second pass over the same store (what the next run does) asks again only for the chunks that failed.
    """
    with LLMStub(**stub_kwargs) as stub, tempfile.TemporaryDirectory() as folder:
        endpoint = LLMEndpoint(model="openai/stub-model", api_base=stub.api_base)
        started = time.monotonic()
        answers, failures, stats = asyncio.run(collect_answers(chunks, settings, endpoint, RunStore(folder)))
        elapsed = time.monotonic() - started
        requests = stub.requests
        achieved = admitted_rate_per_min(stub)
        again, _, again_stats = asyncio.run(collect_answers(chunks, settings, endpoint, RunStore(folder)))
    answered = sum(1 for c in chunks if cache_key(c["text"], settings) in answers)
    answered_after_rerun = sum(1 for c in chunks if cache_key(c["text"], settings) in again)
    reasons: dict[str, int] = {}
    for kind, _ in failures.values():
        reasons[kind] = reasons.get(kind, 0) + 1
    return {
        "chunks": len(chunks),
        "elapsed_s": round(elapsed, 2),
        "requests": len(requests),
        "http_429": sum(r.status == 429 for r in requests),
        "http_500": sum(r.fault == "500" for r in requests),
        "malformed": sum(r.fault == "malformed" for r in requests),
        "achieved_rpm": round(achieved, 1),
        "rpm_ratio": round(achieved / stub_kwargs["rpm"], 4),
        "chunks_answered": answered,
        "chunks_failed": len(failures),
        "failed_reasons": reasons,
        "chunks_unaccounted": len(chunks) - answered - len(failures),
        "rerun_llm_calls": again_stats.llm_calls,
        "chunks_lost": len(chunks) - answered_after_rerun,
        "llm_calls": stats.llm_calls,
        "chunks_per_s": round(answered / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=600)
    parser.add_argument("--rpm", type=float, default=1200)
    parser.add_argument("--tpm", type=float, default=600_000)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--sequential", type=int, default=40, help="chunks for the sequential baseline")
    parser.add_argument("--overcommit", type=float, default=2.0, help="client limit / server limit, shared-quota run")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parse_args(parser, TINY)

    def settings(factor: float) -> LLMSettings:
        return LLMSettings(
            model="bench-model",
            requests_per_minute=args.rpm * factor,
            tokens_per_minute=args.tpm * factor,
            max_concurrency=args.concurrency,
            timeout_s=10,
        )

    stub_kwargs = dict(latency_s=args.latency, rpm=args.rpm, tpm=args.tpm, fault_rates=FAULTS, seed=1)
    n_over = args.chunks // 2
    texts = passages(args.chunks + n_over + args.sequential, seed=7)
    matched = run_stage(as_chunks(texts[: args.chunks]), settings(1.0), stub_kwargs)
    over = run_stage(as_chunks(texts[args.chunks : args.chunks + n_over]), settings(args.overcommit), stub_kwargs)
    with LLMStub(**stub_kwargs) as stub:
        plain = sequential_loop(stub, texts[args.chunks + n_over :], settings(1.0))
    result = {
        "benchmark": "llm_throughput",
        "server_rpm_limit": args.rpm,
        "server_tpm_limit": args.tpm,
        "latency_s": args.latency,
        "fault_rates": FAULTS,
        "rpm_ratio": matched["rpm_ratio"],
        "chunks_lost": matched["chunks_lost"] + over["chunks_lost"],
        "speedup": round(matched["chunks_per_s"] / plain["chunks_per_s"], 2),
        "limits_matched": matched,
        f"client_at_{args.overcommit:g}x_limit": over,
        "sequential": {k: round(v, 2) if isinstance(v, float) else v for k, v in plain.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
