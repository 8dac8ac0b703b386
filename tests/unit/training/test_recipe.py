"""The recipe's parts: bootstrap intervals, LLM-free pairs, the data-scaled schedule, the teacher-distilled loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domain_embed.tasks.evaluation.uncertainty import paired_bootstrap
from domain_embed.tasks.questions.supervision import add_supervision, heading_pairs, heading_query, ict_pairs
from domain_embed.tasks.settings import SupervisionSettings, TrainSettings
from domain_embed.tasks.training.loading import load_for_training
from domain_embed.tasks.training.trainer import build_loss, planned_epochs, planned_steps


def test_paired_bootstrap_interval_on_a_fixed_example():
    base = [0.5] * 40
    gain = paired_bootstrap([0.6] * 30 + [0.5] * 10, base)  # +0.1 on 30 of 40 queries
    assert gain.delta == pytest.approx(0.075)
    assert 0.04 < gain.low < gain.delta < gain.high < 0.1 and gain.verdict == "gain"
    assert paired_bootstrap([0.6] * 30 + [0.5] * 10, base) == gain  # seeded: the same interval every time
    mixed = paired_bootstrap([0.6] * 20 + [0.4] * 20, base)
    assert mixed.delta == pytest.approx(0.0) and mixed.low < 0 < mixed.high and mixed.verdict == "within noise"
    assert paired_bootstrap([0.4] * 40, [0.5] * 39 + [0.9]).verdict == "loss"
    assert "within noise" in mixed.describe() and mixed.queries == 40
    with pytest.raises(ValueError):
        paired_bootstrap([0.1, 0.2], [0.1])


def chunk(cid: str, section: str, text: str, doc: str = "d1") -> dict:
    return {"chunk_id": cid, "doc_id": doc, "section": section, "text": text}


BODY = (
    "The package manager keeps a list of every installed package and its version. "
    "Each entry records where the package came from and which files it placed on the disk. "
    "Removing a package deletes those files but keeps the configuration the administrator edited. "
    "When a new release arrives, it downloads only what changed. It verifies every file against its checksum before use."
)


def test_headings_become_queries_for_their_section_without_the_heading():
    assert heading_query("2.3.5. System wide upgrade") == "System wide upgrade"
    assert heading_query("Chapter 4. Authentication and access controls") == "Authentication and access controls"
    assert heading_query("Note") is None and heading_query("9.1") is None and heading_query("Tips") is None
    rows = heading_pairs(
        [
            chunk("c1", "8.1. Package management tools", f"8.1. Package management tools\n\n{BODY}"),
            chunk("c2", "", BODY),
            chunk("c3", "Warning", BODY),
        ]
    )
    assert [(r["query"], r["chunk_id"], r["source"]) for r in rows] == [("Package management tools", "c1", "heading")]
    assert "Package management tools" not in rows[0]["positive"] and rows[0]["positive"].startswith(
        "The package manager"
    )


def test_inverse_cloze_takes_one_sentence_out_of_its_chunk_stably():
    chunks = [chunk(f"c{i}", "", BODY) for i in range(5)] + [chunk("short", "", "Too short to cut.")]
    rows = ict_pairs(chunks)
    assert [r["chunk_id"] for r in rows] == [f"c{i}" for i in range(5)]
    for row in rows:
        assert row["query"] in BODY and row["query"] not in row["positive"] and len(row["positive"].split()) >= 30
    assert ict_pairs(chunks) == rows and ict_pairs(list(reversed(chunks[:5]))) == list(reversed(rows))


def test_supervision_uses_training_documents_only_and_counts_sources(store):
    chunks = [
        chunk("a", "1.1. Keeping a system current", BODY, "train-doc"),
        chunk("b", "1.2. Held out section", BODY, "eval-doc"),
    ]
    llm = store.put_jsonl("pairs", [{"query": "what does apt download", "chunk_id": "a", "doc_id": "train-doc"}])
    result = add_supervision(llm, store.put_jsonl("corpus", chunks), ["train-doc"], SupervisionSettings(), store)
    assert result.sources == {"llm": 1, "heading": 1, "ict": 1}
    from domain_embed.tasks.core.objects import read_jsonl

    assert {r["doc_id"] for r in read_jsonl(result.pairs)} == {"train-doc"}


def test_training_length_comes_from_the_data():
    settings = TrainSettings()  # epochs empty: min_steps = max_steps = 60 steps, at most max_epochs (8) passes
    assert planned_steps(300, settings) == 60 and planned_epochs(300, settings) == 6.0
    assert planned_steps(100, settings) == 32 and planned_epochs(100, settings) == 8.0
    assert planned_steps(1000, settings) == 60 and planned_epochs(1000, settings) == pytest.approx(60 / 32)
    assert planned_steps(30_000, settings) == 60 and planned_epochs(30_000, settings) == pytest.approx(60 / 938)
    one_pass = TrainSettings(max_steps=None)  # at least min_steps, at least one pass
    assert planned_steps(30_000, one_pass) == 938 and planned_steps(1000, one_pass) == 60
    assert planned_steps(30_000, TrainSettings(min_steps=100, max_steps=60)) == 100  # min_steps wins
    fixed = TrainSettings(epochs=2)
    assert planned_steps(300, fixed) == 20 and planned_steps(30_000, fixed) == 1876


def tiny_teacher(folder) -> str:
    """A randomly initialised 2-layer BERT (hidden 128) as a SentenceTransformer folder, with MiniLM's tokenizer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from domain_embed.tasks.embedding.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
    )
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    model = SentenceTransformer(
        modules=[Transformer(str(folder / "bert"), max_seq_length=64), Pooling(128, "mean")], device="cpu"
    )
    model.save(str(folder / "st"))
    return str(folder / "st")


