"""Pipeline parameters: PipelineConfig assembles the stages' settings (tasks/settings.py) into one pydantic
model, which is also the run form in the Prefect UI."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from tasks.settings import (
    ChunkSettings,
    FilterSettings,
    LLMSettings,
    MineSettings,
    ParseSettings,
    RunnerSettings,
    SplitSettings,
    SupervisionSettings,
    TrainSettings,
)


class PipelineConfig(BaseModel):
    """Everything a build-embedder run needs."""

    docs_dir: str = Field(..., description="Folder of documents (PDF, HTML, Markdown, DOCX, TXT)")
    out_dir: str = Field("out", description="Where model/, index/, report.json and report.md are written")
    store_url: Optional[str] = Field(None, description="Run store (folder or fsspec URL); default ~/.cache/domain-embed/store")
    model_name: str = Field(
        "default", description="Name of this model line: the run store keeps one `current` (promoted) model per name"
    )
    base_model: str = Field("all-MiniLM-L6-v2", description="SentenceTransformer folder or packaged model name")
    eval_dataset: Optional[str] = Field(None, description="BEIR-layout folder of your own labelled queries")
    parse: ParseSettings = ParseSettings()
    chunk: ChunkSettings = ChunkSettings()
    llm: LLMSettings = LLMSettings()
    filter: FilterSettings = FilterSettings()
    split: SplitSettings = SplitSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    mine: MineSettings = MineSettings()
    train: TrainSettings = TrainSettings()
    runner: RunnerSettings = RunnerSettings()
