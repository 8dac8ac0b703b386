"""Train stage: MultipleNegativesRankingLoss inside MatryoshkaLoss with SentenceTransformerTrainer, length-grouped batches."""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..core.model_ref import ModelRef, put_model
from ..core.objects import Ref, modified_at, read_jsonl, read_npy, stable_hash
from ..core.store import RunStore, put_record, read_record
from ..embedding.corpus import keep_corpus_embeddings, stored_corpus_embeddings
from ..embedding.models import max_seq_length, resolve_model
from ..settings import TrainSettings
from .checkpoints import clear_checkpoints, restore_checkpoints, scratch_dir, store_sync
from .loading import load_for_training
from .ranks import world_size
from .rotation import with_rotation
from .trainer import BEST_METRIC, build_trainer, matryoshka_dims, planned_epochs


class TrainResult(BaseModel):
    """A trained model in the run store, with what the training did."""

    model: ModelRef
    dims: list[int]
    examples: int
    steps: int
    epochs: float
    loss_curve: list[tuple[int, float]]
    samples_per_second: float
    tokens_per_second: float | None = None
    padding_fraction: float | None = None
    seconds: float
    device: str
    processes: int = 1  # data-parallel ranks (one per GPU)
    cuda_visible_devices: str | None = None
    peak_memory_mb: float | None = None
    resumed_from: str | None = None
    teacher: str | None = None
    validation_curve: list[tuple[int, float]] = []  # (step, validation NDCG@10); step 0 is the base model
    best_step: int | None = None
    cached: bool = False  # this run took the model from Prefect's cache instead of training it

    @property
    def model_sha(self) -> str:
        """The trained model's fingerprint."""
        return self.model.sha256


