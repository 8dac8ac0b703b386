"""`domain-embed evaluate` and `domain-embed export-beir`: plain commands, no Prefect run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..tasks.core import read_jsonl
from ..tasks.embedding import ModelNotFound, load_model, resolve_model
from ..tasks.evaluation import DatasetError, export_beir, load_beir


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` and `export-beir` on the main parser's subparsers."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="Score embedding models on a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)",
        description="NDCG@10, MRR@10, Recall@10, Recall@100 and MAP@100 per model and Matryoshka dimension, and of BM25 (lexical).",
    )
    evaluate.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="SentenceTransformer folder or packaged model name; repeat to compare models",
    )
    evaluate.add_argument("--dataset", required=True, metavar="DIR", help="BEIR-layout folder")
    evaluate.add_argument(
        "--dims",
        type=parse_dims,
        metavar="D1,D2,...",
        help="Embedding dimensions to score (default: the full dimension halved down to 64)",
    )
    evaluate.add_argument("--out", metavar="FILE", help="JSON results file (default: evaluation-<dataset>.json)")
    evaluate.add_argument("--batch-size", type=int, default=64, metavar="N", help="Encoding batch size (default 64)")
    evaluate.set_defaults(func=run_evaluate)

    export = subparsers.add_parser(
        "export-beir",
        help="Write a pipeline run's synthetic eval split as a BEIR-layout folder",
    )
    export.add_argument("out_dir", metavar="OUT_DIR", help="Folder for corpus.jsonl, queries.jsonl, qrels/test.tsv")
    export.add_argument(
        "--run", required=True, metavar="RUN_OUT", help="Out folder of a pipeline run (has report.json)"
    )
    export.set_defaults(func=run_export_beir)


def parse_dims(value: str) -> list[int]:
    """'384,128,64' -> [384, 128, 64]; anything else is an argparse error."""
    try:
        dims = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"dims must be comma-separated integers, got '{value}'") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"dims must be positive integers, got '{value}'")
    return dims


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate each --model on --dataset, print one table and write the JSON results."""
    from ..tasks.embedding import default_matryoshka_dims
    from ..tasks.evaluation import evaluate_models, render_table, score_bm25

    if args.batch_size < 1:
        return _fail("--batch-size must be at least 1")
    if len(set(args.model)) != len(args.model):
        return _fail("each --model must be different")
    try:
        models = {name: resolve_model(name) for name in args.model}
        dataset = load_beir(args.dataset)
        sizes = {name: load_model(path).get_embedding_dimension() for name, path in models.items()}
        dims = args.dims or default_matryoshka_dims(min(sizes.values()))
        for name, size in sizes.items():
            if max(dims) > size:
                return _fail(f"dimension {max(dims)} is larger than model {name}'s {size} dimensions")
        results, _ = evaluate_models(
            models, dataset.corpus, dataset.queries, dataset.relevant, dims, args.batch_size, show_progress=True
        )
        bm25 = score_bm25(dataset.corpus, dataset.queries, dataset.relevant)
    except (DatasetError, ModelNotFound, ValueError) as exc:
        return _fail(str(exc))
    label = f"user:{dataset.name}"
    title = f"{label}: {len(dataset.queries)} queries, {len(dataset.corpus)} passages"
    if dataset.ignored_queries:
        title += f" ({dataset.ignored_queries} queries without relevant qrels ignored)"
    print(render_table(results, title, bm25=bm25))
    out = Path(args.out or f"evaluation-{dataset.name}.json")
    record = {
        "dataset": label,
        "queries": len(dataset.queries),
        "passages": len(dataset.corpus),
        "ignored_queries": dataset.ignored_queries,
        "dims": sorted(set(dims), reverse=True),
        "models": models,
        "results": results,
        "bm25": bm25,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"Results written to {out}")
    return 0


def run_export_beir(args: argparse.Namespace) -> int:
    """Export the eval split named by RUN_OUT/report.json to OUT_DIR in BEIR layout."""
    report_path = Path(args.run) / "report.json"
    try:
        store = json.loads(report_path.read_text())["store"]
        corpus_uri, pairs_uri = store["corpus"], store["eval_pairs"]
    except FileNotFoundError:
        return _fail(f"{report_path} not found: --run must be the out folder of a finished pipeline run")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return _fail(f"{report_path} has no store.corpus and store.eval_pairs entries ({type(exc).__name__}: {exc})")
    try:
        counts = export_beir(read_jsonl(corpus_uri), read_jsonl(pairs_uri), args.out_dir)
    except (OSError, ValueError) as exc:
        return _fail(f"export failed: {exc}")
    print(
        f"Wrote {counts['passages']} passages, {counts['queries']} queries, {counts['qrels']} qrels to {args.out_dir}"
    )
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
