"""Hard-negative mining: ours (domain_embed.tasks.mining.negatives.select_negatives) vs sentence_transformers.util.mine_hard_negatives.

Both get the same precomputed, structured unit embeddings (topics, paraphrases and near-duplicates of
positives, queries = noisy copies of their positive) and equivalent settings: 1 negative, ranks 0-50,
negative score < 0.95 x positive, FAISS. Prints one JSON line: wall times, ratio, overlap of choices.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time

from benchmarks.tiny import parse_args

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from domain_embed.tasks.mining.negatives import select_negatives  # noqa: E402
from domain_embed.tasks.settings import MineSettings  # noqa: E402

TINY = {"chunks": 500, "queries": 50, "repeats": 1}  # --tiny: what CI runs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(n_chunks: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks in topics; 10% of chunks are paraphrases (cos ~0.96) or near-copies (cos ~0.99) of a positive."""
    rng = np.random.default_rng(seed)
    noise = lambda n, scale: rng.standard_normal((n, dim)).astype(np.float32) * scale / np.sqrt(dim)  # noqa: E731
    n_extra = n_chunks // 10
    centres = _unit(rng.standard_normal((n_chunks // 50, dim)))
    base = _unit(centres[rng.integers(0, len(centres), n_chunks - n_extra)] * 0.7 + noise(n_chunks - n_extra, 0.7))
    positives = rng.choice(len(base), size=n_queries, replace=False)
    source = base[rng.choice(positives, size=n_extra)]
    scale = np.where(rng.random(n_extra) < 0.7, 0.3, 0.14)[:, None].astype(np.float32)
    chunks = np.concatenate([base, _unit(source + noise(n_extra, 1.0) * scale)])
    queries = _unit(base[positives] + noise(n_queries, 0.6))
    return chunks, queries, positives


class PrecomputedModel:
    """Stands in for a SentenceTransformer: 'c<i>' / 'q<i>' texts map to precomputed rows."""

    device = torch.device("cpu")

    def __init__(self, chunks: np.ndarray, queries: np.ndarray) -> None:
        self.tables = {"c": chunks, "q": queries}

    def get_embedding_dimension(self) -> int:
        return self.tables["c"].shape[1]

    def _encode(self, texts: list[str], **_: object) -> np.ndarray:
        return np.stack([self.tables[t[0]][int(t[1:])] for t in texts])

    encode_document = encode_query = _encode

    def similarity_pairwise(self, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.einsum("ij,ij->i", np.asarray(a), np.asarray(b)))


def run_ours(chunks, queries, positives, texts, settings) -> tuple[float, dict, dict]:
    start = time.perf_counter()
    neg, stats = select_negatives(queries, chunks, positives, ["d"] * len(chunks), texts, settings)
    rows = [
        {"anchor": f"q{i}", "positive": texts[p], "negative_1": texts[n[0]]}
        for i, (p, n) in enumerate(zip(positives, neg))
        if n[0] >= 0
    ]
    return time.perf_counter() - start, {r["anchor"]: r["negative_1"] for r in rows}, stats


def run_theirs(chunks, queries, positives, texts, settings) -> tuple[float, dict]:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    dataset = Dataset.from_dict(
        {"anchor": [f"q{i}" for i in range(len(queries))], "positive": [texts[p] for p in positives]}
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out = mine_hard_negatives(
            dataset,
            PrecomputedModel(chunks, queries),
            corpus=texts,
            range_min=settings.range_min,
            range_max=settings.range_max,
            relative_margin=round(1 - settings.max_score_ratio, 6),
            num_negatives=1,
            sampling_strategy="top",
            output_format="n-tuple",
            use_faiss=True,
            verbose=False,
        )
    elapsed = time.perf_counter() - start
    return elapsed, dict(zip(out["anchor"], out["negative_1"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2, help="Alternate runs of each; the fastest of each counts")
    args = parse_args(parser, TINY)
    chunks, queries, positives = make_data(args.chunks, args.queries, args.dim, seed=7)
    texts = [f"c{i}" for i in range(len(chunks))]
    settings = MineSettings(negatives_per_query=1, range_min=0, range_max=50, max_score_ratio=0.95)
    ours_s, theirs_s = [], []
    for _ in range(args.repeats):
        elapsed, ours, stats = run_ours(chunks, queries, positives, texts, settings)
        ours_s.append(elapsed)
        elapsed, theirs = run_theirs(chunks, queries, positives, texts, settings)
        theirs_s.append(elapsed)
    either = set(ours) | set(theirs)
    same = sum(ours.get(q) == theirs.get(q) for q in either)
    print(
        json.dumps(
            {
                "benchmark": "hard-negative mining, 1 negative, ranks 0-50, negative < 0.95 x positive",
                "queries": len(queries),
                "chunks": len(chunks),
                "dim": args.dim,
                "index": stats.index.type,
                "ours_s": round(min(ours_s), 3),
                "theirs_s": round(min(theirs_s), 3),
                "ratio_ours_over_theirs": round(min(ours_s) / min(theirs_s), 3),
                "overlap": round(same / max(1, len(either)), 4),
                "ours_queries_with_negative": len(ours),
                "theirs_queries_with_negative": len(theirs),
                "ours_rejected_false_negative": stats.rejected_false_negative,
                "ours_rejected_near_duplicate": stats.rejected_near_duplicate,
                "threads": faiss.omp_get_max_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
