"""Models as run-store references: upload once by content, fetch into a local cache by hash, refuse what does not hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain_embed.tasks.core.model_ref import CorruptDownload, local_model, put_model
from domain_embed.tasks.core.objects import read_json
from domain_embed.tasks.embedding.models import model_fingerprint


def fake_model(folder: Path) -> Path:
    """A folder shaped like a SentenceTransformer save (nothing here loads it)."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps([{"path": "", "type": "Transformer"}]))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 8}')
    (folder / "README.md").write_text("# the library's card, not part of the model")
    return folder


def test_a_model_goes_up_once_and_comes_back_by_hash(store, tmp_path, monkeypatch):
    folder = fake_model(tmp_path / "trained")
    ref = put_model(store, folder)
    assert ref.sha256 == model_fingerprint(str(folder)) and ref.count == 3
    assert ref.uri == store.uri("models", f"{ref.sha256}.json")
    assert sorted(read_json(ref)) == ["1_Pooling/config.json", "model.safetensors", "modules.json"]
    assert put_model(store, folder) == ref  # content-addressed: the second upload is a no-op

    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "elsewhere"))
    local = Path(local_model(ref))
    assert local == tmp_path / "elsewhere" / "fetched-models" / ref.sha256
    assert model_fingerprint(str(local)) == ref.sha256 and not (local / "README.md").exists()
    assert local_model(ref) == str(local)  # cached: no second download
    assert [p.name for p in local.parent.iterdir()] == [ref.sha256]  # no temporary folder left


def test_a_corrupt_file_or_manifest_is_refused_and_nothing_is_cached(store, tmp_path, monkeypatch):
    ref = put_model(store, fake_model(tmp_path / "trained"))
    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "cache"))
    stored = Path(store.root, "models", ref.sha256, "model.safetensors")
    stored.write_bytes(stored.read_bytes()[:-1] + b"x")
    with pytest.raises(CorruptDownload, match="model.safetensors"):
        local_model(ref)
    fetched = tmp_path / "cache" / "fetched-models"
    assert not fetched.exists() or not any(fetched.iterdir())

    manifest = Path(store.root, "models", f"{ref.sha256}.json")
    manifest.write_text(manifest.read_text().replace('"modules.json"', '"modules2.json"'))
    with pytest.raises(CorruptDownload, match="manifest"):
        local_model(ref)
