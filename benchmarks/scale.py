"""How the corpus stages scale: parse, chunk, corpus, embed (base model), FAISS index and generate at two document counts.

Builds N plain-text documents of ~4 kB of real text (benchmarks/scale_corpus.py: the Debian Reference, then the
docs of installed packages) and runs the pipeline's own corpus stages on them (flows/prepare.py, as build-embedder
calls them), then its generate stage with the embedded LLM on a stable sample of --llm-sample chunks (so the
LLM's cost does not grow with N; no training), each N in a fresh process with a fresh Prefect home and run store,
then once more with nothing changed. Prints one JSON line per N (seconds per stage, Prefect task runs, peak RSS,
run-store bytes) and a last line with the growth ratios between the two N.

    python -m benchmarks.scale [--sizes 1000,10000] [--work DIR] [--documents-per-task 100] [--llm-sample 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.flows.env import set_offline_defaults  # noqa: E402
from domain_embed.tasks.core.progress import peak_rss_mb  # noqa: E402

set_offline_defaults()

from benchmarks import scale_corpus  # noqa: E402

STAGES = ("parse", "chunk", "corpus", "embed", "index", "generate")
PLAIN_SAMPLE = 30


async def count_task_runs() -> int:
    """Task runs the Prefect API holds, counted page by page through the client."""
    from prefect import get_client

    total, page = 0, 200
    async with get_client() as client:
        while batch := await client.read_task_runs(limit=page, offset=total):
            total += len(batch)
            if len(batch) < page:
                break
    return total


TINY = {"sizes": "3,6", "documents_per_task": 2, "llm_sample": 2}  # --tiny: what CI runs


def plain_parse_ms(docs: list) -> float:
    """Milliseconds per document of the plain parse function, warm, on the first PLAIN_SAMPLE documents."""
    from domain_embed.tasks.ingest.parse import elements_to_records, partition_file

    sample = docs[:PLAIN_SAMPLE]
    elements_to_records(partition_file(sample[0].path, sample[0].ext, "fast")[0])  # warm-up: imports, first-call costs
    started = time.perf_counter()
    for doc in sample:
        elements_to_records(partition_file(doc.path, doc.ext, "fast")[0])
    return round(1000 * (time.perf_counter() - started) / len(sample), 1)


def measure(n: int, docs_dir: Path, store_dir: Path, documents_per_task: int, llm_sample: int) -> dict:
    """Run the corpus stages and generate on docs_dir twice (fresh store, then nothing changed) and return the figures of N."""
    from prefect import flow

    from domain_embed.flows.local_api import prepare_local_api
    from domain_embed.flows.pipeline import generate_questions
    from domain_embed.flows.prepare import prepare_corpus
    from domain_embed.tasks.core import Stopwatch
    from domain_embed.tasks.core.objects import iter_jsonl, read_npy
    from domain_embed.tasks.embedding.faiss_index import build_index
    from domain_embed.tasks.embedding.models import model_fingerprint, resolve_model
    from domain_embed.tasks.ingest.discover import discover_documents
    from domain_embed.tasks.questions.qa_cache import sample_point
    from domain_embed.tasks.settings import MineSettings, PipelineConfig

    config = PipelineConfig(
        docs_dir=str(docs_dir), store_url=str(store_dir), runner={"documents_per_task": documents_per_task}
    )
    model_dir = resolve_model(config.base_model)
    model_sha = model_fingerprint(model_dir)

    @flow(name="scale-benchmark")
    def corpus_stages() -> dict:
        clock = Stopwatch()
        docs = discover_documents(config.docs_dir, config.parse.extensions, config.parse.max_file_mb)
        prepared = prepare_corpus(config, docs, model_dir, model_sha, config.store_url, clock)
        with clock.stage("index"):
            index, info = build_index(read_npy(prepared.embeddings), MineSettings())
        points = sorted(sample_point(row["chunk_id"]) for row in iter_jsonl(prepared.corpus.ref))
        fraction = (
            1.0 if llm_sample >= len(points) else (points[llm_sample - 1] + 1) / 2**32
        )  # exactly llm_sample chunks
        sampled = config.model_copy(update={"llm": config.llm.model_copy(update={"chunk_fraction": fraction})})
        with clock.stage("generate"):
            stats = generate_questions(sampled, prepared.corpus.ref, config.store_url, prepared.embeddings).stats
        return {
            "files": len(docs),
            "parsed_ok": len(prepared.parsed.ok_docs),
            "chunks": prepared.corpus.chunks,
            "index": info["type"],
            "vectors": int(index.ntotal),
            "llm_chunks_asked": stats.chunks_asked,
            "llm_calls": stats.llm_calls,
            "questions_kept": stats.questions_kept,
            "seconds": clock.seconds,
        }

    prepare_local_api()
    started = time.perf_counter()
    counts = corpus_stages()
    first_s, first = time.perf_counter() - started, counts.pop("seconds")
    peak_rss = peak_rss_mb()
    task_runs = asyncio.run(count_task_runs())
    started = time.perf_counter()
    again = corpus_stages()
    rerun_s = time.perf_counter() - started
    docs = [
        d
        for d in discover_documents(config.docs_dir, config.parse.extensions, config.parse.max_file_mb)
        if not d.skipped
    ]
    ok = counts["parsed_ok"]
    return {
        "benchmark": "scale",
        "documents": n,
        "docs_bytes": scale_corpus.total_bytes(docs_dir),
        **counts,
        "documents_per_task": documents_per_task,
        "seconds": {s: first[s] for s in STAGES},
        "total_s": round(first_s, 2),
        "parse_ms_per_doc": round(1000 * first["parse"] / ok, 1),
        "chunk_ms_per_doc": round(1000 * first["chunk"] / ok, 1),
        "plain_parse_ms_per_doc": plain_parse_ms(docs),
        "task_runs": task_runs,
        "rerun_no_change_s": round(rerun_s, 2),
        "rerun_seconds": {s: again["seconds"][s] for s in STAGES},
        "rerun_llm_calls": again["llm_calls"],
        "rerun_task_runs": asyncio.run(count_task_runs()) - task_runs,
        "peak_rss_mb": round(peak_rss),
        "store_bytes": scale_corpus.total_bytes(store_dir),
    }


def run_size(n: int, work: Path, documents_per_task: int, llm_sample: int) -> dict:
    """Build N documents, then measure them in a fresh process (its own peak RSS, Prefect home and run store)."""
    docs_dir = work / f"docs-{n}"
    if not docs_dir.is_dir():
        scale_corpus.write_documents(n, docs_dir)
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / f"prefect-{n}"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("PREFECT_API_URL", None)
    args = [
        sys.executable,
        "-m",
        "benchmarks.scale",
        "--measure",
        str(n),
        "--work",
        str(work),
        "--documents-per-task",
        str(documents_per_task),
        "--llm-sample",
        str(llm_sample),
    ]
    log = work / f"scale-{n}.log"
    with open(log, "w") as handle:
        done = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=handle, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the run at N={n} failed ({done.returncode}); see {log}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(small: dict, large: dict) -> dict:
    """Ratios large / small: documents, seconds per stage, task runs, peak RSS, run-store bytes, no-change re-run."""
    ratio = lambda a, b: round(b / a, 2) if a else None  # noqa: E731
    return {
        "benchmark": "scale-growth",
        "documents": [small["documents"], large["documents"]],
        "documents_ratio": ratio(small["documents"], large["documents"]),
        "seconds_ratio": {s: ratio(small["seconds"][s], large["seconds"][s]) for s in STAGES},
        "total_s_ratio": ratio(small["total_s"], large["total_s"]),
        "task_runs_ratio": ratio(small["task_runs"], large["task_runs"]),
        "peak_rss_ratio": ratio(small["peak_rss_mb"], large["peak_rss_mb"]),
        "store_bytes_ratio": ratio(small["store_bytes"], large["store_bytes"]),
        "rerun_no_change_s_ratio": ratio(small["rerun_no_change_s"], large["rerun_no_change_s"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="Two document counts, comma-separated")
    parser.add_argument("--work", default=None, help="Working folder (default: a new temporary folder)")
    parser.add_argument("--documents-per-task", type=int, default=100, help="runner.documents_per_task of the runs")
    parser.add_argument("--llm-sample", type=int, default=20, help="Chunks sent to the embedded LLM (at least 1)")
    parser.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)  # one N, in the child process
    args = parse_args(parser, TINY)
    if args.llm_sample < 1:
        parser.error("--llm-sample must be at least 1")
    work = Path(args.work or tempfile.mkdtemp(prefix="scale-"))
    if args.measure is not None:
        n = args.measure
        print(
            json.dumps(measure(n, work / f"docs-{n}", work / f"store-{n}", args.documents_per_task, args.llm_sample)),
            flush=True,
        )
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) != 2:
        raise SystemExit("--sizes takes two document counts, e.g. 1000,10000")
    work.mkdir(parents=True, exist_ok=True)
    scale_corpus.ensure_package()
    results = []
    for n in sizes:
        results.append(run_size(n, work, args.documents_per_task, args.llm_sample))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps(growth(*results)), flush=True)


if __name__ == "__main__":
    main()
