"""Process environment for offline, quiet runs: no model hub, no price-list download, no telemetry.

Importing a module of this project changes no environment variable. Entrypoints apply the defaults: the CLI's
main, the module that prefect.yaml's deployments load (flows/deployed.py) and the notebook API, before prefect and
the ML libraries are imported. A stage module that imports a library which reads one of them at import time does
so inside `import_defaults`, which leaves os.environ as it found it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

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


HUB_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # left unset when the user allows the network
ONLINE_ENV = "DOMAIN_EMBED_ONLINE"  # 1: models named by Hub id may be downloaded (the CLI's --online sets it)


def online() -> bool:
    """Whether the user allowed the network (`--online` or DOMAIN_EMBED_ONLINE=1); off by default."""
    return os.environ.get(ONLINE_ENV, "").lower() in ("1", "true", "yes")


def set_offline_defaults(*keys: str) -> None:
    """Offline, no-telemetry defaults (all, or only `keys`), without overriding what the user set; online, the Hub may
    be reached (telemetry stays off)."""
    for key in keys or OFFLINE_DEFAULTS:
        if not (online() and key in HUB_KEYS):
            os.environ.setdefault(key, OFFLINE_DEFAULTS[key])


@contextlib.contextmanager
def import_defaults(*keys: str) -> Iterator[None]:
    """The offline defaults `keys` while a library that reads them at import time is imported, then os.environ as before."""
    added = [key for key in keys if key not in os.environ]
    set_offline_defaults(*keys)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
