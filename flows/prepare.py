"""The corpus stages of build-embedder: parse and chunk in batches of documents, assemble, embed, on the configured runner."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator, Sequence, TypeVar

from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from domain_embed.flows.config import PipelineConfig
from domain_embed.tasks.chunk import ChunkedDoc, ChunkJob, chunk_task, no_chunk_reason
from domain_embed.tasks.corpus import Corpus, assemble_corpus_task, embed_corpus_task
from domain_embed.tasks.discover import DocFile, DocsNotFound
from domain_embed.tasks.embed import max_seq_length
from domain_embed.tasks.parse import ParsedDoc, parse_task
from domain_embed.tasks.reports import histogram, publish_table
from domain_embed.tasks.settings import RunnerSettings
from domain_embed.tasks.store import Ref

T = TypeVar("T")


class Parsed(BaseModel):
    """Parse results by content hash, the documents that parsed, one report row per file found, and cache hits."""

    by_sha: dict[str, ParsedDoc]
    ok_docs: list[DocFile]
    rows: list[dict]
    cached: int


class Stopwatch:
    """Wall time per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 2)


class Prepared(BaseModel):
    """The corpus stages' results: parsed documents, chunked ones in document order, the corpus and its embeddings."""

    parsed: Parsed
    chunked: list[ChunkedDoc]
    corpus: Corpus
    embeddings: Ref


def task_runner(settings: RunnerSettings) -> TaskRunner:
    """DaskTaskRunner on the cluster at settings.address, else settings.threads threads (one per core) in this process."""
    if not settings.address:
        return ThreadPoolTaskRunner(max_workers=settings.threads or os.cpu_count() or 1)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=settings.address)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def label(names: Sequence[str]) -> str:
    """A task-run label for a batch: its first document and how many follow."""
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"


def parse_report_rows(docs: list[DocFile], parsed: dict[str, ParsedDoc]) -> list[dict]:
    """One row per file found: type, elements, chars, status or the reason it was skipped, and how it was read if unusual."""
    rows = []
    for doc in docs:
        result = parsed.get(doc.sha256 or "")
        if doc.skipped:
            status = f"skipped: {doc.skipped}"
        elif result is None or result.status != "ok":
            status = f"error: {result.error if result else 'not parsed'}"
        else:
            status = "ok"
        ok = result is not None and result.status == "ok" and not doc.skipped
        rows.append(
            {"file": doc.rel_path, "type": doc.ext.lstrip(".") or "-", "bytes": doc.size,
             "elements": result.elements if ok else 0, "chars": result.chars if ok else 0, "status": status,
             "note": (result.note if ok else None) or ""}
        )  # fmt: skip
    return rows


def parse_stage(runner: TaskRunner, docs: list[DocFile], config: PipelineConfig, store_url: str) -> Parsed:
    """Every non-skipped document parsed in tasks of documents_per_task; the parse-report artifact accounts for every file."""
    todo = [d for d in docs if not d.skipped]
    groups = list(batches(todo, config.runner.documents_per_task))
    futures = [runner.submit(parse_task, {"docs": list(b), "label": label([d.rel_path for d in b]), "settings": config.parse,
                                          "store_url": store_url}) for b in groups]  # fmt: skip
    results = [f.result() for f in futures]
    parsed = {d.sha256: p for b, r in zip(groups, results) for d, p in zip(b, r.docs)}
    rows = parse_report_rows(docs, parsed)
    publish_table("parse-report", rows, "Every file found: parsed, or skipped with the reason")
    ok_docs = [d for d in todo if parsed[d.sha256].status == "ok"]
    cached = sum(r.cached for r in results)
    get_run_logger().info("Parsed %d of %d files (%d skipped or failed; %d from cache)", len(ok_docs), len(docs),
                          len(docs) - len(ok_docs), cached)  # fmt: skip
    if not ok_docs:
        raise DocsNotFound(f"none of the {len(docs)} files in {config.docs_dir} could be parsed: see parse-report")
    return Parsed(by_sha=parsed, ok_docs=ok_docs, rows=rows, cached=cached)


