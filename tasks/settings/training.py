"""Settings of hard-negative mining and fine-tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Settings


class MineSettings(Settings):
    """Hard-negative mining with FAISS and the base model."""

    negatives_per_query: int = Field(1, ge=0, description="Hard negatives per (query, positive) pair")
    max_score_ratio: float = Field(
        0.95, gt=0, le=1, description="A negative must score below this fraction of the positive (TopK-PercPos)"
    )
    range_min: int = Field(0, ge=0, description="Skip this many top-ranked candidates")
    range_max: int = Field(50, ge=1, description="Consider candidates up to this rank")
    exclude_same_document: bool = Field(False, description="Never take a negative from the positive's document")
    exact_search_max: int = Field(200_000, ge=1, description="Exact index up to this many chunks, approximate above")
    seed: int = Field(13, description="Seed of the IVF training sample and of the recall-check query sample")
    near_duplicate_cosine: float = Field(
        0.98,
        gt=0,
        le=1,
        description="A candidate this close (cosine) to the positive chunk is a near-duplicate, never a negative",
    )
    approximate_index: Literal["hnsw", "ivf"] = Field("hnsw", description="Index used above exact_search_max chunks")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build-time beam width")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW search-time beam width (raised to range_max when lower)")
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists visited per query (lists = 4 x sqrt(chunks))")
    recall_sample: int = Field(
        256, ge=1, description="Queries sampled to measure the index's recall@range_max against exact search"
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per embedding batch")


class TrainSettings(Settings):
    """Fine-tuning hyper-parameters."""

    epochs: float | None = Field(
        None,
        gt=0,
        description="Passes over the training rows; empty: from the data, enough for min_steps optimizer steps "
        "(at most max_epochs), so a few hundred pairs still train long enough to matter",
    )
    min_steps: int = Field(
        60,
        ge=1,
        description="With epochs empty: train at least this many optimizer steps (fewer only at max_epochs passes)",
    )
    max_epochs: float = Field(8.0, gt=0, description="With epochs empty: never more passes than this over the rows")
    max_steps: int | None = Field(
        60,
        ge=1,
        description="With epochs empty: never more optimizer steps than this (or min_steps), even short of one pass. "
        "On the FAQ benchmark's pooled dev split a full pass (221 steps) scored no better than 65 steps (-0.011 "
        "[-0.033, +0.010] NDCG@10 at 384, -0.022 [-0.044, -0.001] at 256) at 3.4x the training time; empty: one pass",
    )
    batch_size: int = Field(
        32, ge=2, description="Rows per optimizer step; each query's in-batch negatives are the others' passages"
    )
    learning_rate: float = Field(
        3e-5, gt=0, description="Peak learning rate (AdamW, cosine decay); low, to keep what the base model knows"
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps warming the learning rate up from 0")
    teacher: str | None = Field(
        None,
        description="A stronger embedder whose in-batch scores the model learns to match (score distillation over "
        "every pair of the batch), e.g. all-mpnet-base-v2; empty: plain MultipleNegativesRankingLoss. Off by default: on "
        "the FAQ benchmark's pooled dev questions all-mpnet-base-v2 lowered NDCG@10 at 384 by 0.012 [0.001, 0.026] "
        "and made training 5x longer on 2 cores (its embeddings of every training text)",
    )
    distill_weight: float = Field(1.0, ge=0, description="Weight of the teacher's KL term against the ranking loss")
    rank_weight: float = Field(
        1.0,
        ge=0,
        description="With a teacher: weight of the ranking loss on the generated labels (0: learn from the teacher's scores alone)",
    )
    matryoshka_dims: list[int] | None = Field(None, description="Default: full dim halved down to 64")
    matryoshka_weights: list[float] | None = Field(
        None, description="Loss weight per Matryoshka dim (largest first); default 1 each"
    )
    cached_mnrl_mini_batch: int | None = Field(
        None,
        description="Use CachedMultipleNegativesRankingLoss with this mini-batch (no teacher): bigger batches than memory holds",
    )
    max_seq_length: int | None = Field(None, description="Tokens per text; default: the base model's")
    attention_dropout: float | None = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on the attention weights while training (the model config's attention_probs_dropout_prob "
        "or attention_dropout; a model with neither keeps its own); empty: the model's own (0.1 for MiniLM). At 0, "
        "PyTorch's fused attention never holds the attention matrix: on 2 cores 2.4x the steps/s and 3.96 GB peak "
        "instead of 8.3 (benchmarks/stages/train_memory.py), NDCG@10 on the FAQ dev split -0.007 [-0.021, +0.007]",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute each layer's activations in the backward pass instead of keeping them: the same model "
        "for less memory and more time; empty: on when training on a CPU, off on a GPU. FAQ corpus, 2 cores: the run's "
        "peak 2.95 instead of 4.14 GiB, its training 229 instead of 199 s (benchmarks/stages/train_memory.py: 1.4x the "
        "seconds per step alone)",
    )
    seed: int = Field(13, description="Seed of shuffling, sampling and initialisation")
    evaluations: int = Field(
        4,
        ge=0,
        description="Times the validation split is scored during training; the best checkpoint is kept (0: the last)",
    )
    validation_pool: int | None = Field(
        2000,
        ge=1,
        description="Chunks a validation pass ranks its queries among: their relevant chunks and a seeded sample of the "
        "rest (None: every chunk; each pass embeds the pool with the current weights)",
    )
    deployment: str | None = Field(
        None, description="Run training as this deployment (e.g. 'train-embedder/gpu'); in-process when empty"
    )
    processes: int = Field(
        1,
        ge=0,
        description="Data-parallel training processes on the training machine, one per GPU (DDP; in-batch "
        "negatives gathered across them; the global batch stays batch_size, rounded down to a multiple of the processes); "
        "0: one per visible GPU; 1: train in the task's own process",
    )
    rotate: bool = Field(
        True,
        description="After training, rotate the output space onto the principal axes of the corpus's embeddings (an "
        "orthogonal layer: full-dimension scores unchanged) so that truncated Matryoshka embeddings keep the directions "
        "along which the passages differ most",
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding)")
    bf16: bool | None = Field(None, description="bf16 autocast in training; empty: where the chip has bf16 natively")
    compile: bool = Field(
        False,
        description="torch.compile the transformer (dynamic shapes). Compiling costs about a minute up front, so it can "
        "only pay on a GPU for long runs; check with benchmarks/stages/train_throughput.py --compile. Leave off on CPU",
    )
