"""Each embedding is computed once: the corpus under the base model (prepare, mining, the round-trip filter and
evaluation read it), under the tuned model (evaluation computes it, publishing's index reads it)."""

from __future__ import annotations

import shutil

import numpy as np

import domain_embed.tasks.embedding.corpus as corpus_module
import domain_embed.tasks.evaluation.retrieval as retrieval
from domain_embed.tasks.core.objects import read_npy
from domain_embed.tasks.embedding.corpus import corpus_embeddings
from domain_embed.tasks.embedding.models import embed_texts
from domain_embed.tasks.evaluation import evaluate_task
from domain_embed.tasks.publishing.publish import write_index

TEXTS = [
    "The write-ahead log records every change before the data files are written.",
    "A partial index covers only the rows that satisfy its predicate.",
    "Vacuum reclaims the space of dead row versions and updates statistics.",
    "Checkpoints flush dirty pages so that recovery can start from a known point.",
]


def test_the_corpus_is_embedded_once_per_model_and_read_back_everywhere(
    prefect_harness, store, base_model_dir, tmp_path, monkeypatch
):
    rows = [
        {"chunk_id": f"c{i}", "doc_id": f"d{i}", "section": "", "text": t, "n_tokens": 12} for i, t in enumerate(TEXTS)
    ]
    corpus = store.put_jsonl("corpus", rows)
    pairs = store.put_jsonl("pairs-eval", [{"query": "what does vacuum reclaim", "chunk_id": "c2", "doc_id": "d2"}])
    tuned = shutil.copytree(base_model_dir, tmp_path / "tuned")
    (tuned / "marker.txt").write_text("another model's files, another fingerprint")
    streamed, blocks = [], []
    real_stream, real_blocks = corpus_module.embed_stream, retrieval.embed_blocks
    monkeypatch.setattr(
        corpus_module, "embed_stream", lambda model, *a, **k: streamed.append(model) or real_stream(model, *a, **k)
    )
    monkeypatch.setattr(
        retrieval,
        "embed_blocks",
        lambda *a, **k: blocks.append(k.get("query", a[4] if len(a) > 4 else False)) or real_blocks(*a, **k),
    )

    base = corpus_embeddings(corpus, base_model_dir, store)  # what prepare does
    report = evaluate_task(
        {"base": base_model_dir, "tuned": str(tuned)}, {"base": "b", "tuned": "t"}, pairs, corpus, [384], store.url
    )
    write_index(str(tuned), corpus, {}, tmp_path / "out", store)

    assert streamed == [base_model_dir, str(tuned)]  # one corpus embedding per model
    assert blocks and all(blocks)  # evaluation embedded only queries (scoring and the hybrid row), never the corpus
    assert report.results["tuned"][384]["ndcg@10"] > 0
    expected = embed_texts(base_model_dir, TEXTS)
    assert np.allclose(read_npy(base), expected, atol=1e-5)
