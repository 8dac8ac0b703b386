"""Training on the `gpu` work pool for real: server, pool from deployments/gpu.json, prefect.yaml's train-embedder/gpu, a worker."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, kill_group
from prefect import flow
from prefect.context import get_run_context
from sentence_transformers import SentenceTransformer

from domain_embed.flows.pipeline import run_training
from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.settings import PipelineConfig, TrainSettings
from domain_embed.tasks.training.fit import TrainResult

TOPICS = ["index", "vacuum", "wal", "replication", "planner", "trigger"]


@flow(name="train-parent")
def train_parent(config: PipelineConfig, tuples, pairs, store_url: str) -> tuple[TrainResult, str]:
    """Stands in for build-embedder: trains through run_training and says which flow run it was."""
    return run_training(config, tuples, pairs, store_url), str(get_run_context().flow_run.id)


def tail(log: Path) -> str:
    """The end of a log file, for failure messages."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""


@contextlib.contextmanager
def gpu_worker_process(
    api: str, home: Path, env_updates: dict | None = None, drop: tuple[str, ...] = ()
) -> Iterator[Path]:
    """The gpu pool from deployments/gpu.json, train-embedder/gpu deployed from prefect.yaml, and a process worker
    started in `home` (its working directory); yields the worker's log.

    The worker has its own PREFECT_HOME and result storage, as on another machine, and no CUDA_VISIBLE_DEVICES
    of its own: the flow run gets that from the pool's job variables. `drop` removes more variables, `env_updates` sets some.
    """
    unset = ("PREFECT_API_KEY", "PREFECT_PROFILE", "CUDA_VISIBLE_DEVICES", *drop)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        PREFECT_API_URL=api,
        PREFECT_HOME=str(home / "prefect"),
        DOMAIN_EMBED_ROOT=str(ROOT),
        DOMAIN_EMBED_DOCS=str(home),
        **(env_updates or {}),
    )
    pools = [sys.executable, str(ROOT / "deployments" / "pools.py")]
    deploy = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "gpu"]
    for argv in (pools, deploy):
        step = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
    worker_env = {
        **env,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "results"),
    }
    with open(home / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                "gpu",
                "--type",
                "process",
                "--name",
                "test-gpu-worker",
            ],
            env=worker_env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield home / "worker.log"
    finally:
        kill_group(worker)


@pytest.fixture(scope="module")
def gpu_worker(prefect_server_api, tmp_path_factory):
    """A gpu-pool worker with its own PREFECT_HOME and result storage."""
    with gpu_worker_process(prefect_server_api, tmp_path_factory.mktemp("gpu-worker")) as log:
        yield log


def tiny_dataset(store):
    tuples = [
        {
            "anchor": f"how does {TOPICS[i % 6]} {i} work",
            "positive": f"The {TOPICS[i % 6]} feature, item {i}, keeps state about {TOPICS[i % 6]} data.",
            "negative_1": f"The {TOPICS[(i + 2) % 6]} feature is unrelated to item {i}.",
        }
        for i in range(24)
    ]
    pairs = [{"anchor": f"what is {t}", "positive": f"{t} is a PostgreSQL concept."} for t in TOPICS[:4]]
    return store.put_jsonl("tuples", tuples), store.put_jsonl("pairs", pairs)


@pytest.mark.slow
@pytest.mark.extended  # a worker and a deployment run; test_parent_run.py runs one too
def test_run_training_runs_the_deployment_on_the_gpu_pool_as_a_linked_subflow(
    gpu_worker, prefect_server_api, store, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        DeploymentFilter,
        DeploymentFilterId,
    )

    tuples, pairs = tiny_dataset(store)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=32, deployment="train-embedder/gpu", teacher=None)
    config = PipelineConfig(docs_dir=str(tmp_path), train=settings)

    result, parent_id = train_parent(config, tuples, pairs, store.url)

    assert isinstance(result, TrainResult)
    assert result.examples == 28 and result.steps == 4 and result.dims == [384, 256, 128, 64]
    assert result.model.uri.startswith(store.root)
    assert SentenceTransformer(local_model(result.model), device="cpu").encode(["a query"]).shape == (1, 384)
    assert result.cuda_visible_devices == "0", tail(gpu_worker)  # the gpu pool's job variable reached the flow run

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("train-embedder/gpu")
        assert (deployment.entrypoint, deployment.work_pool_name) == (
            "domain_embed.flows.deployed:train_embedder",
            "gpu",
        )  # prefect.yaml's
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        assert len(runs) == 1, tail(gpu_worker)
        child = runs[0]
        assert child.state_type.value == "COMPLETED"
        assert (child.work_pool_name, child.work_queue_name) == ("gpu", "default")
        assert child.parameters["settings"]["deployment"] is None
        host_pid = str(child.infrastructure_pid or "")
        assert host_pid and int(host_pid.rsplit(":", 1)[-1]) != os.getpid()  # a process the worker started
        assert child.parent_task_run_id is not None
        assert str(client.read_task_run(child.parent_task_run_id).flow_run_id) == parent_id
        for run_id in (child.id, parent_id):  # the parent's Artifacts tab shows the sub-flow's training report too
            reports = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=["training-report"])
                )
            )
            assert len(reports) == 1 and "Loss went from" in reports[0].data
