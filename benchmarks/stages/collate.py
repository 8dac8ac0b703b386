"""Collating a training batch: the stock SentenceTransformer collator (tokenizes every batch) vs domain_embed.tasks.training.token_cache.

Rows as in train_throughput (6-18 word queries, two 120-230 word passages, random vocabulary words), the
packaged MiniLM's tokenizer at max sequence length 256. Prints one JSON line: seconds to build the cache
over all distinct texts, and milliseconds per batch for both collators (mean over --batches batches,
after one untimed batch), with a check that both produce the same tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks.tiny import parse_args
from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator  # noqa: E402

from benchmarks.stages.train_throughput import MAX_SEQ_LENGTH, random_rows  # noqa: E402
from domain_embed.tasks.embedding.models import resolve_model  # noqa: E402
from domain_embed.tasks.training.token_cache import TokenCache  # noqa: E402

TINY = {"batch_size": 16, "batches": 2}  # --tiny: what CI runs


def ms_per_batch(collate, batches: list[list[dict]]) -> float:
    """Mean wall milliseconds of `collate` over the batches after the first."""
    collate(batches[0])
    started = time.perf_counter()
    for batch in batches[1:]:
        collate(batch)
    return 1000 * (time.perf_counter() - started) / (len(batches) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8, help="Timed batches (one more is untimed)")
    args = parse_args(parser, TINY)
    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    rows = random_rows(model.tokenizer, args.batch_size * (args.batches + 1), seed=3)
    batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    texts = [text for row in rows for text in row.values()]
    started = time.perf_counter()
    cache = TokenCache.build(model, texts)
    build_s = time.perf_counter() - started
    stock = SentenceTransformerDataCollator(preprocess_fn=model.preprocess)
    cached = SentenceTransformerDataCollator(preprocess_fn=cache)
    same = all(
        torch.equal(v, stock(batches[0])[k]) for k, v in cached(batches[0]).items() if isinstance(v, torch.Tensor)
    )
    record = {
        "benchmark": "collate",
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "distinct_texts": len(cache.rows),
        "cache_build_s": round(build_s, 3),
        "stock_ms_per_batch": round(ms_per_batch(stock, batches), 2),
        "cached_ms_per_batch": round(ms_per_batch(cached, batches), 2),
        "same_tensors": same,
        "cpus": os.cpu_count(),
    }
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
