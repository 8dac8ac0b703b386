"""`domain-embed up`, `down` and `watch`: server mode on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .server import DEFAULT_DOCS, DEFAULT_PORT, DEFAULT_STATE, ServerError, down, running_api_url, up


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `up`, `down` and `watch` on the main parser's subparsers."""
    start = subparsers.add_parser(
        "up",
        help="Start a local Prefect server, the cpu and gpu workers and the deployments of prefect.yaml",
        description="Prefect server (SQLite) on 127.0.0.1, work pools cpu and gpu, one process worker each, "
        "`prefect deploy --all`; everything runs in the background until `domain-embed down`.",
    )
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Server port (default {DEFAULT_PORT})")
    start.add_argument(
        "--state",
        default=DEFAULT_STATE,
        help=f"Folder for the database, logs and process ids (default {DEFAULT_STATE})",
    )
    start.add_argument(
        "--docs",
        default=str(DEFAULT_DOCS),
        help="Docs folder of the nightly pipeline and the watcher (default: the bundled example of a source checkout)",
    )
    start.add_argument(
        "--store", help="Run store folder or fsspec URL shared by the workers (default ~/.cache/domain-embed/store)"
    )
    start.add_argument(
        "--timeout", type=float, default=180, help="Seconds to wait for the server to answer (default 180)"
    )
    start.set_defaults(func=run_up)

    stop = subparsers.add_parser("down", help="Stop the server and workers that `domain-embed up` started")
    stop.add_argument("--state", default=DEFAULT_STATE, help=f"State folder given to `up` (default {DEFAULT_STATE})")
    stop.set_defaults(func=run_down)

    watch = subparsers.add_parser(
        "watch", help="Run watch-docs once: emit docs.landed when the folder's documents changed"
    )
    watch.add_argument("docs", help="Folder of documents")
    watch.add_argument(
        "--variable", help="Prefect Variable keeping the last fingerprint (default: derived from the folder)"
    )
    watch.add_argument("--store", help="Run store for the fingerprint files (default ~/.cache/domain-embed/store)")
    watch.add_argument(
        "--state",
        default=DEFAULT_STATE,
        help="Use the server `up` started from this folder unless PREFECT_API_URL is set",
    )
    watch.set_defaults(func=run_watch)


def run_up(args: argparse.Namespace) -> int:
    """Start server mode and print the UI address."""
    from .env import use_store

    use_store(args.store)
    try:
        url = up(Path(args.state), args.port, Path(args.docs), args.timeout)
    except ServerError as exc:
        print(f"domain-embed: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Prefect UI: {url}    Stop with: domain-embed down{'' if args.state == DEFAULT_STATE else f' --state {args.state}'}"
    )
    return 0


def run_down(args: argparse.Namespace) -> int:
    """Stop what `up` started from the state folder."""
    stopped = down(Path(args.state))
    print(f"Stopped: {', '.join(stopped)}" if stopped else f"Nothing running from {args.state}")
    return 0


def run_watch(args: argparse.Namespace) -> int:
    """Run watch-docs in-process against the server (PREFECT_API_URL, else the one `up` started) and print the diff."""
    from .env import use_store

    store = use_store(args.store)
    url = None if os.environ.get("PREFECT_API_URL") else running_api_url(Path(args.state))
    if url:
        os.environ["PREFECT_API_URL"] = url
    from .watch import watch_docs

    print(json.dumps(watch_docs(args.docs, args.variable, store), indent=1))
    return 0
