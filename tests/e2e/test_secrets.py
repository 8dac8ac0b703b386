"""The LLM API key reaches the provider and nothing else: no log, artifact, cached result, store file or report."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from llm_stub import LLMStub

from domain_embed.flows.pipeline import build_embedder
from domain_embed.tasks.llm.errors import LLMFatalError
from domain_embed.tasks.settings import PipelineConfig

KEY = "sk-domain-embed-SECRET-123456"
KEY_ENV = "DOMAIN_EMBED_TEST_LLM_KEY"


class KeyRecordingStub(LLMStub):
    """The stub LLM, also recording the Authorization header of every request."""

    def start(self) -> KeyRecordingStub:
        self.authorizations: list[str] = []
        super().start()
        handler = self._server.RequestHandlerClass
        serve = handler.do_POST

        def do_post(request) -> None:
            self.authorizations.append(request.headers.get("Authorization", ""))
            serve(request)

        handler.do_POST = do_post
        return self


def config_for(root: Path, stub: LLMStub, **llm) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "docs_dir": str(root / "docs"),
            "out_dir": str(root / "out"),
            "store_url": str(root / "store"),
            "llm": {
                "model": "openai/stub-model",
                "api_base": stub.api_base,
                "api_key_env": KEY_ENV,
                "questions_per_chunk": 1,
                **llm,
            },
            "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
            "filter": {"roundtrip_top_k": 0},
            "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "teacher": None},
            "split": {"eval_fraction": 0.4},
        }
    )


def files_holding(folder: Path, secret: bytes) -> list[str]:
    """Every file under folder (recursively, as bytes) that contains the secret."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


def run_records(flow_run_id) -> tuple[list[str], list[str]]:
    """The flow run's log messages and its artifacts (key, description, data) as read back through the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while page := client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=offset
        ):
            logs += [f"{log.name} {log.message}" for log in page]
            offset += len(page)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return logs, [f"{a.key} {a.type} {a.description} {a.data}" for a in artifacts]


def results_folder() -> Path:
    """Where Prefect persists task results in this process (its settings, not a later change of the variable)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path)


def prefect_database() -> list[Path]:
    """The harness's SQLite database files: parameters, states, results, logs and artifacts of every run."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    return [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]


def assert_no_key_anywhere(root: Path, flow_run_id, captured: str) -> tuple[list[str], list[str]]:
    """Zero hits for the key in logs (captured and through the API), artifacts, results, store, outputs and the API database."""
    logs, artifacts = run_records(flow_run_id)
    assert KEY not in captured
    assert not [line for line in logs if KEY in line]
    assert not [a for a in artifacts if KEY in a]
    for folder in (results_folder(), root / "store", root / "out"):
        assert files_holding(folder, KEY.encode()) == []
    database = b"".join(p.read_bytes() for p in prefect_database())
    assert KEY.encode() not in database
    assert KEY_ENV.encode() in database  # the search does see the run's parameters
    return logs, artifacts


@pytest.fixture
def docs_root(tmp_path):
    (tmp_path / "docs").mkdir()
    for name in ("tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, tmp_path / "docs")
    return tmp_path


def test_the_key_is_sent_to_the_llm_and_written_nowhere(docs_root, prefect_harness, monkeypatch, caplog, capfd):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    with KeyRecordingStub() as stub:
        state = build_embedder(config_for(docs_root, stub), return_state=True)
        assert state.is_completed(), state.message
        authorizations = stub.authorizations

        assert authorizations and set(authorizations) == {f"Bearer {KEY}"}
        out, err = capfd.readouterr()
        logs, artifacts = assert_no_key_anywhere(docs_root, state.state_details.flow_run_id, caplog.text + out + err)
        assert any(re.search(r"Parsed \d+ documents", line) for line in logs)  # the run logs were read
        assert {a.split()[0] for a in artifacts} >= {"parse-report", "qa-report", "build-report"}
        assert list(results_folder().iterdir())
        assert list((docs_root / "store" / "qa-cache").rglob("*.json"))

        # a rejected key: the run stops after one call, naming the variable; the provider's echo of the key is scrubbed
        caplog.clear()
        with KeyRecordingStub(faults=["401"] * 50) as rejecting:
            state = build_embedder(config_for(docs_root, rejecting, temperature=0.3), return_state=True)
            assert rejecting.count() == 1 and rejecting.authorizations == [f"Bearer {KEY}"]
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, LLMFatalError)
    assert KEY_ENV in str(error) and "401" in str(error) and KEY not in str(error)
    out, err = capfd.readouterr()
    logs, _ = assert_no_key_anywhere(
        docs_root, state.state_details.flow_run_id, caplog.text + out + err + str(state.message)
    )
    assert any("Incorrect API key provided: ***" in line for line in logs)
