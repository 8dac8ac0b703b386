"""Settings of the corpus stages: finding and parsing documents, chunking them, where they run, and embedding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Settings


class ParseSettings(Settings):
    """How documents are found and parsed."""

    strategy: Literal["fast", "auto", "hi_res"] = Field("fast", description="unstructured partition strategy")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are reported and not read")
    max_inflated_mb: float = Field(
        200.0, gt=0, description="Zip-based documents (.docx) that would inflate past this are reported and not parsed"
    )
    extensions: list[str] = Field(
        [".pdf", ".html", ".htm", ".md", ".markdown", ".docx", ".txt", ".text", ".rst"],
        description="File extensions that are parsed; others are reported as unsupported",
    )


class ChunkSettings(Settings):
    """Token-aware chunking with the base model's tokenizer."""

    chunk_tokens: int = Field(200, ge=16, description="Chunk size in base-model tokens (kept under max_seq_length)")
    overlap_tokens: int = Field(24, ge=0, description="Token overlap between neighbouring chunks")
    min_tokens: int = Field(24, ge=1, description="Chunks shorter than this are dropped as too short")


class RunnerSettings(Settings):
    """Where the heavy stages (parse, chunk, corpus embedding) run, and in how many tasks."""

    address: str | None = Field(
        None,
        description="Dask scheduler address (e.g. tcp://scheduler:8786): parse, chunk and corpus embedding run "
        "on that cluster through prefect-dask's DaskTaskRunner; empty: threads in the flow's own process",
    )
    documents_per_task: int = Field(
        100,
        ge=1,
        description="Documents per parse or chunk task: larger batches cost less orchestration per document, "
        "smaller ones spread better over workers (each document is still cached on its own)",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="Tasks run at once in the flow's own process (no address): empty means one per CPU core. "
        "More threads than cores only contend for Python's GIL",
    )


class EmbedSettings(Settings):
    """How models embed texts outside training: prepare, mining, the round-trip filter, evaluate and publish."""

    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="Inference backend. 'torch': PyTorch fp32; 'onnx': ONNX Runtime fp32 on the CPU, the model "
        "exported once per model hash into the run store; 'auto': torch on a GPU, else whichever of the two embeds "
        "faster on this CPU, timed once per CPU and model and kept in the machine's cache (a corpus under 1,000 chunks, "
        "too small to repay the timing, takes torch untimed). Both leave retrieval, mining and the round-trip filter "
        "unchanged on the Debian FAQ benchmark (benchmarks/stages/backend_parity.py); bf16 and int8 did not and are "
        "not offered",
    )