def test_teacher_distillation_pulls_the_students_batch_scores_to_the_teachers(base_model_dir):
    settings = TrainSettings(max_seq_length=32, distill_weight=1.0, teacher="all-mpnet-base-v2")
    model = load_for_training(base_model_dir, settings)
    model.eval()
    loss_fn = build_loss(model, settings, [384, 64])
    assert type(loss_fn.loss).__name__ == "TeacherDistillLoss"
    queries = ["vacuum reclaims storage", "write-ahead log", "query planner", "streaming replication"]
    passages = [
        "VACUUM frees dead rows.",
        "WAL records changes first.",
        "The planner picks a plan.",
        "Standbys replay WAL.",
    ]
    features = [model.preprocess(queries), model.preprocess(passages)]
    rng = np.random.default_rng(0)
    teacher = torch.tensor(rng.normal(size=(4, 2, 96)), dtype=torch.float32)  # any teacher width works
    inner = loss_fn.loss
    inner.rank_weight = 0.0  # distillation alone
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = loss_fn(features, teacher)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    same = inner.compute_loss_from_embeddings(
        [torch.eye(4), torch.eye(4)], torch.stack([torch.eye(4), torch.eye(4)], dim=1)
    )
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_training_with_a_teacher_labels_every_text_once_and_trains(store, base_model_dir, tmp_path):
    from domain_embed.tasks.training.fit import train_model, training_rows

    teacher = tiny_teacher(tmp_path)
    rows = [
        {
            "anchor": f"question {i} about topic {i % 4}",
            "positive": f"Topic {i % 4} passage number {i} explains it.",
            "negative_1": f"Unrelated passage {i + 7} about something else.",
        }
        for i in range(16)
    ]
    tuples, pairs = store.put_jsonl("tuples", rows), store.put_jsonl("pairs", [])
    labelled = training_rows(tuples, pairs, teacher, store)["with_negatives"]
    assert np.asarray(labelled[0]["label"]).shape == (3, 128)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=32, teacher=teacher, evaluations=0)
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-teacher")
    assert result.teacher == teacher and result.steps == 2 and len(result.loss_curve) >= 1


def test_rotation_keeps_full_dim_scores_and_puts_the_corpus_variance_first(base_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from domain_embed.tasks.training.rotation import with_rotation

    texts = [
        f"The {topic} setting {i} controls how PostgreSQL handles {topic} work."
        for i in range(12)
        for topic in ("vacuum", "replication", "planner", "index")
    ]
    base = SentenceTransformer(base_model_dir, device="cpu")
    rotated, embeddings = with_rotation(base, texts)
    rotated.save(str(tmp_path / "rotated"))
    reloaded = SentenceTransformer(str(tmp_path / "rotated"), device="cpu", local_files_only=True)
    # the embeddings it returns are the saved model's own (what later stages read from the store instead)
    np.testing.assert_allclose(embeddings, reloaded.encode(texts, normalize_embeddings=True), atol=1e-5)
    before, after = base.encode(texts[:8]), reloaded.encode(texts[:8])
    np.testing.assert_allclose(before @ before.T, after @ after.T, atol=1e-5)  # an orthogonal rotation: same cosines
    variance = reloaded.encode(texts).var(axis=0)
    assert variance[:8].sum() > variance[-8:].sum() * 10  # leading dimensions carry the corpus's spread
    assert any(type(m).__name__ == "Dense" for m in reloaded)
