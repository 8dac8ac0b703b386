"""Config errors stop at once, with one line naming the problem, before any cost is spent."""

from __future__ import annotations

import json
import os
import shutil

import prefect  # noqa: F401  (imported at collection, so its log handler never binds to one test's captured stream)
import pytest
from conftest import FIXTURES
from llm_stub import DeadEndpoint

from domain_embed.flows.cli import main


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(FIXTURES / "docs" / "wal-intro.html", folder)
    return folder


@pytest.fixture(autouse=True)
def pinned_store_env(monkeypatch, tmp_path):
    """main() points the process at a run store: keep that from leaking into later tests."""
    monkeypatch.setenv("DOMAIN_EMBED_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(["run", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--base-model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--dims", "512,128"], "matryoshka dims [512] are not between 1 and the model's dimension 384"),
        (["--llm", "not-a-provider-model-xyz"], "unknown LLM 'not-a-provider-model-xyz'"),
        (
            ["--llm", "openai/gpt-4o-mini", "--api-key-env", "DOMAIN_EMBED_TEST_MISSING_KEY"],
            "DOMAIN_EMBED_TEST_MISSING_KEY",
        ),
    ],
)
def test_bad_settings_fail_with_one_line(docs, tmp_path, capsys, monkeypatch, extra, expected):
    monkeypatch.delenv("DOMAIN_EMBED_TEST_MISSING_KEY", raising=False)
    code, err = run_cli([docs, "--out", tmp_path / "out", "--store", tmp_path / "store", *extra], capsys)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_empty_folder_and_unsupported_files(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli([empty, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "no supported document" in err
    (empty / "photo.png").write_bytes(b"\x89PNG")
    code, err = run_cli([empty, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "no supported document" in err and "1 files" in err
    code, err = run_cli([tmp_path / "missing", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "docs folder not found" in err


@pytest.mark.parametrize(
    "config, extra, expected",
    [
        ('{"bogus_field": 1}', [], "bogus_field: unknown setting (not a field of PipelineConfig)"),
        ('{"train": {"epoch": 2}}', [], "train.epoch: unknown setting (not a field of TrainSettings)"),
        ('{"train": {"batch_size": 1}}', [], "train.batch_size: input should be greater than or equal to 2, got 1"),
        ("[1, 2]", [], "expected a JSON object of PipelineConfig fields, found list"),
        ("{not json", [], "not valid JSON"),
        ("{}", ["--epochs", "-1"], "--epochs (train.epochs): input should be greater than 0, got -1.0"),
    ],
)
def test_invalid_settings_are_one_line_naming_the_field(docs, tmp_path, capsys, config, extra, expected):
    config_file = tmp_path / "config.json"
    config_file.write_text(config)
    code, err = run_cli([docs, "--out", tmp_path / "out", "--config", config_file, *extra], capsys)
    assert code == 2
    assert err.startswith("domain-embed: error: ") and expected in err
    assert err.count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_a_hosted_llm_without_its_key_stops_before_any_cost(docs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def cost(*args, **kwargs):
        raise AssertionError("documents read or Prefect server started before the key check")

    monkeypatch.setattr("domain_embed.tasks.checks.discover_documents", cost)
    monkeypatch.setattr("domain_embed.flows.local_api.prepare_local_api", cost)
    code, err = run_cli([docs, "--out", tmp_path / "out", "--llm", "gpt-4o-mini"], capsys)
    assert code == 2
    assert (
        err
        == "domain-embed: error: no API key for gpt-4o-mini: set OPENAI_API_KEY (or name the variable that holds it with --api-key-env)"
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set")
    with pytest.raises(
        AssertionError, match="before the key check"
    ):  # with the key, the run goes on to read the documents
        run_cli([docs, "--out", tmp_path / "out", "--llm", "gpt-4o-mini"], capsys)


@pytest.mark.slow
@pytest.mark.extended  # the stop itself is tested in tests/unit/questions/test_generate.py
def test_a_dead_llm_endpoint_stops_the_run_after_10_requests(docs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOMAIN_EMBED_TEST_KEY", "sk-test")
    quick = (
        tmp_path / "quick.json"
    )  # shorter pauses between the probes of the dead endpoint (0.1 s doubling, not 0.5 s)
    quick.write_text(json.dumps({"llm": {"backoff_base_s": 0.1}}))
    with DeadEndpoint() as dead:
        code, err = run_cli(
            [
                docs,
                "--out",
                tmp_path / "out",
                "--store",
                tmp_path / "store",
                "--llm",
                "openai/x",
                "--api-base",
                dead.api_base,
                "--api-key-env",
                "DOMAIN_EMBED_TEST_KEY",
                "--config",
                quick,
            ],
            capsys,
        )
    last = err.splitlines()[-1]  # above it: the run's own log lines
    assert code == 1 and sum(line.startswith("domain-embed: error:") for line in err.splitlines()) == 1
    assert last.startswith(
        "domain-embed: error: the LLM failed: stopped generating: openai/x: 10 requests in a row got no answer"
    )
    assert "chunks answered and cached so far, a re-run resumes from there" in last
    assert dead.connections == 10  # README: stops after 10 failures in a row


def test_every_option_of_every_command_says_what_it_does(capsys):
    import argparse

    from domain_embed.flows.cli import build_parser

    def silent(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += silent(sub, f"{path} {name}")
            elif not action.help and action.dest != "help":
                found.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return found

    assert silent(build_parser(), "domain-embed") == []
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "domain-embed 0.1.0"


def test_max_cost_refuses_a_run_that_the_plan_prices_higher_before_any_llm_call(docs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOMAIN_EMBED_TEST_KEY", "sk-test")
    hosted = ["--llm", "openai/gpt-4o-mini", "--api-key-env", "DOMAIN_EMBED_TEST_KEY"]
    with DeadEndpoint() as dead:
        common = [docs, "--out", tmp_path / "out", "--store", tmp_path / "store", *hosted, "--api-base", dead.api_base]
        code, err = run_cli([*common, "--max-cost", "0.0000001"], capsys)
        assert dead.connections == 0
    assert code == 2 and err.count("\n") == 0
    assert "over llm.max_cost_usd (--max-cost) $1e-07" in err and "LLM calls" in err
    assert not (tmp_path / "out" / "report.json").exists() and not (tmp_path / "store" / "qa-cache").exists()
    assert main(["plan", *map(str, common), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["llm_calls"] > 0 and 0 < plan["cost_usd"] < 0.01  # gpt-4o-mini's price in litellm's map
