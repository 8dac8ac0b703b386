"""Process environment of a run: the offline defaults (tasks/core/env.py) and the run store of this process."""

from __future__ import annotations

import os

from ..tasks.core import OFFLINE_DEFAULTS, ONLINE_ENV, set_offline_defaults

__all__ = ["OFFLINE_DEFAULTS", "ONLINE_ENV", "set_offline_defaults", "use_store"]


def use_store(store_url: str | None = None) -> str:
    """Make the run store the default for this process and keep Prefect's cached results inside it."""
    from ..tasks.core import default_store_url

    store = (store_url or default_store_url()).rstrip("/")
    os.environ["DOMAIN_EMBED_STORE"] = store
    if "://" not in store:
        os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = os.path.join(store, "prefect-results")
    return store
