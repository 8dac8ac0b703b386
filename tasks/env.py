"""Process environment for offline, quiet runs (no model hub, no price-list download, no telemetry); must be set
before prefect or the ML libraries are imported."""

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


def set_offline_defaults(*keys: str) -> None:
    """Offline, no-telemetry defaults (all, or only `keys`), without overriding what the user set."""
    for key in keys or OFFLINE_DEFAULTS:
        os.environ.setdefault(key, OFFLINE_DEFAULTS[key])
