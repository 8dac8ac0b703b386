"""Train stage: MultipleNegativesRankingLoss inside MatryoshkaLoss with SentenceTransformerTrainer."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from flows.config import TrainSettings
from tasks.embed import default_matryoshka_dims, model_fingerprint
from tasks.store import Ref, RunStore, read_jsonl, stable_hash

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
    seconds: float
    device: str
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


def training_rows(tuples: Ref, pairs: Ref) -> dict[str, list[dict]]:
    """Training datasets by shape: rows with mined negatives and rows without."""
    data = {"with_negatives": read_jsonl(tuples), "pairs_only": read_jsonl(pairs)}
    return {name: rows for name, rows in data.items() if rows}


def latest_checkpoint(output_dir: Path) -> Optional[str]:
    """The newest checkpoint folder left by an interrupted run, if any."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def train_model(
    tuples: Ref, pairs: Ref, base_model_dir: str, settings: TrainSettings, store: RunStore, run_key: str, callbacks: Optional[list] = None
) -> TrainResult:
    """Fine-tune the base model; resume from the last checkpoint in this run's folder if one exists."""
    import torch
    from datasets import Dataset, DatasetDict
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.training_args import BatchSamplers, MultiDatasetBatchSamplers

    rows = training_rows(tuples, pairs)
    examples = sum(len(r) for r in rows.values())
    if examples < 2:
        raise ValueError(f"only {examples} training example(s): need at least 2 (add documents or questions per chunk)")
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats()
    model = SentenceTransformer(base_model_dir, device="cuda" if cuda else "cpu", local_files_only=True, model_kwargs={"attn_implementation": "sdpa"})
    if settings.max_seq_length:
        model.max_seq_length = settings.max_seq_length
    dims = matryoshka_dims(model.get_embedding_dimension(), settings.matryoshka_dims)
    if settings.cached_mnrl_mini_batch:
        inner = CachedMultipleNegativesRankingLoss(model, mini_batch_size=settings.cached_mnrl_mini_batch)
    else:
        inner = MultipleNegativesRankingLoss(model)
    loss = MatryoshkaLoss(model, inner, matryoshka_dims=dims)
    datasets = {name: Dataset.from_list(r) for name, r in rows.items()}
    train_dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))
    batch_size = min(settings.batch_size, examples)
    steps = max(1, math.ceil(examples / batch_size * settings.epochs))
    work_dir = Path(store.root) / "training" / run_key
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=int(steps * settings.warmup_ratio),
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=bf16,
        tf32=cuda and bf16,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        logging_steps=max(1, steps // 50),
        save_strategy="steps",
        save_steps=max(1, steps // 4),
        save_total_limit=2,
        seed=settings.seed,
        report_to="none",
        disable_tqdm=not os.environ.get("DOMAIN_EMBED_PROGRESS"),
        dataloader_drop_last=False,
        dataloader_pin_memory=cuda,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss, callbacks=callbacks)
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
    return TrainResult(
        model_dir=str(final_dir),
        model_sha=model_fingerprint(str(final_dir)),
        dims=dims,
        examples=examples,
        steps=int(output.global_step),
        epochs=settings.epochs,
        loss_curve=curve,
        samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
        seconds=seconds,
        device=device,
        peak_memory_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        resumed_from=resume,
    )


def run_key(tuples: Ref, pairs: Ref, base_model_sha: str, settings: TrainSettings) -> str:
    """Content key of a training run: dataset, base model and hyper-parameters (not where it runs)."""
    return stable_hash(
        {"tuples": tuples.sha256, "pairs": pairs.sha256, "base": base_model_sha, "settings": settings.model_dump(exclude={"deployment"})}
    )[:24]
