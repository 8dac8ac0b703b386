"""The SentenceTransformerTrainer we train with: loss, schedule from the data, length-grouped batches, validation."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..embedding.models import bf16_native, default_matryoshka_dims
from ..settings import TrainSettings
from .ranks import is_main, world_size

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from transformers import TrainerCallback

VALIDATION = "validation"
BEST_METRIC = f"eval_{VALIDATION}_cosine_ndcg@10"


def matryoshka_dims(full_dim: int, requested: list[int] | None) -> list[int]:
    """Matryoshka dims, largest first: the requested ones, else the full dim and the usual sizes below it."""
    if requested:
        bad = [d for d in requested if d > full_dim or d < 1]
        if bad:
            raise ValueError(f"matryoshka dims {bad} are not between 1 and the model's dimension {full_dim}")
        return sorted(set(requested), reverse=True)
    return default_matryoshka_dims(full_dim)


def planned_steps(examples: int, settings: TrainSettings) -> int:
    """Optimizer steps: settings.epochs passes; else one pass, at least min_steps and at most max_steps (the larger of
    the two), never more than max_epochs passes."""
    per_epoch = math.ceil(examples / max(1, min(settings.batch_size, examples)))
    if settings.epochs:
        return max(1, math.ceil(per_epoch * settings.epochs))
    steps = max(per_epoch, settings.min_steps)
    if settings.max_steps:
        steps = min(steps, max(settings.max_steps, settings.min_steps))
    return int(min(per_epoch * settings.max_epochs, steps))


def planned_epochs(examples: int, settings: TrainSettings) -> float:
    """Passes over the rows that planned_steps makes."""
    return planned_steps(examples, settings) / math.ceil(examples / max(1, min(settings.batch_size, examples)))


def build_loss(model: SentenceTransformer, settings: TrainSettings, dims: list[int]) -> torch.nn.Module:
    """Inside MatryoshkaLoss: the teacher-distilled ranking loss, else MNRL (or Cached MNRL when a mini-batch is set);
    in data-parallel training every rank's queries rank against the passages of all ranks (the global batch)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    from .losses import TeacherDistillLoss

    gather = world_size() > 1
    if settings.teacher:
        inner = TeacherDistillLoss(
            model,
            distill_weight=settings.distill_weight,
            rank_weight=settings.rank_weight,
            gather_across_devices=gather,
        )
    elif settings.cached_mnrl_mini_batch:
        inner = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=settings.cached_mnrl_mini_batch, gather_across_devices=gather
        )
    else:
        inner = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    weights = settings.matryoshka_weights
    if weights is not None and len(weights) != len(dims):
        raise ValueError(f"matryoshka_weights has {len(weights)} values for {len(dims)} dims {dims}")
    return MatryoshkaLoss(model, inner, matryoshka_dims=dims, matryoshka_weights=weights)


def describe_loss(settings: TrainSettings, dims: list[int]) -> str:
    """build_loss's choice in words, for the report and the model card."""
    if settings.teacher:
        inner = (
            f"TeacherDistillLoss (teacher {settings.teacher}: in-batch ranking x {settings.rank_weight} "
            f"+ KL to the teacher's in-batch scores x {settings.distill_weight})"
        )
    elif settings.cached_mnrl_mini_batch:
        inner = f"CachedMultipleNegativesRankingLoss (mini-batch {settings.cached_mnrl_mini_batch})"
    else:
        inner = "MultipleNegativesRankingLoss"
    return f"MatryoshkaLoss over dims {dims} of {inner}"


def validation_evaluator(validation: dict | None, batch_size: int = 64) -> InformationRetrievalEvaluator | None:
    """The IR evaluator of the validation split (queries of documents neither trained on nor evaluated), or None."""
    if not validation or not validation["queries"]:
        return None
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries=validation["queries"],
        corpus=validation["corpus"],
        relevant_docs=validation["relevant"],
        name=VALIDATION,
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10],
        map_at_k=[10],
        batch_size=batch_size,
        write_csv=False,
        show_progress_bar=False,
    )


