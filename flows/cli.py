"""The `domain-embed` command: run the pipeline in-process, evaluate, search and export models, export datasets."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from ..tasks.core.allocator import preload_allocator
from .cli_options import add_run_options, config_from_args
from .env import ONLINE_ENV, set_offline_defaults


def package_version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import version

    return version("domain-embed")


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="domain-embed", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Build a tuned embedder from a folder of documents (in-process Prefect flow)")
    add_run_options(run)
    run.set_defaults(func=run_command)
    from . import cli_config, cli_eval, cli_plan, cli_server, cli_ship

    cli_plan.add_subcommands(sub)
    cli_eval.add_subcommands(sub)
    cli_ship.add_subcommands(sub)
    cli_server.add_subcommands(sub)
    cli_config.add_subcommands(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run build-embedder in-process and print the before/after table."""
    config = config_from_args(args)
    from ..tasks.core import markdown_table
    from ..tasks.publishing import bm25_rows, comparison_rows, hybrid_rows, secondary_rows
    from .api import build_embedder

    report = build_embedder(config)
    for label, evaluation in report["evaluation"].items():
        print(f"\nNDCG@10 / MRR@10 / Recall@10, base vs tuned, with 95% paired-bootstrap intervals ({label}):\n")
        print(markdown_table(comparison_rows(evaluation)))
        print(markdown_table(secondary_rows(evaluation)))
        for rows in (bm25_rows(evaluation), hybrid_rows(evaluation)):
            if rows:
                print(markdown_table(rows))
    print(f"Report: {Path(report['out_dir']) / 'report.md'}    Model: {Path(report['out_dir']) / 'model'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; config errors print one line and exit 2."""
    if argv is None:  # the console script: re-executed once with tcmalloc preloaded where the machine has it
        try:
            preload_allocator()
        except ValueError as exc:
            print(f"domain-embed: error: {exc}", file=sys.stderr)
            return 2
        argv = sys.argv[1:]
    if "--online" in argv:
        os.environ[ONLINE_ENV] = "1"  # before the defaults: the Hub libraries read HF_HUB_OFFLINE when imported
    set_offline_defaults()
    args = build_parser().parse_args(argv)
    from ..tasks.llm import LLMError

    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"domain-embed: error: {exc}", file=sys.stderr)
        return 2
    except LLMError as exc:
        print(f"domain-embed: error: the LLM failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        from ..tasks.core import out_of_space

        if exc.errno != errno.ENOSPC:
            raise
        print(f"domain-embed: error: {out_of_space(exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        from .local_api import TIMEOUT_MESSAGE, startup_timeout_hint

        if TIMEOUT_MESSAGE not in str(exc):
            raise
        print(f"domain-embed: error: {startup_timeout_hint()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
