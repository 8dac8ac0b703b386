"""Every benchmark's tiny mode: `--tiny` swaps its defaults for seconds-scale inputs, so CI runs each script for real
and checks its JSON line's keys (tests/e2e/test_benchmarks.py); an option given explicitly still wins."""

from __future__ import annotations

import argparse


def parse_args(parser: argparse.ArgumentParser, tiny: dict, argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed options; with --tiny, `tiny`'s values replace the defaults."""
    parser.add_argument("--tiny", action="store_true", help="Seconds-scale run on tiny inputs (what CI runs)")
    if parser.parse_known_args(argv)[0].tiny:
        parser.set_defaults(**tiny)
    return parser.parse_args(argv)
