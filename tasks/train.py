"""Train stage: MultipleNegativesRankingLoss inside MatryoshkaLoss with SentenceTransformerTrainer, length-grouped batches."""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from flows.config import TrainSettings
from tasks.embed import default_matryoshka_dims, model_fingerprint
from tasks.store import Ref, RunStore, atomic_write, read_bytes, read_jsonl, stable_hash


class TrainResult(BaseModel):
    """A trained model in the run store, with what the training did."""

    model_dir: str
    model_sha: str
    dims: list[int]
    examples: int
    steps: int
    epochs: float
    loss_curve: list[tuple[int, float]]
    samples_per_second: float
    tokens_per_second: Optional[float] = None
    padding_fraction: Optional[float] = None
    seconds: float
    device: str
    cuda_visible_devices: Optional[str] = None
    peak_memory_mb: Optional[float] = None
    resumed_from: Optional[str] = None


def matryoshka_dims(full_dim: int, requested: Optional[list[int]]) -> list[int]:
    """Matryoshka dims, largest first: the requested ones, else the full dim and the usual sizes below it."""
    if requested:
        bad = [d for d in requested if d > full_dim or d < 1]
        if bad:
            raise ValueError(f"matryoshka dims {bad} are not between 1 and the model's dimension {full_dim}")
        return sorted(set(requested), reverse=True)
    return default_matryoshka_dims(full_dim)


