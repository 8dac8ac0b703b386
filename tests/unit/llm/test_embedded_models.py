"""The embedded models: the large one joined from split packages, and a clear line when its packages are missing."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from conftest import FIXTURES

from domain_embed.flows.cli import main
from domain_embed.tasks.llm import local as local_llm
from domain_embed.tasks.llm.local import EmbeddedLLMError, join_parts, split_parts
from domain_embed.tasks.publishing.model_card import generator_line


def fake_split_package(root, prefix: str, parts: list[bytes]) -> None:
    """Packages <prefix>1..N, each holding data/partNN.bin, as the model's part packages ship them."""
    for number, data in enumerate(parts, 1):
        package = root / f"{prefix}{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{number:02d}.bin").write_bytes(data)


def test_a_model_split_over_three_packages_is_joined_once_in_order(tmp_path, monkeypatch):
    fake_split_package(tmp_path / "site", "fakemodel_part", [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 7])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = split_parts("fakemodel_part", 3)
    assert [p.name for p in parts] == ["part01.bin", "part02.bin", "part03.bin"]
    target = join_parts(parts, tmp_path / "cache" / "model.gguf")
    assert target.read_bytes() == b"GGUF" + b"a" * 1000 + b"b" * 1000 + b"c" * 7
    stamp = target.stat().st_mtime_ns
    assert join_parts(parts, target) == target and target.stat().st_mtime_ns == stamp  # joined once
    target.write_bytes(b"GGUF cut short")
    assert join_parts(parts, target).stat().st_size == 2011  # a short file is joined again
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]  # no temporary file left
    with pytest.raises(EmbeddedLLMError, match="package fakemodel-part4 is not installed"):
        split_parts("fakemodel_part", 4)


def test_a_run_naming_the_large_model_without_its_packages_fails_with_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(local_llm, "LARGE_PACKAGE", "no_such_model_part")
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FIXTURES / "docs" / "wal-intro.html", docs)
    monkeypatch.setenv("DOMAIN_EMBED_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH", ""))
    code = main(["run", str(docs), "--out", str(tmp_path / "out"), "--llm", "embedded-large"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err == (
        "domain-embed: error: llm.model 'embedded-large' needs its model packages (package no-such-model-part1 is "
        "not installed): pip install 'domain-embed[large-llm]' (or: make install-large)"
    )
    assert not (tmp_path / "out").exists()


def test_the_model_card_names_the_generator_and_its_license():
    assert generator_line("embedded-large") == (
        "Questions written by Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) (`llm.model` "
        "embedded-large, license Apache-2.0), served on this machine."
    )
    assert "SmolLM2-135M-Instruct" in generator_line("embedded") and generator_line("gpt-4o-mini").endswith(
        "through litellm."
    )
    assert sys.modules["domain_embed.tasks.llm.local"].EMBEDDED_MODELS["embedded-large"].context >= 4096
