"""Hub ids (ORG/NAME[@revision]) resolve from a real Hugging Face cache folder, offline; a missing one fails in one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import FIXTURES

from domain_embed.flows.cli import main
from domain_embed.tasks.core.env import set_offline_defaults
from domain_embed.tasks.embedding import ModelNotFound, model_fingerprint, model_source, resolve_model

REVISION = "3c2f1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"


def hub_cache_from(model_dir: str, home: Path, repo: str) -> Path:
    """The layout huggingface_hub writes: blobs named by hash, a snapshot of relative links to them, refs/main."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / REVISION
    for file in Path(model_dir).rglob("*"):
        if not file.is_file():
            continue
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch, base_model_dir):
    home = tmp_path / "hf-home"
    hub_cache_from(base_model_dir, home, "acme/minilm-domain")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("DOMAIN_EMBED_ONLINE", raising=False)
    return home


def test_a_hub_id_resolves_offline_from_the_cache_to_the_same_model(hf_home, base_model_dir):
    folder = resolve_model("acme/minilm-domain")
    assert Path(folder).name == REVISION and str(hf_home) in folder
    assert model_fingerprint(folder) == model_fingerprint(base_model_dir)
    assert resolve_model(f"acme/minilm-domain@{REVISION}") == folder
    source = model_source("acme/minilm-domain")
    assert source["revision"] == REVISION and source["fingerprint"] == model_fingerprint(base_model_dir)
    assert model_source("all-MiniLM-L6-v2")["revision"] is None


def test_a_hub_id_missing_offline_names_the_id_the_cache_and_online(hf_home):
    with pytest.raises(ModelNotFound) as caught:
        resolve_model("acme/not-downloaded")
    message = str(caught.value)
    assert "acme/not-downloaded" in message and str(hf_home / "hub") in message and "--online" in message


def test_the_cli_stops_on_a_missing_hub_id_with_one_line_before_any_cost(hf_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOMAIN_EMBED_STORE", str(tmp_path / "store"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "wal.html").write_bytes((FIXTURES / "docs" / "wal-intro.html").read_bytes())
    code = main(["run", str(docs), "--base-model", "acme/not-downloaded", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "acme/not-downloaded" in err and "--online" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "store" / "qa-cache").exists()


def test_online_leaves_the_hub_reachable_and_telemetry_off(monkeypatch):
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOMAIN_EMBED_ONLINE", "1")
    set_offline_defaults()
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    monkeypatch.delenv("DOMAIN_EMBED_ONLINE")
    set_offline_defaults()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
