"""The model card in OUT/model carries the evaluation tables, the training data size and the recipe."""

from __future__ import annotations

import json
import shutil

import pytest

from domain_embed.tasks.publishing.model_card import END, START, write_model_card
from domain_embed.tasks.publishing.run_report import training_recipe
from domain_embed.tasks.settings import TrainSettings


@pytest.fixture
def report(tiny_run) -> dict:
    """The tiny run's report.json (a real evaluation, with intervals and BM25) plus what a training run adds."""
    report = json.loads((tiny_run / "report.json").read_text())
    report.update(
        promotion={
            "promoted": True,
            "reason": "tuned NDCG@10 0.7000 >= base 0.6500 (Δ +0.0500, 95% CI [+0.0100, +0.0900]: gain)",
        },
        documents={"found": 9, "parsed": 6, "train": 3, "validation": 1, "eval": 2},
        training={
            "examples": 88,
            "steps": 6,
            "epochs": 1.0,
            "best_step": 2,
            "device": "cpu",
            "teacher": "all-mpnet-base-v2",
        },
        training_pairs_by_source={"llm": 59, "heading": 13, "ict": 16},
        recipe=training_recipe(TrainSettings(teacher="all-mpnet-base-v2"), [384, 128, 64]),
    )
    return report


@pytest.fixture
def model_dir(tiny_run, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_run / "model", target, ignore=shutil.ignore_patterns("*.safetensors", "onnx"))
    return target


def test_card_has_the_table_data_size_and_recipe(model_dir, report):
    original = (model_dir / "README.md").read_text()
    text = write_model_card(model_dir, report).read_text()
    assert text.startswith(original.split("\n---\n", 1)[0])  # the YAML front matter is kept as it was
    assert (
        text.index("# all-MiniLM-L6-v2")
        < text.index(START)
        < text.index(END)
        < text.index("## Usage (Sentence-Transformers)")
    )
    section = text[text.index(START) : text.index(END)]
    assert "This folder holds the model tuned by this run: tuned NDCG@10 0.7000 >= base" in section
    assert "### Evaluation on the synthetic eval split (held-out documents, LLM-written queries)" in section
    assert "| dim | base ndcg@10 | tuned ndcg@10 | Δ [95% CI] | gain? |" in section
    assert "| dim | Δ mrr@10 [95% CI] | Δ recall@10 [95% CI] |" in section
    for dim in (384, 128, 64):
        assert f"\n| {dim} | 1.0000 | 1.0000 | +0.0000 [+0.0000, +0.0000] | within noise |" in section
    assert "| bm25 (lexical) | - |" in section
    assert (
        "88 training examples from 3 documents (1 more chose the checkpoint, 2 were held out for evaluation)"
        in section
    )
    assert "llm (questions written by the LLM): 59; heading (section headings): 13; ict" in section
    assert (
        "| loss | MatryoshkaLoss over dims [384, 128, 64] of TeacherDistillLoss (teacher all-mpnet-base-v2:" in section
    )
    assert "| steps | 6 (1.00 epochs over 88 examples) |" in section
    assert "| learning rate | 3e-05 |" in section and "| batch size | 32 |" in section
    assert "| output rotation | principal axes of the corpus's embeddings |" in section
    assert (
        "| teacher | all-mpnet-base-v2 |" in section
        and "| checkpoint kept | step 2, best validation NDCG@10 |" in section
    )
    assert "<svg" not in section


def test_card_is_replaced_not_repeated(model_dir, report):
    write_model_card(model_dir, report)
    kept = {
        **report,
        "promotion": {"promoted": False, "reason": "tuned NDCG@10 0.6000 < base 0.6500: base model kept"},
    }
    text = write_model_card(model_dir, kept).read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "This folder holds not this run's tuned model: tuned NDCG@10 0.6000 < base 0.6500" in text
    assert text.count("## Usage (Sentence-Transformers)") == 1


def test_card_without_readme_or_evaluation(tmp_path, report):
    written = write_model_card(tmp_path, {**report, "evaluation": {}}).read_text()
    assert written.startswith(START) and written.rstrip().endswith(END)
    assert "No evaluation: the corpus had a single document" in written


def test_recipe_names_the_loss_build_loss_uses():
    assert (
        training_recipe(TrainSettings(teacher=None), [64])["loss"]
        == "MatryoshkaLoss over dims [64] of MultipleNegativesRankingLoss"
    )
    cached = training_recipe(TrainSettings(teacher=None, cached_mnrl_mini_batch=16), [64])["loss"]
    assert cached == "MatryoshkaLoss over dims [64] of CachedMultipleNegativesRankingLoss (mini-batch 16)"
    recipe = training_recipe(TrainSettings(learning_rate=2e-5, warmup_ratio=0.05), [384])
    assert (recipe["learning_rate"], recipe["schedule"]) == (2e-5, "AdamW, warm-up 5% of the steps then cosine decay")
