"""train.attention_dropout: set under whichever key the model's config uses, and only the attention's dropout."""

from __future__ import annotations

import json

from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.training.loading import attention_dropout_config, load_for_training


def test_attention_dropout_zero_reaches_every_attention_layer_and_nothing_else(base_model_dir):
    assert attention_dropout_config(base_model_dir, None) == {}
    assert attention_dropout_config(base_model_dir, 0.0) == {"attention_probs_dropout_prob": 0.0}
    model = load_for_training(base_model_dir, TrainSettings(attention_dropout=0.0))
    config = model[0].auto_model.config
    assert config.attention_probs_dropout_prob == 0.0 and config.hidden_dropout_prob == 0.1
    attention = [m for name, m in model.named_modules() if name.endswith("attention.self")]
    assert len(attention) == 6 and all(m.dropout.p == 0.0 for m in attention)
    own = load_for_training(base_model_dir, TrainSettings(attention_dropout=None))
    assert {m.dropout.p for name, m in own.named_modules() if name.endswith("attention.self")} == {0.1}


def test_a_model_without_an_attention_dropout_key_keeps_its_own(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "hidden_size": 8}))
    assert attention_dropout_config(str(tmp_path), 0.0) == {}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "attention_dropout": 0.1}))
    assert attention_dropout_config(str(tmp_path), 0.0) == {"attention_dropout": 0.0}
