"""How long `domain-embed plan` takes, as a user runs it: on N real-text documents (benchmarks/scale_corpus.py; --tiny:
five files of the demo corpus) with a fresh run store (every count estimated from the files), then after those
documents were parsed and chunked into the store (every count exact). Prints one JSON line: documents, seconds per plan (the process's whole life, imports
included), and the chunks each plan counted.

    python -m benchmarks.plan_speed [--documents 1000] [--work DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain_embed.flows.env import set_offline_defaults  # noqa: E402

set_offline_defaults()

from benchmarks import scale_corpus  # noqa: E402
from benchmarks.tiny import parse_args  # noqa: E402


def write_documents(n: int, docs: Path, tiny: bool) -> int:
    """n documents in `docs`, their bytes: the scale benchmark's real text, or (tiny) the demo corpus's first files."""
    if not tiny:
        scale_corpus.ensure_package()
        return scale_corpus.write_documents(n, docs)
    docs.mkdir(parents=True)
    demo = sorted(p for p in (ROOT / "examples" / "postgresql").rglob("*") if p.suffix in (".html", ".md", ".txt"))
    for source in demo[:n]:
        shutil.copy(source, docs)
    return scale_corpus.total_bytes(docs)


def plan(docs: Path, store: Path, out: Path) -> tuple[dict, float]:
    """`domain-embed plan --json` in its own process: the plan and the wall seconds."""
    started = time.monotonic()
    args = [sys.executable, "-m", "domain_embed.flows.cli", "plan", str(docs), "--store", str(store)]
    done = subprocess.run([*args, "--out", str(out), "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), round(time.monotonic() - started, 2)


def chunk_into_store(docs: Path, store: Path) -> None:
    """Parse and chunk every document into the store, as a run's first stages do (no LLM, no training)."""
    from domain_embed.tasks.checks import check_config
    from domain_embed.tasks.core import RunStore
    from domain_embed.tasks.embedding import max_seq_length, model_fingerprint
    from domain_embed.tasks.ingest import ChunkJob, chunk_documents, parse_documents
    from domain_embed.tasks.settings import PipelineConfig

    config = PipelineConfig(docs_dir=str(docs), store_url=str(store), out_dir=str(store.parent / "out"))
    found, model_dir, _, _ = check_config(config)
    readable = [d for d in found if not d.skipped]
    run_store = RunStore(str(store))
    parsed = parse_documents(readable, config.parse, run_store).docs
    jobs = [ChunkJob(elements=p.ref, doc_sha=d.sha256, rel_path=d.rel_path) for d, p in zip(readable, parsed) if p.ref]
    sha, max_len = model_fingerprint(model_dir), max_seq_length(model_dir)
    chunk_documents(jobs, config.chunk, model_dir, sha, max_len, run_store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--work", help="Working folder (default: a temporary one)")
    args = parse_args(parser, {"documents": 5}, argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        docs, store = work / "docs", work / "store"
        size = write_documents(args.documents, docs, args.tiny)
        fresh, fresh_s = plan(docs, store, work / "out")
        chunk_into_store(docs, store)
        known, known_s = plan(docs, store, work / "out")
    print(
        json.dumps(
            {
                "documents": args.documents,
                "bytes": size,
                "fresh_store_s": fresh_s,
                "chunked_store_s": known_s,
                "chunks_estimated": fresh["chunks"],
                "chunks_exact": known["chunks"],
                "documents_known": known["documents_known"],
            }
        )
    )


if __name__ == "__main__":
    main()