def loss_columns(row: dict) -> dict:
    """The row's columns in the order the loss reads them: anchor, positive, negative_1, negative_2, ...

    The run store writes JSON keys sorted, so a mined row comes back as anchor, negative_1, ..., positive;
    MNRL takes the second column as the positive whatever its name.
    """
    negatives = sorted((k for k in row if k.startswith("negative_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    return {k: row[k] for k in ("anchor", "positive", *negatives)}


def training_rows(
    tuples: Ref, pairs: Ref, teacher: str | None = None, store: RunStore | None = None
) -> dict[str, list[dict]]:
    """Training datasets by shape: rows with mined negatives and rows without, columns in loss order.

    With a teacher, each row's `label` holds the teacher's embedding of each of its texts (computed once per text).
    """
    data = {"with_negatives": read_jsonl(tuples), "pairs_only": read_jsonl(pairs)}
    rows = {name: [loss_columns(row) for row in found] for name, found in data.items() if found}
    if teacher and rows:
        from ..embedding.text_cache import EmbeddingCache

        cache = EmbeddingCache(store or RunStore(), resolve_model(teacher))
        texts = sorted({text for found in rows.values() for row in found for text in row.values()})
        vectors = dict(zip(texts, cache.embed(texts)))
        rows = {
            name: [{**row, "label": [vectors[t].tolist() for t in row.values()]} for row in found]
            for name, found in rows.items()
        }
    return rows


def validation_set(pairs: Ref | None, corpus: Ref | None, pool: int | None = None, seed: int = 0) -> dict | None:
    """Validation queries (their own chunk relevant) against the corpus, as the IR evaluator takes them: every chunk, or
    at most `pool` (the relevant ones and a seeded sample of the rest); `rows` are the kept chunks' corpus rows."""
    if pairs is None or corpus is None or not pairs.count:
        return None
    from ..evaluation.beir import pairs_to_queries

    queries, relevant = pairs_to_queries(read_jsonl(pairs))
    chunks = list(read_jsonl(corpus))
    rows = pool_rows([row["chunk_id"] for row in chunks], set().union(*relevant.values()), pool, seed)
    return {
        "queries": queries,
        "relevant": relevant,
        "corpus": {chunks[i]["chunk_id"]: chunks[i]["text"] for i in rows},
        "rows": rows,
    }


def pool_rows(chunk_ids: list[str], relevant: set[str], pool: int | None, seed: int) -> list[int]:
    """Row numbers of the chunks a validation pass ranks: all, or every relevant one plus a seeded sample up to `pool`."""
    if pool is None or len(chunk_ids) <= pool:
        return list(range(len(chunk_ids)))
    needed = [i for i, chunk_id in enumerate(chunk_ids) if chunk_id in relevant]
    others = [i for i, chunk_id in enumerate(chunk_ids) if chunk_id not in relevant]
    return sorted(needed + random.Random(seed).sample(others, max(0, pool - len(needed))))


def corpus_texts(corpus: Ref) -> list[str]:
    """The corpus's chunk texts, which the rotation after training is fitted on."""
    return [row["text"] for row in read_jsonl(corpus)]


def stored_base_embeddings(
    base_model_dir: str, settings: TrainSettings, store: RunStore, validation: dict | None, corpus: Ref | None
) -> np.ndarray | None:
    """The base model's embeddings of the validation pool's chunks as prepare stored them, when they are what the
    evaluator would compute (the base model's own length); else None."""
    if validation is None or corpus is None:
        return None
    if settings.max_seq_length not in (None, max_seq_length(base_model_dir)):
        return None
    stored = stored_corpus_embeddings(corpus, base_model_dir, store)
    return read_npy(stored)[validation["rows"]] if stored is not None else None


def validation_curve(trainer, base_score: float | None) -> list[tuple[int, float]]:
    """(step, validation NDCG@10) from the trainer's log, after the base model's score at step 0."""
    curve = [(0, base_score)] if base_score is not None else []
    return curve + [(int(h["step"]), float(h[BEST_METRIC])) for h in trainer.state.log_history if BEST_METRIC in h]


@dataclass
class Fitted:
    """A trained model with its trainer and what the fit measured, before rotation and saving."""

    model: Any
    trainer: Any
    output: Any
    seconds: float
    examples: int
    resumed_from: str | None
    base_score: float | None
    work_dir: Path


def fit(
    tuples: Ref,
    pairs: Ref,
    base_model_dir: str,
    settings: TrainSettings,
    store: RunStore,
    run_key: str,
    callbacks: list | None = None,
    validation: dict | None = None,
    corpus: Ref | None = None,
) -> Fitted:
    """Fine-tune the base model, keeping the checkpoint that scores best on `validation` (if given); resume from this
    run's last checkpoint, local or in the store (checkpoints are mirrored there as written). Every rank calls this."""
    import torch

    rows = training_rows(tuples, pairs, settings.teacher, store)
    model = load_for_training(base_model_dir, settings)
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    work_dir = scratch_dir(store, run_key)
    callbacks = [store_sync(store, run_key), *(callbacks or [])]
    trainer = build_trainer(
        model, rows, settings, str(work_dir), callbacks, validation=validation if settings.evaluations else None
    )
    base_score = None
    if trainer.evaluator:  # the base model's score: on its stored corpus embeddings, not embedding the corpus again
        stored = stored_base_embeddings(base_model_dir, settings, store, validation, corpus)
        extra = {"corpus_embeddings": torch.from_numpy(stored)} if stored is not None else {}
        base_score = trainer.evaluator(model, **extra)[BEST_METRIC.removeprefix("eval_")]
    resume = restore_checkpoints(store, run_key, work_dir)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    model = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # bf16 autocast ends with training
    return Fitted(model, trainer, output, seconds, sum(len(r) for r in rows.values()), resume, base_score, work_dir)


def finish(
    fitted: Fitted, settings: TrainSettings, store: RunStore, run_key: str, corpus: Ref | None = None
) -> TrainResult:
    """Rotate the model onto the principal axes of the corpus's embeddings (if given and settings.rotate), upload it to
    the run store with those embeddings as its corpus embeddings, and describe the training (rank 0 only in DDP)."""
    import torch

    model, trainer, seconds, processes = fitted.model, fitted.trainer, fitted.seconds, world_size()
    cuda = model.device.type == "cuda"
    embeddings = None
    if settings.rotate and corpus is not None and corpus.count >= 2:
        model, embeddings = with_rotation(model, corpus_texts(corpus))
    final_dir = fitted.work_dir / "final"
    shutil.rmtree(final_dir, ignore_errors=True)
    model.save(str(final_dir))
    model_ref = put_model(store, final_dir)
    if embeddings is not None:  # evaluate and publish read them instead of embedding the corpus again
        keep_corpus_embeddings(corpus, model_ref.sha256, embeddings, store)  # sha256: the fingerprint
    clear_checkpoints(store, run_key)
    shutil.rmtree(fitted.work_dir, ignore_errors=True)
    curve = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    best = trainer.state.best_model_checkpoint
    counted = trainer.data_collator  # rank 0's share of the batches: about 1/processes of the tokens
    return TrainResult(
        model=model_ref,
        dims=matryoshka_dims(model.get_embedding_dimension(), settings.matryoshka_dims),
        examples=fitted.examples,
        steps=int(fitted.output.global_step),
        epochs=round(planned_epochs(fitted.examples, settings), 3),
        loss_curve=curve,
        # the Trainer counts each rank's split of the global batch as a whole batch
        samples_per_second=float(fitted.output.metrics.get("train_samples_per_second", 0.0)) / processes,
        tokens_per_second=processes * sum(counted.real) / seconds if seconds > 0 else None,
        padding_fraction=counted.padding_fraction,
        seconds=seconds,
        device=torch.cuda.get_device_name(0) if cuda else "cpu",
        processes=processes,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        peak_memory_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        resumed_from=fitted.resumed_from,
        teacher=settings.teacher,
        validation_curve=validation_curve(trainer, fitted.base_score),
        best_step=int(best.rsplit("-", 1)[1]) if best else None,
    )


def train_model(
    tuples: Ref,
    pairs: Ref,
    base_model_dir: str,
    settings: TrainSettings,
    store: RunStore,
    run_key: str,
    callbacks: list | None = None,
    validation: dict | None = None,
    corpus: Ref | None = None,
) -> TrainResult:
    """Fine-tune in this process (fit), then rotate, save and describe the model (finish)."""
    fitted = fit(tuples, pairs, base_model_dir, settings, store, run_key, callbacks, validation, corpus)
    return finish(fitted, settings, store, run_key, corpus)


def result_uri(store: RunStore, run_key: str) -> str:
    """Where the flow leaves the TrainResult of a run key, for callers on other machines."""
    return store.key_path("train-results", run_key, ".json")


def save_train_result(store: RunStore, run_key: str, result: TrainResult) -> str:
    """Write the result next to the model in the run store; returns its URI."""
    uri = result_uri(store, run_key)
    put_record(uri, result.model_dump(mode="json"))
    return uri


def read_train_result(store: RunStore, run_key: str) -> TrainResult:
    """The TrainResult the training flow saved for this run key (FileNotFoundError when absent or found corrupt)."""
    record = read_record(result_uri(store, run_key))
    if record is None:
        raise FileNotFoundError(f"no training result for run key {run_key} in {store.url}")
    return TrainResult.model_validate(record)


def result_saved_since(store: RunStore, run_key: str, since: float) -> bool:
    """Whether a TrainResult for this run key was saved after `since` (epoch seconds)."""
    stamp = modified_at(result_uri(store, run_key))
    return stamp is not None and stamp >= since


def run_key(
    tuples: Ref,
    pairs: Ref,
    base_model_sha: str,
    settings: TrainSettings,
    validation: Ref | None = None,
    corpus: Ref | None = None,
) -> str:
    """Content key of a training run: dataset, validation split, corpus, base model and hyper-parameters (not where it runs)."""
    return stable_hash(
        {
            "tuples": tuples.sha256,
            "pairs": pairs.sha256,
            "base": base_model_sha,
            "settings": settings.model_dump(exclude={"deployment", "processes"}),
            "validation": validation.sha256 if validation else None,
            "corpus": corpus.sha256 if corpus else None,
        }
    )[:24]
