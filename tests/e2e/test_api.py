"""The notebook API: the CLI's functions importable from one module, returning data instead of printing."""

from __future__ import annotations

import inspect
import os

import pytest
from test_evaluate import write_beir


def test_api_exports_what_the_readme_shows():
    import domain_embed.flows.api as api
    from domain_embed.flows.api import PipelineConfig, build_embedder, evaluate, export, search

    assert set(api.__all__) == {"PipelineConfig", "build_embedder", "evaluate", "export", "search"}
    assert PipelineConfig(docs_dir="docs").base_model == "all-MiniLM-L6-v2"
    for function in (build_embedder, evaluate, export, search):
        assert inspect.getdoc(function)


def test_api_search_returns_hits(tiny_run):
    from domain_embed.flows.api import search

    result = search(str(tiny_run), "Who was the Great Pyramid built for?", k=2, dim=128)
    assert (result.dim, len(result.tuned), len(result.base)) == (128, 2, 2)
    assert result.tuned[0].file == "pyramids.md" and 0 < result.tuned[0].score <= 1


def test_api_evaluate_on_a_beir_folder(tmp_path):
    from domain_embed.flows.api import evaluate

    report = evaluate({"base": "all-MiniLM-L6-v2"}, str(write_beir(tmp_path / "mine")), dims=[64])
    assert report.label == "user:mine" and set(report.results["base"]) == {64}
    assert report.results["base"][64]["ndcg@10"] > 0.5 and 0 <= report.bm25["ndcg@10"] <= 1


def test_api_build_embedder_fails_before_any_cost(tmp_path, monkeypatch):
    from domain_embed.flows.api import PipelineConfig, build_embedder

    for name in (
        "DOMAIN_EMBED_STORE",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
    ):  # build_embedder points the process at its store
        monkeypatch.setenv(name, os.environ.get(name, str(tmp_path / name)))

    with pytest.raises(ValueError, match="docs folder not found"):
        build_embedder(
            PipelineConfig(
                docs_dir=str(tmp_path / "missing"), out_dir=str(tmp_path / "out"), store_url=str(tmp_path / "s")
            )
        )
    assert not (tmp_path / "out").exists()
