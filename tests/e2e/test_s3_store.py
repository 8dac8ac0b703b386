"""A run store on an S3-protocol server (moto on 127.0.0.1): the gpu-pool worker trains "elsewhere", the parent fetches by hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import S3_ENV
from test_train_pool import gpu_worker_process, tail, tiny_dataset, train_parent

from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.core.objects import read_jsonl
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.evaluation.evaluate import evaluate_pairs
from domain_embed.tasks.settings import PipelineConfig, TrainSettings


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """Dummy credentials and the endpoint, which botocore (under s3fs) reads from AWS_ENDPOINT_URL."""
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    return {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}


@pytest.mark.slow
@pytest.mark.extended
def test_a_model_trained_by_a_worker_elsewhere_travels_through_the_s3_store(
    prefect_server_api, s3_env, tmp_path_factory, tmp_path, monkeypatch
):
    worker_home = tmp_path_factory.mktemp("elsewhere")
    only_here = ("HOME", "XDG_CACHE_HOME", "DOMAIN_EMBED_LOCAL_CACHE", "DOMAIN_EMBED_STORE", "TMPDIR")
    with gpu_worker_process(
        prefect_server_api, worker_home, {**s3_env, "HOME": str(worker_home)}, drop=only_here
    ) as log:
        store = RunStore("s3://runstore/store")
        tuples, pairs = tiny_dataset(store)
        settings = TrainSettings(
            epochs=1, batch_size=8, max_seq_length=32, deployment="train-embedder/gpu", teacher=None
        )
        result, _ = train_parent(PipelineConfig(docs_dir=str(tmp_path), train=settings), tuples, pairs, store.url)

    assert result.steps == 4 and result.model.uri.startswith("s3://runstore/store/models/"), tail(log)
    assert result.resumed_from is None
    assert (worker_home / ".cache" / "domain-embed" / "training").is_dir()  # the worker's scratch, under its own HOME

    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "pipeline-cache"))
    folder = Path(local_model(result.model))
    assert folder.parent == tmp_path / "pipeline-cache" / "fetched-models" and folder.name == result.model_sha
    assert not folder.is_relative_to(worker_home)

    rows = read_jsonl(tuples)
    chunks = [{"chunk_id": f"c{i}", "doc_id": f"d{i}", "text": row["positive"]} for i, row in enumerate(rows)]
    questions = [{"query": row["anchor"], "chunk_id": f"c{i}", "doc_id": f"d{i}"} for i, row in enumerate(rows)]
    report = evaluate_pairs(
        {"tuned": str(folder)}, questions, chunks, dims=[384, 64]
    )  # evaluated here, trained elsewhere
    assert report.queries == 24 and report.results["tuned"][384]["ndcg@10"] > 0.5
