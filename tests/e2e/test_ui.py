"""The Prefect UI in a real headless Chromium: a finished build-embedder run is listed, and its evaluation report is shown."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, api_post
from llm_stub import LLMStub

from domain_embed.tasks.settings import PipelineConfig

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 60_000


def output_dir() -> Path:
    """Where screenshots go: $DOMAIN_EMBED_TEST_OUTPUT, else test-output/ in the repository (gitignored)."""
    folder = Path(os.environ.get("DOMAIN_EMBED_TEST_OUTPUT") or ROOT / "test-output") / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, checked before any server starts: skipped when it or Playwright is missing, failed in CI."""
    path = shutil.which("chromium")
    missing = "Chromium (apt-get install chromium)" if not path else None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package (pip install -e '.[test]')"
    if missing and os.environ.get("CI"):
        pytest.fail(f"browser test needs {missing}")
    if missing:
        pytest.skip(f"browser test needs {missing}")
    return path


def fast_config(root: Path, stub: LLMStub) -> PipelineConfig:
    """build-embedder on the fixture corpus's three text documents with the stub LLM: the UI is tested, not parsing."""
    (root / "docs").mkdir()
    for name in ("wal-intro.html", "tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, root / "docs")
    return PipelineConfig.model_validate(
        {
            "docs_dir": str(root / "docs"),
            "out_dir": str(root / "out"),
            "store_url": str(root / "store"),
            "llm": {
                "model": "openai/stub-model",
                "api_base": stub.api_base,
                "api_key_env": "STUB_LLM_KEY",
                "questions_per_chunk": 1,
            },
            "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
            "filter": {"roundtrip_top_k": 10},
            "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "teacher": None},
            "split": {"eval_fraction": 0.4},
        }
    )


@pytest.fixture(scope="module")
def finished_run(prefect_server_api, tmp_path_factory) -> dict:
    """One finished build-embedder run on the module's server: its flow run as the API returns it."""
    from domain_embed.flows.pipeline import build_embedder

    with pytest.MonkeyPatch.context() as patch, LLMStub() as stub:
        patch.setenv("STUB_LLM_KEY", "sk-stub-secret")
        state = build_embedder(fast_config(tmp_path_factory.mktemp("ui-run"), stub), return_state=True)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)
    runs = api_post(prefect_server_api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
    return runs[0]


def show_build_report(page, finished_run: dict, api: str, shots: Path) -> None:
    """The build-report artifact's NDCG@10 chart renders as an image of real size, and no table is cut off."""
    from playwright.sync_api import expect

    wanted = {"key": {"any_": ["build-report"]}, "flow_run_id": {"any_": [finished_run["id"]]}}
    artifact = api_post(api, "/artifacts/filter", {"artifacts": wanted})[0]
    page.goto(api.removesuffix("/api") + f"/artifacts/artifact/{artifact['id']}")
    chart = page.locator("img[alt^='NDCG@10 per dimension']").first
    expect(chart).to_be_visible()
    size = chart.evaluate(
        "img => ({natural: img.naturalWidth, width: img.getBoundingClientRect().width, height: img.getBoundingClientRect().height})"
    )
    assert size["natural"] >= 400 and size["width"] >= 200 and size["height"] >= 80, size
    page.screenshot(path=str(shots / "build-report.png"), full_page=True)
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('table')].filter(t => {
            let box = t.parentElement;
            while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
            if (box && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) return false;
            const limit = box ? Math.min(box.getBoundingClientRect().right, window.innerWidth) : window.innerWidth;
            return t.getBoundingClientRect().right > limit + 1;
        }).length"""
    )
    assert clipped == 0, f"{clipped} table(s) wider than the page with no way to scroll to their last column"


@pytest.mark.slow
def test_finished_run_is_listed_and_its_evaluation_report_is_shown(
    chromium, prefect_server_api, finished_run, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    wanted = {"key": {"any_": ["evaluation-report"]}, "flow_run_id": {"any_": [finished_run["id"]]}}
    artifacts = api_post(prefect_server_api, "/artifacts/filter", {"artifacts": wanted})
    assert len(artifacts) == 1 and artifacts[0]["type"] == "table"
    rows = json.loads(artifacts[0]["data"])
    assert {"dataset", "dim", "model", "NDCG@10"} <= set(rows[0]) and {r["model"] for r in rows} >= {"base", "tuned"}

    base = prefect_server_api.removesuffix("/api")
    shots = output_dir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 960},
        )
        blocked: list[str] = []

        def local_only(route) -> None:  # only the test server is reachable (the UI's analytics SDK calls out on load)
            if route.request.url.startswith(base):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        browser.route("**/*", local_only)
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(base + "/")
            page.get_by_role("link", name="Runs", exact=True).first.click()
            run_link = page.get_by_role("link", name=finished_run["name"], exact=True).first
            expect(run_link).to_be_visible()
            page.screenshot(path=str(shots / "runs.png"))
            run_link.click()
            expect(page).to_have_url(re.compile(rf"/runs/flow-run/{finished_run['id']}(\?|$)"))
            page.get_by_role("tab", name="Artifacts").click()
            expect(page.get_by_text("evaluation-report").first).to_be_visible()
            page.screenshot(path=str(shots / "flow-run-artifacts.png"), full_page=True)
            page.get_by_text("evaluation-report").first.click()
            page.get_by_role("link", name=artifacts[0]["id"][:8]).click()
            expect(page).to_have_url(re.compile(rf"/artifacts/artifact/{artifacts[0]['id']}(\?|$)"))
            expect(page.get_by_text("NDCG@10", exact=True).first).to_be_visible()
            expect(page.get_by_text(str(rows[0]["NDCG@10"]), exact=True).first).to_be_visible()
            expect(page.get_by_role("link", name=finished_run["name"], exact=True)).to_be_visible()
            page.screenshot(path=str(shots / "evaluation-report.png"), full_page=True)
            show_build_report(page, finished_run, prefect_server_api, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
            (shots / "blocked-requests.txt").write_text("".join(f"{url}\n" for url in blocked))
    for name in ("runs.png", "flow-run-artifacts.png", "evaluation-report.png", "build-report.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (shots / name).stat().st_size > 10_000
