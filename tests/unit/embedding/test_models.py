"""A model's output dimension read from its saved module configs, as either sentence-transformers generation wrote them."""

from __future__ import annotations

import json

import pytest

from domain_embed.tasks.embedding.models import model_dimension


@pytest.mark.parametrize("key", ["embedding_dimension", "word_embedding_dimension"])
def test_the_dimension_comes_from_the_pooling_config_under_either_key(tmp_path, key):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({key: 312, "pooling_mode": "mean"}))
    assert model_dimension(str(tmp_path)) == 312  # no weights in the folder: loading it would fail
