"""`domain-embed plan`: what a run would do and cost, printed before any LLM call."""

from __future__ import annotations

import argparse

from .cli_options import add_run_options, config_from_args


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """The `plan` command: the run's options, plus --json."""
    plan = sub.add_parser(
        "plan",
        help="What a run would do and cost (documents, chunks, LLM calls, tokens, USD, time, training steps), "
        "before any LLM call",
    )
    add_run_options(plan)
    plan.add_argument("--json", action="store_true", help="Print the plan as one JSON line")
    plan.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    """Check the settings as a run would, then print the plan."""
    config = config_from_args(args)
    from ..tasks.checks import check_config
    from ..tasks.core import markdown_table
    from ..tasks.plan import plan_rows, plan_run

    docs, model_dir, _, _ = check_config(config)
    plan = plan_run(config, docs, model_dir)
    print(plan.model_dump_json() if args.json else markdown_table(plan_rows(plan)))
    return 0
