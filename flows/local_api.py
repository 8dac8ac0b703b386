"""Prefect's local (ephemeral) API for in-process runs: a database migrated before the first flow, time enough to start."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

STARTUP_TIMEOUT_S = 600
TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
TIMEOUT_MESSAGE = "Timed out while attempting to connect to ephemeral Prefect API server"


def uses_ephemeral_api() -> bool:
    """True when no Prefect API URL is configured, so a flow run starts Prefect's ephemeral server."""
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def migrate_local_database() -> None:
    """Create or upgrade Prefect's database once, under a lock that concurrent first runs share.

    The ephemeral server migrates a fresh SQLite database inside its start-up window (20 s by default), which a
    first run on a busy 2-core machine overruns; migrated here, the server only opens it.
    """
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_HOME

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".domain-embed-migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        asyncio.run(provide_database_interface().create_db())


def prepare_local_api() -> None:
    """Before an in-process run: migrate the local database; nothing to do against a configured server."""
    if uses_ephemeral_api():
        migrate_local_database()


def startup_timeout_hint() -> str:
    """The one-line explanation printed when the ephemeral server still did not answer in time."""
    seconds = os.environ.get(TIMEOUT_SETTING, STARTUP_TIMEOUT_S)
    return (
        f"Prefect's local API did not answer within {seconds} s (a very busy machine?): raise {TIMEOUT_SETTING}, "
        "or start a server once with `domain-embed up` and set PREFECT_API_URL to it"
    )
