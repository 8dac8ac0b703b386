"""Do the inference backends leave retrieval unchanged? Each backend (PyTorch fp32, PyTorch bf16 autocast, ONNX Runtime
fp32 and int8) embeds every Debian FAQ domain's corpus and its dev and test queries (benchmarks/faq/domains.py); per
dim, its pooled NDCG@10 minus PyTorch fp32's, and the share of queries whose top 10 is the same set of passages. Beside
retrieval, the decisions taken on the base model's embeddings outside evaluation, with each query's first relevant
passage as its positive: the hard negative mining picks (mine's defaults) and the round-trip filter's keep or drop (at
top k 20, its value when it was on by default).

Prints one JSON line: under `backends`, per backend `passages_per_s` (the corpus embedding), `ndcg@10` and `minus_torch` per dim, and
`same_top10` per dim; `unchanged` says whether it meets the bar embed.backend's auto is held to (NDCG@10 within
0.001 at every dim, the same top 10 for at least 99.5% of queries); `same_negative` and `same_roundtrip` are the shares of
queries with the same mining pick and the same filter decision, and `decisions_unchanged` holds both to 99.5%.

    python -m benchmarks.stages.backend_parity [--work DIR] [--domains git,sqlite] [--backends torch,onnx]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.faq import domains as faq_domains  # noqa: E402
from benchmarks.faq.scores import DIMS, Scorer, split_queries  # noqa: E402
from benchmarks.stages.embed_throughput import BACKENDS, load  # noqa: E402
from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.tasks.core.text import normalize  # noqa: E402
from domain_embed.tasks.embedding.models import resolve_model  # noqa: E402
from domain_embed.tasks.mining.negatives import select_negatives  # noqa: E402
from domain_embed.tasks.questions.filters import roundtrip_ranks  # noqa: E402
from domain_embed.tasks.settings import MineSettings  # noqa: E402

NDCG_TOLERANCE = 0.001
SAME_TOP10_SHARE = 0.995
BATCH = 32
ROUNDTRIP_TOP_K = 20


def run_backend(backend: str, model, domains: dict) -> tuple[dict, dict, dict, float]:
    """Per domain: per-query NDCG@10 per dim, top-10 passage sets per dim and the mining and round-trip decisions
    (picks); and the corpus passages/s."""
    from domain_embed.tasks.evaluation.retrieval import (
        embed_blocks,
        ir_evaluator,
        score_retrieval,
        top_passages,
        truncate,
    )

    ndcg, tops, picked, passages, seconds = {}, {}, {}, 0, 0.0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=backend == "torch-bf16")
    for name, (corpus, queries, relevant) in domains.items():
        evaluator = ir_evaluator(corpus, queries, relevant, BATCH)
        with torch.inference_mode(), autocast:
            started = time.perf_counter()
            vectors = embed_blocks(model, evaluator.corpus, BATCH)
            seconds += time.perf_counter() - started
            asked = embed_blocks(model, evaluator.queries, BATCH, query=True)
            _, per_query = score_retrieval("", corpus, queries, relevant, DIMS, BATCH, model=model, passages=vectors)
        passages += len(vectors)
        picked[name] = picks(asked, vectors, evaluator.queries_ids, evaluator.corpus_ids, corpus, relevant)
        ndcg[name] = {dim: per_query[dim]["ndcg@10"] for dim in DIMS}
        tops[name] = {
            dim: [{i for i, _ in ranked} for ranked in top_passages(truncate(asked, dim), truncate(vectors, dim), 10)]
            for dim in DIMS
        }
    return ndcg, tops, picked, passages / seconds


def picks(
    asked: np.ndarray, vectors: np.ndarray, query_ids: list, corpus_ids: list, corpus: dict, relevant: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Per query (in query_ids' order): the hard negatives mining picks, and whether the round-trip filter keeps it."""
    position = {pid: i for i, pid in enumerate(corpus_ids)}
    positives = np.array([position[min(relevant[q])] for q in query_ids], dtype=np.int64)
    texts = [normalize(corpus[pid]) for pid in corpus_ids]
    negatives, _ = select_negatives(asked, vectors, positives, corpus_ids, texts, MineSettings())
    return negatives, roundtrip_ranks(asked, vectors, positives) < ROUNDTRIP_TOP_K


def decisions(picked: dict, reference: dict) -> dict:
    """Shares of queries whose mining pick and round-trip decision are those of the reference backend."""
    same_negative, same_roundtrip = [], []
    for name, (negatives, kept) in picked.items():
        ref_negatives, ref_kept = reference[name]
        same_negative += list(np.all(negatives == ref_negatives, axis=1))
        same_roundtrip += list(kept == ref_kept)
    shares = {"same_negative": float(np.mean(same_negative)), "same_roundtrip": float(np.mean(same_roundtrip))}
    return {
        **{k: round(v, 4) for k, v in shares.items()},
        "decisions_unchanged": all(v >= SAME_TOP10_SHARE for v in shares.values()),
    }


def compare(ndcg: dict, tops: dict, reference: tuple[dict, dict]) -> dict:
    """Pooled NDCG@10 per dim, its difference to the reference backend, and the share of queries with its top 10."""
    pooled = {dim: [v for name in ndcg for v in ndcg[name][dim]] for dim in DIMS}
    ref = {dim: [v for name in reference[0] for v in reference[0][name][dim]] for dim in DIMS}
    same = {
        dim: float(np.mean([a == b for name in tops for a, b in zip(tops[name][dim], reference[1][name][dim])]))
        for dim in DIMS
    }
    minus = {dim: float(np.mean(pooled[dim]) - np.mean(ref[dim])) for dim in DIMS}
    return {
        "ndcg@10": {str(d): round(float(np.mean(pooled[d])), 4) for d in DIMS},
        "minus_torch": {str(d): round(minus[d], 4) for d in DIMS},
        "same_top10": {str(d): round(same[d], 4) for d in DIMS},
        "unchanged": all(abs(minus[d]) <= NDCG_TOLERANCE and same[d] >= SAME_TOP10_SHARE for d in DIMS),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="Working folder for the built domains (default: a new one)")
    parser.add_argument("--domains", default=",".join(faq_domains.DOMAINS))
    parser.add_argument("--backends", default=",".join(BACKENDS), help="The first one is the reference")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parse_args(parser, {"domains": "git", "backends": "torch,onnx"}, argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="parity-"))
    names = args.domains.split(",")
    faq_domains.build_all(names, work)
    domains = {name: split_queries(splits) for name, splits in Scorer(work, names).data.items()}
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(shutil.copytree(resolve_model(args.model), Path(tmp) / "model"))
        for backend in args.backends.split(","):
            ndcg, tops, picked, speed = run_backend(backend, load(backend, model_dir), domains)
            reference = reference or (ndcg, tops, picked)
            results[backend] = {
                "passages_per_s": round(speed, 1),
                **compare(ndcg, tops, reference[:2]),
                **decisions(picked, reference[2]),
            }
    queries = sum(len(q) for _, q, _ in domains.values())
    passages = sum(len(c) for c, _, _ in domains.values())
    print(
        json.dumps(
            {"model": args.model, "domains": names, "queries": queries, "passages": passages, "backends": results}
        )
    )


if __name__ == "__main__":
    main()