def loss_columns(row: dict) -> dict:
    """The row's columns in the order the loss reads them: anchor, positive, negative_1, negative_2, ...

    The run store writes JSON keys sorted, so a mined row comes back as anchor, negative_1, ..., positive;
    MNRL takes the second column as the positive whatever its name.
    """
    negatives = sorted((k for k in row if k.startswith("negative_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    return {k: row[k] for k in ("anchor", "positive", *negatives)}


def training_rows(tuples: Ref, pairs: Ref) -> dict[str, list[dict]]:
    """Training datasets by shape: rows with mined negatives and rows without, columns in loss order."""
    data = {"with_negatives": read_jsonl(tuples), "pairs_only": read_jsonl(pairs)}
    return {name: [loss_columns(row) for row in rows] for name, rows in data.items() if rows}


def latest_checkpoint(output_dir: Path) -> Optional[str]:
    """The newest complete checkpoint left by an interrupted run (the Trainer writes trainer_state.json last)."""
    checkpoints = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(checkpoints, key=lambda p: int(p.name.split("-")[-1]))) if checkpoints else None


def load_for_training(base_model_dir: str, settings: TrainSettings):
    """The base model on the best device with SDPA attention, its max length set, compiled when asked."""
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(base_model_dir, device=device, local_files_only=True, model_kwargs={"attn_implementation": "sdpa"})
    if settings.max_seq_length:
        model.max_seq_length = settings.max_seq_length
    if settings.compile:
        model[0].auto_model.compile(dynamic=True)
    return model


def build_loss(model, settings: TrainSettings, dims: list[int]):
    """MNRL, or Cached MNRL when a mini-batch is set, inside MatryoshkaLoss."""
    from sentence_transformers.losses import CachedMultipleNegativesRankingLoss, MatryoshkaLoss, MultipleNegativesRankingLoss

    if settings.cached_mnrl_mini_batch:
        inner = CachedMultipleNegativesRankingLoss(model, mini_batch_size=settings.cached_mnrl_mini_batch)
    else:
        inner = MultipleNegativesRankingLoss(model)
    return MatryoshkaLoss(model, inner, matryoshka_dims=dims)


def training_arguments(
    model, settings: TrainSettings, output_dir: str, batch_size: int, steps: int, checkpoints: bool = True, measure=None
):
    """Our SentenceTransformerTrainingArguments: length-grouped no-duplicate batches, fused AdamW, bf16 + tf32 on GPUs that have them.

    `measure` gives the token lengths the batches are grouped by (default: tokenize). Checkpoints (4 per
    run, the last 2 kept) let a retried run resume; a benchmark turns them off.
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers

    from tasks.batching import LengthGroupedBatchSampler, TokenLengths

    cuda = model.device.type == "cuda"
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sampler = (
        functools.partial(LengthGroupedBatchSampler, measure=measure or TokenLengths(model.tokenizer, model.max_seq_length))
        if settings.group_by_length
        else BatchSamplers.NO_DUPLICATES
    )
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=int(steps * settings.warmup_ratio),
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=bf16,
        tf32=bf16,
        batch_sampler=sampler,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        logging_steps=max(1, steps // 50),
        save_strategy="steps" if checkpoints else "no",
        save_steps=max(1, steps // 4),
        save_total_limit=2,
        seed=settings.seed,
        report_to="none",
        disable_tqdm=not os.environ.get("DOMAIN_EMBED_PROGRESS"),
        dataloader_drop_last=False,
        dataloader_pin_memory=cuda,
    )


def build_trainer(
    model, rows: dict[str, list[dict]], settings: TrainSettings, output_dir: str, callbacks: Optional[list] = None, checkpoints: bool = True
):
    """The trainer for `rows` (datasets by name) with our loss and arguments.

    Every distinct text is tokenized once up front (tasks.token_cache); the collator counts real and padded tokens.
    """
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformerTrainer

    from tasks.batching import CountingCollator
    from tasks.token_cache import TokenCache

    examples = sum(len(r) for r in rows.values())
    if examples < 2:
        raise ValueError(f"only {examples} training example(s): need at least 2 (add documents or questions per chunk)")
    dims = matryoshka_dims(model.get_embedding_dimension(), settings.matryoshka_dims)
    datasets = {name: Dataset.from_list(r) for name, r in rows.items()}
    train_dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))
    batch_size = min(settings.batch_size, examples)
    steps = max(1, math.ceil(examples / batch_size * settings.epochs))
    tokens = TokenCache.build(model, (str(text) for r in rows.values() for row in r for text in row.values()))
    args = training_arguments(model, settings, output_dir, batch_size, steps, checkpoints, measure=tokens.lengths if tokens else None)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=build_loss(model, settings, dims), callbacks=callbacks
    )
    if tokens:
        trainer.data_collator.preprocess_fn = tokens
    trainer.data_collator = CountingCollator(trainer.data_collator)
    return trainer


def train_model(
    tuples: Ref, pairs: Ref, base_model_dir: str, settings: TrainSettings, store: RunStore, run_key: str, callbacks: Optional[list] = None
) -> TrainResult:
    """Fine-tune the base model; resume from the last checkpoint in this run's folder if one exists."""
    import torch

    rows = training_rows(tuples, pairs)
    model = load_for_training(base_model_dir, settings)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    work_dir = Path(store.root) / "training" / run_key
    trainer = build_trainer(model, rows, settings, str(work_dir), callbacks)
    resume = latest_checkpoint(work_dir)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    final_dir = Path(store.root) / "models" / run_key
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp_dir = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    model.save(str(tmp_dir))
    tmp_dir.rename(final_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    curve = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    counted = trainer.data_collator
    return TrainResult(
        model_dir=str(final_dir),
        model_sha=model_fingerprint(str(final_dir)),
        dims=matryoshka_dims(model.get_embedding_dimension(), settings.matryoshka_dims),
        examples=sum(len(r) for r in rows.values()),
        steps=int(output.global_step),
        epochs=settings.epochs,
        loss_curve=curve,
        samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
        tokens_per_second=sum(counted.real) / seconds if seconds > 0 else None,
        padding_fraction=counted.padding_fraction,
        seconds=seconds,
        device=torch.cuda.get_device_name(0) if cuda else "cpu",
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        peak_memory_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        resumed_from=resume,
    )


def result_uri(store: RunStore, run_key: str) -> str:
    """Where the flow leaves the TrainResult of a run key, for callers on other machines."""
    return store.key_path("train-results", run_key, ".json")


def save_train_result(store: RunStore, run_key: str, result: TrainResult) -> str:
    """Write the result next to the model in the run store; returns its URI."""
    uri = result_uri(store, run_key)
    atomic_write(uri, result.model_dump_json(indent=1).encode())
    return uri


def read_train_result(store: RunStore, run_key: str) -> TrainResult:
    """The TrainResult the training flow saved for this run key."""
    return TrainResult.model_validate_json(read_bytes(result_uri(store, run_key)))


def run_key(tuples: Ref, pairs: Ref, base_model_sha: str, settings: TrainSettings) -> str:
    """Content key of a training run: dataset, base model and hyper-parameters (not where it runs)."""
    return stable_hash(
        {"tuples": tuples.sha256, "pairs": pairs.sha256, "base": base_model_sha, "settings": settings.model_dump(exclude={"deployment"})}
    )[:24]
