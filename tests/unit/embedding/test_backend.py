"""embed.backend: ONNX Runtime embeds as PyTorch does, from an export kept once per model hash in the run store; auto
times both once per machine and model (not for a corpus too small to repay it); the corpus embeddings are shared by
both backends."""

from __future__ import annotations

import numpy as np
import pytest

from domain_embed.tasks.embedding import backend as backends
from domain_embed.tasks.embedding.corpus import corpus_embeddings
from domain_embed.tasks.embedding.models import Backend, embed_texts, model_fingerprint, resolve_model
from domain_embed.tasks.embedding.onnx_export import stored_onnx
from domain_embed.tasks.settings import PipelineConfig

TEXTS = [
    "How do I remove a package and its configuration files?",
    "dpkg --purge removes the package together with its conffiles.",
    "x",
    "a much longer passage about archives, mirrors and release files " * 12,
]


@pytest.fixture(scope="module")
def model_dir() -> str:
    return resolve_model("all-MiniLM-L6-v2")


def test_onnx_embeds_like_torch_from_one_export_in_the_store(model_dir, store):
    onnx = embed_texts(model_dir, TEXTS, backend=Backend("onnx", store.url))
    torch = embed_texts(model_dir, TEXTS)
    assert onnx.shape == torch.shape == (len(TEXTS), 384)
    assert np.min(np.sum(onnx * torch, axis=1)) >= backends.SAME_COSINE
    exports = list(store.fs.glob(f"{store.root}/onnx/*.onnx"))
    assert len(exports) == 1  # exported into the store, keyed by the model's hash
    written = store.fs.info(exports[0])["mtime"]
    assert str(stored_onnx(model_dir, model_fingerprint(model_dir), store)) == exports[0]
    assert store.fs.info(exports[0])["mtime"] == written  # asked again: not exported again


def test_both_backends_share_the_corpus_embeddings(model_dir, store):
    corpus = store.put_jsonl("corpus", [{"chunk_id": str(i), "doc_id": "d", "text": t} for i, t in enumerate(TEXTS)])
    by_torch = corpus_embeddings(corpus, model_dir, store)
    assert corpus_embeddings(corpus, model_dir, store, backend="onnx") == by_torch  # reused, not embedded again


def test_auto_times_both_once_per_machine_and_model(model_dir, store, monkeypatch, tmp_path):
    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "machine"))  # nothing remembered yet
    texts, small = TEXTS * 4, backends.MIN_CHUNKS_TO_TIME - 1
    untimed = backends.choose_backend("auto", model_dir, store.url, texts, small)
    assert untimed["backend"] == "torch" and "too few" in untimed["reason"] and "passages_per_s" not in untimed
    assert not (tmp_path / "machine" / "backend-choices").exists()  # not remembered: a larger corpus is timed
    record = backends.choose_backend("auto", model_dir, store.url, texts, backends.MIN_CHUNKS_TO_TIME)
    assert record["backend"] in ("torch", "onnx")
    assert set(record["passages_per_s"]) == {"torch", "onnx"} and all(v > 0 for v in record["passages_per_s"].values())
    assert record["min_cosine"] >= backends.SAME_COSINE and record["cpu"]
    faster = max(record["passages_per_s"], key=record["passages_per_s"].get)
    if record["backend"] == "onnx":
        assert faster == "onnx"

    def refuse(*_args):
        raise AssertionError("timed again")

    monkeypatch.setattr(backends, "calibrate", refuse)
    assert backends.choose_backend("auto", model_dir, store.url, texts) == record  # remembered for this machine
    assert backends.choose_backend("auto", model_dir, store.url, texts, small) == record  # small corpora take it too
    assert backends.choose_backend("onnx", model_dir, store.url, texts)["backend"] == "onnx"  # the setting wins


def test_int8_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="embed.backend"):
        PipelineConfig.model_validate({"docs_dir": "d", "embed": {"backend": "onnx-int8"}})
