"""`domain-embed config save` and `config show`: the configuration a docs folder's unattended runs use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `config save` and `config show` on the main parser's subparsers."""
    from .cli_options import add_run_options

    config = subparsers.add_parser(
        "config",
        help="Save or show a docs folder's configuration (what the server's unattended runs of that folder use)",
        description="Every run saves the configuration it ran with for its docs folder in the run store; the server's "
        "nightly and docs.landed runs of that folder use the one saved last. `config save` saves one without running.",
    )
    actions = config.add_subparsers(dest="action", required=True)
    save = actions.add_parser(
        "save", help="Save the configuration of a docs folder (the options of `run`), without running"
    )
    add_run_options(save)
    save.set_defaults(func=save_command)
    show = actions.add_parser("show", help="Print the configuration saved for a docs folder")
    show.add_argument("docs", help="Folder of documents")
    show.add_argument("--store", help="Run store folder or fsspec URL (default ~/.cache/domain-embed/store)")
    show.set_defaults(func=show_command)


def save_command(args: argparse.Namespace) -> int:
    """Validate the options like `run`, then save them as the docs folder's configuration."""
    from ..tasks.publishing import save_folder_config, settle
    from .cli_options import config_from_args
    from .env import use_store

    if not Path(args.docs).is_dir():
        raise FileNotFoundError(f"docs folder not found: {args.docs}")
    config = config_from_args(args)
    config.store_url = use_store(config.store_url)
    print(f"Saved: {save_folder_config(settle(config))}")
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Print the docs folder's saved configuration as JSON; exit 1 when none is saved."""
    from ..tasks.publishing import load_folder_config, saved_uri
    from .env import use_store

    store = use_store(args.store)
    config = load_folder_config(store, args.docs)
    if config is None:
        print(f"No configuration saved for {args.docs} (would be {saved_uri(store, args.docs)})")
        return 1
    print(json.dumps(config.model_dump(mode="json"), indent=1))
    return 0
