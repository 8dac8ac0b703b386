"""The model training starts from: the base model on the best device, SDPA attention, its length, attention dropout and
gradient checkpointing as the settings say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import TrainSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")  # BERT, MPNet, RoBERTa; others


def transformer_config(model_dir: str) -> Path:
    """The config.json of the model's Transformer module (modules.json names its folder)."""
    modules = Path(model_dir) / "modules.json"
    entries = json.loads(modules.read_text()) if modules.exists() else []
    folder = next((m.get("path", "") for m in entries if m.get("type", "").endswith("Transformer")), "")
    return Path(model_dir) / folder / "config.json"


def attention_dropout_config(model_dir: str, dropout: float | None) -> dict[str, float]:
    """The config overrides that set the transformer's attention dropout, under whichever keys its config uses (none
    when it has no such key: the model keeps its own)."""
    if dropout is None:
        return {}
    config = json.loads(transformer_config(model_dir).read_text())
    return {key: dropout for key in ATTENTION_DROPOUT_KEYS if key in config}


def load_for_training(base_model_dir: str, settings: TrainSettings) -> SentenceTransformer:
    """The base model on the best device with SDPA attention, its max length set, checkpointed and compiled when
    asked."""
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(
        base_model_dir,
        device=device,
        local_files_only=True,
        model_kwargs={"attn_implementation": "sdpa"},
        config_kwargs=attention_dropout_config(base_model_dir, settings.attention_dropout),
    )
    if settings.max_seq_length:
        model.max_seq_length = settings.max_seq_length
    checkpointing = settings.gradient_checkpointing
    if checkpointing or (checkpointing is None and device == "cpu"):
        # non-reentrant: the embeddings' outputs need no requires_grad hook (which would not pickle into a checkpoint)
        transformer = model[0].auto_model
        transformer.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        transformer.disable_input_require_grads()
    if settings.compile:
        model[0].auto_model.compile(dynamic=True)
    return model
