"""Shared test setup: offline environment, a run store per test, Prefect's harness for flow tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from flows.env import set_offline_defaults

set_offline_defaults()
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="domain-embed-results-")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def store(tmp_path):
    """An empty run store in a temporary folder."""
    from tasks.store import RunStore

    return RunStore(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def base_model_dir() -> str:
    """The packaged all-MiniLM-L6-v2 folder."""
    from tasks.embed import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for flow-level tests (one per session: each start costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
