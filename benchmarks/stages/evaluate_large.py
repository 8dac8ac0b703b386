"""Evaluate all-MiniLM-L6-v2 on a large synthetic corpus; prints one JSON line with wall time and peak RSS."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from benchmarks.tiny import parse_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain_embed.tasks.core.progress import peak_rss_mb  # noqa: E402
from domain_embed.tasks.embedding.models import load_model, resolve_model  # noqa: E402
from domain_embed.tasks.evaluation.evaluate import evaluate_retrieval  # noqa: E402

TINY = {"passages": 300, "queries": 20, "dims": "384,64"}  # --tiny: what CI runs


def vocabulary(model_dir: str) -> list[str]:
    """Whole alphabetic words of 4+ letters from the model's WordPiece vocabulary."""
    words = (Path(model_dir) / "vocab.txt").read_text().split()
    return [w for w in words if w.isalpha() and w.isascii() and len(w) >= 4]


def build(n_passages: int, n_queries: int, words_per_passage: int, words: list[str], seed: int):
    """Random-word passages; each query is half of one passage's words, shuffled, with that passage relevant."""
    rng = random.Random(seed)
    corpus = {f"p{i}": " ".join(rng.choices(words, k=words_per_passage)) + "." for i in range(n_passages)}
    queries, relevant = {}, {}
    for i, pid in enumerate(rng.sample(sorted(corpus), n_queries)):
        picked = rng.sample(corpus[pid].rstrip(".").split(), max(2, words_per_passage // 2))
        queries[f"q{i}"] = " ".join(picked) + "?"
        relevant[f"q{i}"] = {pid}
    return corpus, queries, relevant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--words", type=int, default=10, help="words per passage")
    parser.add_argument("--dims", default="384,64")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=13)
    args = parse_args(parser, TINY)
    dims = [int(d) for d in args.dims.split(",")]

    model_dir = resolve_model("all-MiniLM-L6-v2")
    model = load_model(model_dir)
    corpus, queries, relevant = build(args.passages, args.queries, args.words, vocabulary(model_dir), args.seed)
    start = time.perf_counter()
    results = evaluate_retrieval(model_dir, corpus, queries, relevant, dims, args.batch_size, show_progress=True)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "benchmark": "evaluate_large",
                "passages": len(corpus),
                "queries": len(queries),
                "words_per_passage": args.words,
                "dims": dims,
                "batch_size": args.batch_size,
                "device": str(model.device),
                "torch_threads": __import__("torch").get_num_threads(),
                "wall_s": round(wall, 1),
                "passages_per_s": round(len(corpus) / wall, 1),
                "peak_rss_mb": peak,
                "ndcg@10": {dim: round(r["ndcg@10"], 4) for dim, r in results.items()},
                "recall@100": {dim: round(r["recall@100"], 4) for dim, r in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
