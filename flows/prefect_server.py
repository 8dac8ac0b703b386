"""`prefect server start` as `domain-embed up` runs it: SQLite write transactions begin IMMEDIATE.

Prefect 3.8.8 begins most write transactions DEFERRED on SQLite (e.g. creating a flow run from a deployment reads the
deployment, then inserts). When another connection commits in between, SQLite cannot upgrade the read lock and fails
at once with SQLITE_BUSY, whatever the busy timeout; the API answers 503. Begun IMMEDIATE, a writer takes the write
lock up front and waits its turn (Prefect's busy_timeout, 60 s) instead.
"""

from __future__ import annotations

import sys


def begin_sqlite_transactions_immediately() -> None:
    """Make Prefect's SQLite sessions take the write lock when their transaction begins."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    begin = AioSqliteConfiguration.begin_transaction

    def immediate(self, session, with_for_update: bool = False):
        return begin(self, session, with_for_update=True)

    AioSqliteConfiguration.begin_transaction = immediate


def main(argv: list[str]) -> None:
    """`prefect server start ARGV` in this process (one uvicorn worker: the API and its services share the patch)."""
    begin_sqlite_transactions_immediately()
    from prefect.cli import app

    sys.argv = [sys.argv[0], "server", "start", *argv]  # Prefect's CLI reads its arguments from sys.argv
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
