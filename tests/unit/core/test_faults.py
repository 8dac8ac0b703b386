"""Prefect retries only transient failures: bad data or configuration fails at once, a connection error is retried."""

from __future__ import annotations

import errno

import pytest
from prefect import task

from domain_embed.tasks.core.faults import is_transient, retry_if_transient
from domain_embed.tasks.embedding.models import model_fingerprint
from domain_embed.tasks.evaluation.evaluate import evaluate_beir_task, evaluate_task
from domain_embed.tasks.ingest.chunk import chunk_task
from domain_embed.tasks.ingest.parse import ParseError, parse_task
from domain_embed.tasks.llm.errors import LLMFatalError, LLMRejectedError, LLMTransientError
from domain_embed.tasks.mining.mine import mine_task
from domain_embed.tasks.questions.generate import generate_task
from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.training import train_task

RETRIED_TASKS = [parse_task, chunk_task, generate_task, mine_task, train_task, evaluate_task, evaluate_beir_task]


@pytest.mark.parametrize("task_", RETRIED_TASKS, ids=lambda t: t.name)
def test_every_retried_task_retries_only_transient_errors(task_):
    assert task_.retries >= 1
    assert task_.retry_condition_fn is retry_if_transient


@pytest.mark.parametrize(
    "error, transient",
    [
        (ValueError("only 1 training example(s): need at least 2"), False),
        (ParseError("corrupt or truncated PDF"), False),
        (KeyError("chunk_id"), False),
        (FileNotFoundError("docs/a.pdf"), False),
        (LLMFatalError("401 wrong key"), False),
        (LLMRejectedError("400 context window"), False),
        (LLMTransientError("gave up after 6 attempts: 503"), False),  # the LLM client's own retries are spent
        (ConnectionError("connection refused"), True),
        (TimeoutError("read timed out"), True),
        (RuntimeError("CUDA error: an illegal memory access"), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),  # a full disk stays full: the run says so at once
        (OSError(errno.EIO, "Input/output error"), True),
    ],
)
def test_permanent_and_transient_errors(error, transient):
    assert is_transient(error) is transient


@pytest.mark.parametrize("error, attempts", [(ValueError("bad data"), 1), (ConnectionError("connection reset"), 3)])
def test_a_task_run_retries_only_a_transient_error(prefect_harness, error, attempts):
    calls = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky() -> None:
        calls.append(1)
        raise error

    state = flaky(return_state=True)
    assert state.is_failed()
    assert len(calls) == attempts


def test_training_with_one_example_fails_at_once(prefect_harness, store, base_model_dir, monkeypatch):
    import domain_embed.tasks.training.task as training_task

    calls = []
    real_train_model = training_task.train_model
    monkeypatch.setattr(training_task, "train_model", lambda *a, **k: calls.append(1) or real_train_model(*a, **k))
    tuples = store.put_jsonl(
        "tuples", [{"anchor": "what is wal", "positive": "The write-ahead log.", "negative_1": "Vacuum."}]
    )
    pairs = store.put_jsonl("pairs", [])
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=32)
    state = train_task(
        tuples, pairs, "all-MiniLM-L6-v2", model_fingerprint(base_model_dir), settings, store.url, return_state=True
    )
    assert state.is_failed() and "only 1 training example(s)" in state.message
    assert len(calls) == 1


def test_a_failed_training_deployment_names_the_childs_reason():
    from prefect.states import Cancelled, Crashed, Failed

    from domain_embed.flows.pipeline import sub_flow_failure

    child = Failed(
        message="Flow run encountered an exception: ValueError: only 1 training example(s): need at least 2"
    )
    assert sub_flow_failure("train-embedder/gpu", child) == (
        "training deployment train-embedder/gpu ended Failed: ValueError: only 1 training example(s): need at least 2"
    )
    crashed = Crashed(message="Flow run infrastructure exited with non-zero status code -9.")
    assert sub_flow_failure("train-embedder/gpu", crashed).endswith(
        "ended Crashed: Flow run infrastructure exited with non-zero status code -9."
    )
    assert (
        sub_flow_failure("train-embedder/gpu", Cancelled(message=""))
        == "training deployment train-embedder/gpu ended Cancelled"
    )
    assert sub_flow_failure("train-embedder/gpu", None) == "training deployment train-embedder/gpu ended without state"
