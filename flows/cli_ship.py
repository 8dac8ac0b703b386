"""`domain-embed search` and `domain-embed export`: try a run's published model, and ship it as ONNX."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tasks.publishing import Hit, SearchResult

SNIPPET_LINES = 2


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `search` and `export` on the main parser's subparsers."""
    search = subparsers.add_parser(
        "search",
        help="Top passages of a run's index for a query: the tuned model beside the base model",
    )
    search.add_argument("query", metavar="QUERY", help="What to look for, in plain words")
    search.add_argument(
        "--run", required=True, metavar="OUT", help="Out folder of a pipeline run (model/, index/, report.json)"
    )
    search.add_argument("--k", type=int, default=5, metavar="N", help="Passages to show per model (default 5)")
    search.add_argument(
        "--dim", type=int, metavar="D", help="Truncate embeddings to D dimensions (Matryoshka; default: all)"
    )
    search.add_argument(
        "--base-model", metavar="M", help="Base model to compare with (default: the run's, from report.json)"
    )
    search.set_defaults(func=run_search)

    export = subparsers.add_parser(
        "export",
        help="Write a run's published model as ONNX (and int8), compared with PyTorch: NDCG@10 per dim, CPU speed",
    )
    export.add_argument(
        "--run", required=True, metavar="OUT", help="Out folder of a pipeline run (model/, report.json)"
    )
    export.add_argument("--onnx", action="store_true", help="Write OUT/model/onnx/model.onnx (fp32)")
    export.add_argument(
        "--int8", action="store_true", help="Also write a dynamically quantized int8 copy, model_qint8.onnx"
    )
    export.set_defaults(func=run_export)


def run_search(args: argparse.Namespace) -> int:
    """Print the tuned and the base model's top passages side by side."""
    from ..tasks.publishing import search_run

    result = search_run(args.run, args.query, args.k, args.dim, args.base_model)
    width = min(160, max(80, shutil.get_terminal_size((100, 24)).columns))
    print(render_hits(result, f"tuned: {Path(args.run) / 'model'}", width))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export, compare with PyTorch, print the table and where export.json and export.md are."""
    from ..tasks.core import markdown_table
    from ..tasks.publishing import export_rows, export_run

    if not args.onnx:
        raise ValueError("nothing to export: give --onnx (and --int8 for an int8 copy as well)")
    record = export_run(args.run, int8=args.int8)
    print(markdown_table(export_rows(record)))
    print(
        f"Files: {', '.join(record['files'].values())} in {args.run}    Comparison: {args.run}/export.json, {args.run}/export.md"
    )
    return 0


def render_hits(result: SearchResult, tuned_title: str, width: int) -> str:
    """Two columns, tuned left and base right: per rank the score and file, then the start of the passage."""
    column = (width - 8) // 2
    lines = [
        f'Query: "{result.query}"   top {max(len(result.tuned), len(result.base))} of {result.passages} passages, '
        f"dim {result.dim}, cosine scores",
        "",
        f"{'':5}{tuned_title[:column]:<{column}}   base: {result.base_model}"[:width],
    ]
    for rank in range(max(len(result.tuned), len(result.base))):
        cells = [_cell(found[rank] if rank < len(found) else None, column) for found in (result.tuned, result.base)]
        for row, (left, right) in enumerate(zip(*cells)):
            prefix = f"{rank + 1:>2}.  " if row == 0 else " " * 5
            lines.append(f"{prefix}{left:<{column}}   {right}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _cell(hit: Hit | None, width: int) -> list[str]:
    """Score and file on the first line, then the passage (its section first) on SNIPPET_LINES wrapped lines."""
    if hit is None:
        return [""] * (1 + SNIPPET_LINES)
    text = " ".join(f"{hit.section}: {hit.text}".split() if hit.section else hit.text.split())
    wrapped = textwrap.wrap(text, width) or [""]
    if len(wrapped) > SNIPPET_LINES:
        rest = " ".join(wrapped[SNIPPET_LINES - 1 :])
        wrapped = wrapped[: SNIPPET_LINES - 1] + [textwrap.shorten(rest, width, placeholder=" ...")]
    return [f"{hit.score:.4f}  {hit.file}"[:width], *wrapped, *[""] * (SNIPPET_LINES - len(wrapped))]
