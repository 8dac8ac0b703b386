"""Python API for notebooks: what the `domain-embed` commands run, without the printing.

from .api import PipelineConfig, build_embedder, evaluate, search
report = build_embedder(PipelineConfig(docs_dir="my-docs", out_dir="my-run"))
result = search("my-run", "how is the WAL flushed?", k=5, dim=128)
"""

from __future__ import annotations

from ..tasks.evaluation import EvalReport
from ..tasks.publishing import export_run as export
from ..tasks.publishing import search_run as search
from ..tasks.settings import PipelineConfig
from .env import set_offline_defaults, use_store

__all__ = ["PipelineConfig", "build_embedder", "evaluate", "export", "search"]


def build_embedder(config: PipelineConfig) -> dict:
    """`domain-embed run`: the build-embedder flow in-process, in the config's run store; returns report.json's dict."""
    set_offline_defaults()
    from .local_api import prepare_local_api
    from .pipeline import build_embedder as flow
    from .pipeline import check_config, check_cost

    config.store_url = use_store(config.store_url)
    docs, model_dir, _, _ = check_config(config)
    check_cost(config, docs, model_dir)  # before the Prefect server starts; the flow checks again (UI runs)
    prepare_local_api()
    return flow(config)


def evaluate(models: dict[str, str], dataset: str, dims: list[int] | None = None) -> EvalReport:
    """`domain-embed evaluate`: models (label -> folder or packaged name) on a BEIR-layout folder, with the BM25 row."""
    set_offline_defaults()
    from ..tasks.embedding import default_matryoshka_dims, model_dimension, resolve_model
    from ..tasks.evaluation import evaluate_dataset, load_beir

    folders = {label: resolve_model(name) for label, name in models.items()}
    dims = dims or default_matryoshka_dims(min(model_dimension(folder) for folder in folders.values()))
    return evaluate_dataset(folders, load_beir(dataset), dims)
