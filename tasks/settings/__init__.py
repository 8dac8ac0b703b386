"""Settings of the stages: one pydantic model per stage, read by the stage modules, and PipelineConfig, which assembles
them into everything a build-embedder run needs (also the run form in the Prefect UI)."""

from __future__ import annotations

from pydantic import Field

from .base import EMBEDDED_LARGE_LLM, EMBEDDED_LLM, EMBEDDED_LLMS, Settings
from .corpus import ChunkSettings, EmbedSettings, ParseSettings, RunnerSettings
from .questions import FilterSettings, LLMSettings, SplitSettings, SupervisionSettings
from .training import MineSettings, TrainSettings

__all__ = [
    "EMBEDDED_LARGE_LLM",
    "EMBEDDED_LLM",
    "EMBEDDED_LLMS",
    "ChunkSettings",
    "EmbedSettings",
    "FilterSettings",
    "LLMSettings",
    "MineSettings",
    "ParseSettings",
    "PipelineConfig",
    "RunnerSettings",
    "Settings",
    "SplitSettings",
    "SupervisionSettings",
    "TrainSettings",
]


class PipelineConfig(Settings):
    """Everything a build-embedder run needs."""

    docs_dir: str = Field(..., description="Folder of documents (PDF, HTML, Markdown, DOCX, TXT)")
    out_dir: str | None = Field(
        None,
        description="Where model/, index/, report.json and report.md are written; empty: the docs folder's own "
        "folder, outputs/<folder name>-<hash of its path> beside the run store, which no other folder's run writes to",
    )
    store_url: str | None = Field(
        None, description="Run store (folder or fsspec URL); default ~/.cache/domain-embed/store"
    )
    model_name: str = Field(
        "default", description="Name of this model line: the run store keeps one `current` (promoted) model per name"
    )
    base_model: str = Field(
        "all-MiniLM-L6-v2", description="Model folder, packaged model name, or Hugging Face id ORG/NAME[@revision]"
    )
    eval_dataset: str | None = Field(None, description="BEIR-layout folder of your own labelled queries")
    parse: ParseSettings = Field(ParseSettings(), description="How documents are found and parsed")
    chunk: ChunkSettings = Field(ChunkSettings(), description="How documents are cut into chunks")
    llm: LLMSettings = Field(LLMSettings(), description="The LLM that writes questions for the chunks")
    filter: FilterSettings = Field(FilterSettings(), description="Which generated questions are kept")
    split: SplitSettings = Field(SplitSettings(), description="Train / validation / eval split by document")
    supervision: SupervisionSettings = Field(SupervisionSettings(), description="Training pairs that cost no LLM call")
    embed: EmbedSettings = Field(EmbedSettings(), description="How models embed texts outside training")
    mine: MineSettings = Field(MineSettings(), description="Hard-negative mining")
    train: TrainSettings = Field(TrainSettings(), description="Fine-tuning hyper-parameters")
    runner: RunnerSettings = Field(RunnerSettings(), description="Where the heavy stages run, and in how many tasks")
