"""Process environment for offline, quiet runs; must run before prefect or the ML libraries are imported."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # library progress bars off: each stage logs its own progress line
    "TQDM_DISABLE": "1",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
}


def set_offline_defaults() -> None:
    """Offline, no-telemetry defaults, without overriding what the user set."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def use_store(store_url: str | None = None) -> str:
    """Make the run store the default for this process and keep Prefect's cached results inside it."""
    from tasks.store import default_store_url

    store = (store_url or default_store_url()).rstrip("/")
    os.environ["DOMAIN_EMBED_STORE"] = store
    if "://" not in store:
        os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = os.path.join(store, "prefect-results")
    return store
