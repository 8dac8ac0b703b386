"""Recipe variants on the Debian FAQ benchmark's dev queries, from the training data one quality run stored.

Run `python -m benchmarks.quality --work DIR` first (it builds the benchmark and fills DIR/store with the pipeline's
pairs, mined tuples and teacher embeddings). Each variant then trains the base model on a subset of those rows with
its own settings and is scored on the dev queries only (the test queries stay untouched for the reported figures).
Prints one JSON line per variant: NDCG@10 per dim, the delta to the base model with its 95% paired-bootstrap
interval, training steps and seconds.

    python -m benchmarks.recipe_variants --work DIR [--variant NAME ...] [--dims 384,64]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain_embed.flows.env import set_offline_defaults  # noqa: E402

set_offline_defaults()

BASE = "all-MiniLM-L6-v2"
SEED = {"epochs": 4, "learning_rate": 2e-5, "batch_size": 32, "teacher": None, "evaluations": 0}
VARIANTS: dict[str, dict] = {
    # name: sources of training pairs, hard negatives or not, TrainSettings overrides
    "seed": {"sources": ["llm"], "negatives": True, "train": SEED},
    "llm-steps": {"sources": ["llm"], "negatives": True, "train": {"teacher": None, "evaluations": 0}},
    "llm+headings": {"sources": ["llm", "heading"], "negatives": True, "train": {"teacher": None, "evaluations": 0}},
    "llm+headings+ict": {
        "sources": ["llm", "heading", "ict"],
        "negatives": True,
        "train": {"teacher": None, "evaluations": 0},
    },
    "all-no-negatives": {
        "sources": ["llm", "heading", "ict"],
        "negatives": False,
        "train": {"teacher": None, "evaluations": 0},
    },
    "all+teacher": {"sources": ["llm", "heading", "ict"], "negatives": True, "train": {"evaluations": 0}},
    "llm+teacher": {"sources": ["llm"], "negatives": True, "train": {"evaluations": 0}},
    "all+teacher-no-negatives": {
        "sources": ["llm", "heading", "ict"],
        "negatives": False,
        "train": {"evaluations": 0},
    },
    "all-docs-free+llm": {
        "sources": ["llm", "heading", "ict"],
        "negatives": False,
        "documents": "all",
        "train": {"teacher": None, "evaluations": 0},
    },
    "all-docs-free+llm+teacher": {
        "sources": ["llm", "heading", "ict"],
        "negatives": False,
        "documents": "all",
        "train": {"evaluations": 0},
    },
    "distill-only": {
        "sources": ["llm", "heading", "ict"],
        "negatives": True,
        "train": {"evaluations": 0, "distill_weight": 4.0},
    },
}


def newest(folder: Path) -> Path:
    """The newest jsonl file of a run-store folder."""
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"{folder} is empty: run benchmarks.quality --work on this folder first")
    return files[-1]


def training_rows(store: Path, sources: list[str], negatives: bool) -> tuple[list[dict], list[dict]]:
    """(rows with a mined negative, rows without) of the stored training data, only from `sources`."""
    from domain_embed.tasks.core.objects import read_jsonl

    source_of = {r["query"]: r.get("source", "llm") for r in read_jsonl(str(newest(store / "pairs-supervised")))}
    tuples = [
        r for r in read_jsonl(str(newest(store / "mined-tuples"))) if source_of.get(r["anchor"], "llm") in sources
    ]
    pairs = [r for r in read_jsonl(str(newest(store / "mined-pairs"))) if source_of.get(r["anchor"], "llm") in sources]
    if not negatives:
        pairs += [{"anchor": r["anchor"], "positive": r["positive"]} for r in tuples]
        tuples = []
    return tuples, pairs


def all_document_rows(store: Path, sources: list[str]) -> list[dict]:
    """Pairs without negatives over every document (held-out ones too): the LLM's questions passing the round trip,
    and the LLM-free pairs of every chunk."""
    from domain_embed.tasks.core.objects import read_jsonl
    from domain_embed.tasks.questions.filters import passes_roundtrip
    from domain_embed.tasks.questions.supervision import supervised_pairs
    from domain_embed.tasks.settings import FilterSettings, SupervisionSettings

    chunks = read_jsonl(str(newest(store / "corpus")))
    text = {c["chunk_id"]: c["text"] for c in chunks}
    top_k = FilterSettings().roundtrip_top_k
    rows = [
        {"anchor": r["query"], "positive": text[r["chunk_id"]]}
        for r in read_jsonl(str(newest(store / "pairs")))
        if "llm" in sources and passes_roundtrip(r, top_k)
    ]
    settings = SupervisionSettings(headings="heading" in sources, inverse_cloze="ict" in sources)
    rows += [
        {"anchor": r["query"], "positive": r["positive"]}
        for r in supervised_pairs(chunks, {c["doc_id"] for c in chunks}, settings)
    ]
    return rows


def score(model_dir: str, beir: Path, dims: list[int]):
    """Per-dim metrics and per-query values on a BEIR folder."""
    from domain_embed.tasks.evaluation.beir import load_beir
    from domain_embed.tasks.evaluation.retrieval import score_retrieval

    data = load_beir(str(beir))
    return score_retrieval(model_dir, data.corpus, data.queries, data.relevant, dims)


def run_variant(name: str, spec: dict, work: Path, dims: list[int], base_scores) -> dict:
    """Train one variant and score it on the dev queries against the base model."""
    from domain_embed.tasks.core.model_ref import local_model
    from domain_embed.tasks.core.objects import read_jsonl
    from domain_embed.tasks.core.store import RunStore
    from domain_embed.tasks.embedding.models import resolve_model
    from domain_embed.tasks.evaluation.uncertainty import paired_bootstrap
    from domain_embed.tasks.settings import TrainSettings
    from domain_embed.tasks.training.fit import train_model

    store = RunStore(str(work / "store"))
    if spec.get("documents") == "all":
        tuples, pairs = [], all_document_rows(work / "store", spec["sources"])
    else:
        tuples, pairs = training_rows(work / "store", spec["sources"], spec["negatives"])
    train = dict(spec["train"])
    steps = train.pop("steps", None)
    if steps:  # a fixed step budget, so variants with more rows do not simply train longer
        train["epochs"] = steps / math.ceil((len(tuples) + len(pairs)) / train.get("batch_size", 32))
    settings = TrainSettings(**train)
    started = time.monotonic()
    result = train_model(
        store.put_jsonl("variant-tuples", tuples),
        store.put_jsonl("variant-pairs", pairs),
        resolve_model(BASE),
        settings,
        store,
        f"variant-{name}",
        corpus_texts=[c["text"] for c in read_jsonl(str(newest(work / "store" / "corpus")))],
    )
    seconds = time.monotonic() - started
    results, per_query = score(local_model(result.model), work / "beir-dev", dims)
    base_results, base_per_query = base_scores
    out = {
        "variant": name,
        "rows": len(tuples) + len(pairs),
        "steps": result.steps,
        "train_s": round(seconds, 1),
        "ndcg@10": {},
    }
    for dim in dims:
        iv = paired_bootstrap(per_query[dim]["ndcg@10"], base_per_query[dim]["ndcg@10"])
        out["ndcg@10"][str(dim)] = {
            "base": round(base_results[dim]["ndcg@10"], 4),
            "tuned": round(results[dim]["ndcg@10"], 4),
            "delta": round(iv.delta, 4),
            "delta_low": round(iv.low, 4),
            "delta_high": round(iv.high, 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="A benchmarks.quality work folder")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="Variants to run (default: all)")
    parser.add_argument(
        "--set", action="append", default=[], help="Override a TrainSettings field for every variant: key=json"
    )
    parser.add_argument("--dims", default="384,64")
    args = parser.parse_args()
    work = Path(args.work)
    dims = [int(d) for d in args.dims.split(",")]
    from domain_embed.tasks.embedding.models import resolve_model

    base_scores = score(resolve_model(BASE), work / "beir-dev", dims)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    for name in args.variant or list(VARIANTS):
        spec = {**VARIANTS[name], "train": {**VARIANTS[name]["train"], **overrides}}
        print(json.dumps({**run_variant(name, spec, work, dims, base_scores), "overrides": overrides}), flush=True)


if __name__ == "__main__":
    main()