def chunk_stage(runner: TaskRunner, parsed: Parsed, config: PipelineConfig, model_dir: str, model_sha: str,
                store_url: str) -> tuple[list[ChunkedDoc], int]:  # fmt: skip
    """Every parsed document chunked in tasks of documents_per_task; returns them in document order and the cache hits."""
    jobs = [ChunkJob(elements=parsed.by_sha[d.sha256].ref, doc_sha=d.sha256, rel_path=d.rel_path) for d in parsed.ok_docs]
    common = {"settings": config.chunk, "model_dir": model_dir, "model_sha": model_sha, "max_tokens": max_seq_length(model_dir),
              "store_url": store_url}  # fmt: skip
    futures = [runner.submit(chunk_task, {"jobs": list(b), "label": label([j.rel_path for j in b]), **common})
               for b in batches(jobs, config.runner.documents_per_task)]  # fmt: skip
    results = [f.result() for f in futures]
    return [c for r in results for c in r.docs], sum(r.cached for r in results)


def account_for_chunks(parsed: Parsed, chunked: list[ChunkedDoc]) -> Parsed:
    """Parsed documents that gave no chunk get the chunk stage's reason as their report status, instead of 'ok'."""
    reasons = {d.rel_path: no_chunk_reason(c) for d, c in zip(parsed.ok_docs, chunked) if not c.chunks}
    rows = [{**row, "status": reasons.get(row["file"], row["status"])} for row in parsed.rows]
    return parsed.model_copy(update={"rows": rows})


def corpus_stage(parsed: Parsed, chunked: list[ChunkedDoc], cached: int, store_url: str) -> Corpus:
    """The corpus of all documents' chunks, with the chunk-report artifact (chunks per document, token lengths)."""
    corpus = assemble_corpus_task(chunked, store_url)
    names = {d.sha256[:16]: d.rel_path for d in parsed.ok_docs}
    rows = [{"file": names[c.sha256[:16]], "chunks": c.chunks, "dropped": ", ".join(f"{k}: {v}" for k, v in c.dropped.items()) or "-"}
            for c in chunked]  # fmt: skip
    rows.append({"file": "(whole corpus)", "chunks": corpus.chunks,
                 "dropped": ", ".join(f"{k}: {v}" for k, v in corpus.dropped.items()) or "-"})  # fmt: skip
    lengths = [n for c in chunked for n in c.token_lengths]
    rows += [{"file": f"tokens {k}", "chunks": v, "dropped": ""} for k, v in histogram(lengths, [0, 32, 64, 128, 192, 256]).items()]
    publish_table("chunk-report", rows, "Chunks per document and the chunk token-length histogram")
    get_run_logger().info("Chunked %d documents into %d chunks (%d documents from cache)", len(chunked), corpus.chunks, cached)
    if not corpus.chunks:
        raise DocsNotFound(f"none of the {len(chunked)} parsed documents gave a chunk: see chunk-report")
    return corpus


def embed_stage(runner: TaskRunner, corpus: Corpus, config: PipelineConfig, store_url: str) -> Ref:
    """The corpus embedded with the base model on the runner, cached in the run store where mining finds it."""
    parameters = {"corpus": corpus.ref, "base_model": config.base_model, "batch_size": config.mine.embed_batch_size,
                  "store_url": store_url}  # fmt: skip
    return runner.submit(embed_corpus_task, parameters).result()


def prepare_corpus(config: PipelineConfig, docs: list[DocFile], model_dir: str, model_sha: str, store_url: str,
                   clock: Stopwatch) -> Prepared:  # fmt: skip
    """Parse, chunk, assemble and embed on the runner that config.runner names, timing each stage on `clock`."""
    with task_runner(config.runner) as runner:
        with clock.stage("parse"):
            parsed = parse_stage(runner, docs, config, store_url)
        with clock.stage("chunk"):
            chunked, cached = chunk_stage(runner, parsed, config, model_dir, model_sha, store_url)
            parsed = account_for_chunks(parsed, chunked)
        with clock.stage("corpus"):
            corpus = corpus_stage(parsed, chunked, cached, store_url)
        with clock.stage("embed"):
            embeddings = embed_stage(runner, corpus, config, store_url)
    return Prepared(parsed=parsed, chunked=chunked, corpus=corpus, embeddings=embeddings)