def training_arguments(
    model: SentenceTransformer,
    settings: TrainSettings,
    output_dir: str,
    batch_size: int,
    steps: int,
    checkpoints: bool = True,
    measure: Callable[[list[str]], np.ndarray] | None = None,
    validate: bool = False,
) -> SentenceTransformerTrainingArguments:
    """Our SentenceTransformerTrainingArguments: length-grouped no-duplicate batches, fused AdamW, bf16 autocast where the
    GPU or CPU multiplies bf16 natively (unless train.bf16 says otherwise), tf32 on GPUs.

    `measure` gives the token lengths the batches are grouped by (default: tokenize). With `validate`, the
    validation split is scored `evaluations` times and the best checkpoint is loaded at the end; checkpoints
    also let a retried run resume (a benchmark turns them off). In data-parallel training the sampler draws the same
    global batches of `batch_size` as one process would and each rank takes its slice (split_batches), so batches
    never mix datasets across ranks; incomplete batches are dropped, as the ranks' slices must be equal.
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers

    from .batching import LengthGroupedBatchSampler, TokenLengths

    cuda = model.device.type == "cuda"
    native = torch.cuda.is_bf16_supported() if cuda else model.device.type == "cpu" and bf16_native()
    bf16 = settings.bf16 if settings.bf16 is not None else bool(native)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sampler = (
        functools.partial(
            LengthGroupedBatchSampler, measure=measure or TokenLengths(model.tokenizer, model.max_seq_length)
        )
        if settings.group_by_length
        else BatchSamplers.NO_DUPLICATES
    )
    every = math.ceil(steps / max(1, settings.evaluations if validate else 4))  # at most 4 (or `evaluations`) saves
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,  # with several processes: the global batch, split between them
        accelerator_config={"split_batches": world_size() > 1},
        use_cpu=not cuda and (world_size() > 1 or bf16),  # CPU ranks join as data-parallel (gloo); bf16 on a CPU
        learning_rate=settings.learning_rate,
        warmup_steps=int(steps * settings.warmup_ratio),
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=bf16,
        tf32=bf16 and cuda,
        batch_sampler=sampler,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        logging_steps=max(1, steps // 50),
        eval_strategy="steps" if validate else "no",
        eval_steps=every if validate else None,
        load_best_model_at_end=validate and checkpoints,
        metric_for_best_model=BEST_METRIC if validate else None,
        greater_is_better=True,
        save_strategy="steps" if checkpoints else "no",
        save_steps=every,
        save_total_limit=2,
        seed=settings.seed,
        report_to="none",
        disable_tqdm=not os.environ.get("DOMAIN_EMBED_PROGRESS"),
        dataloader_drop_last=world_size() > 1,
        dataloader_pin_memory=cuda,
    )


def step_progress(total_steps: int) -> TrainerCallback:
    """A TrainerCallback that logs one progress line per cadence (steps, rate, ETA, last loss) instead of the
    trainer's printed log dictionaries."""
    from transformers import TrainerCallback

    from ..core.progress import Progress

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.loss: float | None = None
            self.progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            extra = lambda: f"loss {self.loss:.4f}" if self.loss is not None else "loss -"  # noqa: E731
            self.progress = Progress("train", state.max_steps or total_steps, "steps", extra=extra)
            self.progress.done = state.global_step  # a resumed run starts where it stopped

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.advance()

    return StepProgress()


def build_trainer(
    model: SentenceTransformer,
    rows: dict[str, list[dict]],
    settings: TrainSettings,
    output_dir: str,
    callbacks: list[TrainerCallback] | None = None,
    checkpoints: bool = True,
    validation: dict | None = None,
) -> SentenceTransformerTrainer:
    """The trainer for `rows` (datasets by name; a `label` column holds teacher embeddings) with our loss and arguments.

    Every distinct text is tokenized once up front (domain_embed.tasks.training.token_cache); the collator counts real and padded tokens.
    """
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformerTrainer

    from .batching import CountingCollator
    from .token_cache import TokenCache

    examples = sum(len(r) for r in rows.values())
    if examples < 2:
        raise ValueError(
            f"only {examples} training example(s): need at least 2 (add documents or questions per chunk)"
        )
    dims = matryoshka_dims(model.get_embedding_dimension(), settings.matryoshka_dims)
    datasets = {name: Dataset.from_list(r) for name, r in rows.items()}
    train_dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))
    batch_size = max(world_size(), min(settings.batch_size, examples) // world_size() * world_size())
    steps = planned_steps(examples, settings)
    texts = (str(text) for r in rows.values() for row in r for key, text in row.items() if key != "label")
    tokens = TokenCache.build(model, texts)
    evaluator = validation_evaluator(validation)
    args = training_arguments(
        model,
        settings,
        output_dir,
        batch_size,
        steps,
        checkpoints,
        measure=tokens.lengths if tokens else None,
        validate=evaluator is not None,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=build_loss(model, settings, dims),
        callbacks=callbacks,
        evaluator=evaluator,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # its print()s of log dictionaries would land in the run log
    if is_main():
        trainer.add_callback(step_progress(steps))
    if tokens:
        trainer.data_collator.preprocess_fn = tokens
    trainer.data_collator = CountingCollator(trainer.data_collator)
    return trainer
