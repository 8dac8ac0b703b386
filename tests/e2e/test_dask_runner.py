"""The corpus stages on a Dask cluster (prefect-dask): work spread over both workers, outputs equal to the in-process run."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES
from prefect import flow

from domain_embed.flows.prepare import prepare_corpus
from domain_embed.tasks.core import Stopwatch
from domain_embed.tasks.core.objects import read_bytes
from domain_embed.tasks.embedding.models import model_fingerprint
from domain_embed.tasks.ingest.discover import discover_documents
from domain_embed.tasks.settings import PipelineConfig


@flow(name="corpus-stages")
def corpus_stages(config: PipelineConfig, model_dir: str) -> dict:
    """The pipeline's corpus stages as build-embedder runs them; returns the bytes of everything they stored."""
    docs = discover_documents(config.docs_dir, config.parse.extensions, config.parse.max_file_mb)
    prepared = prepare_corpus(config, docs, model_dir, model_fingerprint(model_dir), config.store_url, Stopwatch())
    parsed = {d.rel_path: prepared.parsed.by_sha[d.sha256] for d in docs if d.sha256}
    return {
        "parsed": {name: (p.status, p.error, read_bytes(p.ref.uri) if p.ref else None) for name, p in parsed.items()},
        "chunks": [read_bytes(c.ref.uri) for c in prepared.chunked],
        "corpus": read_bytes(prepared.corpus.ref.uri),
        "embeddings": read_bytes(prepared.embeddings.uri),
    }


def config_for(tmp_path, name: str, address: str | None) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "docs_dir": str(tmp_path / "docs"),
            "store_url": str(tmp_path / name),
            "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
            "runner": {"address": address, "documents_per_task": 1},
        }
    )


@pytest.mark.slow
@pytest.mark.extended
def test_corpus_stages_on_two_dask_workers_equal_the_in_process_run(tmp_path, base_model_dir, prefect_harness):
    from distributed import Client, LocalCluster

    shutil.copytree(FIXTURES / "docs", tmp_path / "docs")
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.7\ntruncated")
    alone = corpus_stages(config_for(tmp_path, "alone", None), base_model_dir)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True, dashboard_address=None
    ) as cluster:
        on_dask = corpus_stages(config_for(tmp_path, "dask", cluster.scheduler_address), base_model_dir)
        with Client(cluster) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed
    assert on_dask == alone
    assert alone["parsed"]["broken.pdf"][0] == "error" and len(alone["chunks"]) == 5
