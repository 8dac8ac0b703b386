"""A flow that stands in for build-embedder behind the docs.landed trigger (test_server.py deploys it from this file,
which a worker loads by path: it imports nothing of the tests)."""

from __future__ import annotations

from prefect import flow

from domain_embed.tasks.settings import PipelineConfig


@flow(name="landed-probe")
def landed_probe(config: PipelineConfig, use_saved_config: bool = False) -> str:
    """Same parameters as build-embedder: echoes the folder it was asked to build."""
    return config.docs_dir
