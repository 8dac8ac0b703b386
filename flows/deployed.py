"""The flows as prefect.yaml deploys them: the entrypoint module that a worker's flow run (and `prefect deploy`) loads.

Loading it applies the offline defaults (tasks/core/env.py) before the flow's module, and with it the ML libraries, is
imported: no other module of the package touches os.environ when imported. Each flow is imported when asked for, so
the 5-minute docs watcher never loads the training stack.
"""

from __future__ import annotations

import importlib

from .env import set_offline_defaults

set_offline_defaults()

FLOWS = {
    "build_embedder": "domain_embed.flows.pipeline",
    "train_embedder": "domain_embed.flows.train",
    "watch_docs": "domain_embed.flows.watch",
}
__all__ = list(FLOWS)


def __getattr__(name: str):
    """`domain_embed.flows.deployed:<flow>` (prefect.yaml's entrypoints): the flow from its own module."""
    if name not in FLOWS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(FLOWS[name]), name)
