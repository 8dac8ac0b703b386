"""The corpus stages of build-embedder: parse and chunk in batches of documents, assemble, embed, on the configured runner."""

from __future__ import annotations

from prefect.task_runners import TaskRunner
from pydantic import BaseModel

from ..tasks.core import Ref, Stopwatch, batches, label, task_runner
from ..tasks.embedding import choose_backend_task, embed_corpus_task, max_seq_length
from ..tasks.ingest import (
    ChunkedDoc,
    ChunkJob,
    Corpus,
    DocFile,
    Parsed,
    assemble_corpus_task,
    chunk_report_task,
    chunk_task,
    parse_report_task,
    parse_task,
)
from ..tasks.settings import PipelineConfig


class Prepared(BaseModel):
    """The corpus stages' results: parsed documents, chunked ones in document order, the corpus, its embeddings and
    the inference backend the run embeds with (embed.backend resolved)."""

    parsed: Parsed
    chunked: list[ChunkedDoc]
    corpus: Corpus
    embeddings: Ref
    backend: str


def parse_stage(runner: TaskRunner, docs: list[DocFile], config: PipelineConfig, store_url: str) -> Parsed:
    """Every document read in tasks of documents_per_task; the parse-report accounts for every file."""
    todo = [d for d in docs if not d.skipped]
    groups = list(batches(todo, config.runner.documents_per_task))
    futures = [
        runner.submit(
            parse_task,
            {
                "docs": list(b),
                "label": label([d.rel_path for d in b]),
                "settings": config.parse,
                "store_url": store_url,
            },
        )
        for b in groups
    ]
    results = [f.result() for f in futures]
    parsed = {d.sha256: p for b, r in zip(groups, results) for d, p in zip(b, r.docs)}
    report = parse_report_task(docs, parsed, config.docs_dir)
    return report.model_copy(update={"cached": sum(r.cached for r in results)})


def chunk_stage(
    runner: TaskRunner, parsed: Parsed, config: PipelineConfig, model_dir: str, model_sha: str, store_url: str
) -> list[ChunkedDoc]:
    """Every parsed document chunked in tasks of documents_per_task, in document order."""
    jobs = [
        ChunkJob(elements=parsed.by_sha[d.sha256].ref, doc_sha=d.sha256, rel_path=d.rel_path) for d in parsed.ok_docs
    ]
    common = {
        "settings": config.chunk,
        "model_dir": model_dir,
        "model_sha": model_sha,
        "max_tokens": max_seq_length(model_dir),
        "store_url": store_url,
    }
    futures = [
        runner.submit(chunk_task, {"jobs": list(b), "label": label([j.rel_path for j in b]), **common})
        for b in batches(jobs, config.runner.documents_per_task)
    ]
    return [c for f in futures for c in f.result().docs]


def prepare_corpus(
    config: PipelineConfig, docs: list[DocFile], model_dir: str, model_sha: str, store_url: str, clock: Stopwatch
) -> Prepared:
    """Parse, chunk, assemble and embed on the runner that config.runner names, timing each stage on `clock`."""
    with task_runner(config.runner) as runner:
        with clock.stage("parse"):
            parsed = parse_stage(runner, docs, config, store_url)
        with clock.stage("chunk"):
            chunked = chunk_stage(runner, parsed, config, model_dir, model_sha, store_url)
        with clock.stage("corpus"):
            corpus = assemble_corpus_task(chunked, store_url)
            parsed = chunk_report_task(parsed, chunked, corpus)
        with clock.stage("embed"):
            backend = choose_backend_task(config.embed.backend, config.base_model, corpus.ref, store_url)
            parameters = {
                "corpus": corpus.ref,
                "base_model": config.base_model,
                "batch_size": config.mine.embed_batch_size,
                "store_url": store_url,
                "backend": backend,
            }
            embeddings = runner.submit(embed_corpus_task, parameters).result()
    return Prepared(parsed=parsed, chunked=chunked, corpus=corpus, embeddings=embeddings, backend=backend)
