"""The token cache gives the collator exactly the tensors the model's own preprocess would, without re-tokenizing."""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer

from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.training.batching import TokenLengths
from domain_embed.tasks.training.loading import load_for_training
from domain_embed.tasks.training.token_cache import TokenCache
from domain_embed.tasks.training.trainer import build_trainer

TEXTS = [
    "how does vacuum work",
    "VACUUM reclaims storage occupied by dead tuples. " * 40,  # longer than max_seq_length: truncated
    "Ünïcödé naïve café — 東京 ✓",
    "",
    "how does vacuum work",  # a duplicate in the same batch
    "x",
]


def same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items()
    )


def test_cached_batches_equal_the_models_preprocess_and_lengths_equal_the_tokenizers(base_model_dir):
    model = SentenceTransformer(base_model_dir, device="cpu")
    model.max_seq_length = 64
    cache = TokenCache.build(model, TEXTS[:3])
    assert cache is not None
    assert set(cache.rows) == set(TEXTS[:3])
    assert same(cache(TEXTS), model.preprocess(TEXTS))  # texts not seen at build time are added on the way
    assert same(cache(TEXTS[2:4]), model.preprocess(TEXTS[2:4]))
    assert cache(TEXTS)["input_ids"].shape[1] == 64
    assert cache.lengths(TEXTS).tolist() == TokenLengths(model.tokenizer, 64)(TEXTS).tolist()


def test_prompts_and_tasks_go_to_preprocess_and_left_padding_is_kept(base_model_dir):
    model = SentenceTransformer(base_model_dir, device="cpu")
    cache = TokenCache.build(model, TEXTS)
    assert same(cache(TEXTS, prompt="query: "), model.preprocess(TEXTS, prompt="query: "))
    assert "prompt_length" in cache(TEXTS, prompt="query: ")
    model.tokenizer.padding_side = "left"
    left = TokenCache.build(model, TEXTS)
    assert left.pad_left and same(left(TEXTS), model.preprocess(TEXTS))
    assert left(TEXTS)["attention_mask"][0, 0] == 0


class ImageModel:
    """A model whose preprocess returns more than padded text ids."""

    class tokenizer:
        pad_token_id, padding_side = 0, "right"

    @staticmethod
    def preprocess(texts, prompt=None, **kwargs):
        return {
            "input_ids": torch.zeros(len(texts), 2),
            "attention_mask": torch.ones(len(texts), 2),
            "pixel_values": torch.zeros(1),
        }


def test_a_model_that_is_not_plain_text_keeps_its_preprocess():
    assert TokenCache.build(ImageModel(), ["a", "b"]) is None


def test_the_trainer_collates_from_the_cache_the_same_batches_as_the_stock_collator(base_model_dir, tmp_path):
    rows = [
        {
            "anchor": f"question {i} about vacuum",
            "positive": TEXTS[1][: 50 + 7 * i],
            "negative_1": f"unrelated passage {i}",
        }
        for i in range(12)
    ]
    settings = TrainSettings(batch_size=4, max_seq_length=48, teacher=None)
    trainer = build_trainer(
        load_for_training(base_model_dir, settings),
        {"with_negatives": rows},
        settings,
        str(tmp_path),
        checkpoints=False,
    )
    collator = trainer.data_collator.collate
    assert isinstance(collator.preprocess_fn, TokenCache)
    assert len(collator.preprocess_fn.rows) == 12 + 12 + 12
    cached = collator(rows[:4])
    collator.preprocess_fn = trainer.model.preprocess
    assert same(cached, collator(rows[:4]))
