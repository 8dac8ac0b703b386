"""Does the tuned model beat the base model on questions people wrote? The Debian FAQ benchmark, end to end.

Builds the benchmark from the Debian packages (benchmarks/debian_faq.py: FAQ question headings as queries, their
answers plus the Debian Reference's sections as the corpus, the corpus as training documents with no query text in
them), runs `domain-embed run` on the documents with the embedded default and `--eval-dataset` on the test queries,
then the seed recipe (4 epochs, lr 2e-5, batch 32, MNRL in MatryoshkaLoss, no teacher, no rotation, no LLM-free pairs, no
over-generation) on the same store, so its questions come from the cache. Recipe choices are judged on the dev
queries; the test queries are the reported figures. Prints one JSON line; its `ndcg@10`, `mrr@10` and
`recall@10` give per dim base, tuned, delta and the 95% paired-bootstrap interval (delta_low, delta_high).

    python -m benchmarks.quality [--work DIR] [--chunk-fraction 0.3] [--no-seed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain_embed.flows.env import set_offline_defaults  # noqa: E402

set_offline_defaults()

from benchmarks import debian_faq  # noqa: E402

METRICS = ("ndcg@10", "mrr@10", "recall@10")
SEED_RECIPE = {
    "train": {"epochs": 4, "learning_rate": 2e-5, "batch_size": 32, "teacher": None, "evaluations": 0, "rotate": False},
    "supervision": {"headings": False, "inverse_cloze": False},
    "llm": {"candidates_per_chunk": 2},
}


def run_pipeline(docs: Path, out: Path, store: Path, beir: Path, chunk_fraction: float, config: dict | None) -> tuple[dict, float]:
    """`domain-embed run` as a user runs it; returns its report.json and wall seconds."""
    args = [sys.executable, "-m", "domain_embed.flows.cli", "run", str(docs), "--out", str(out), "--store", str(store),
            "--eval-dataset", str(beir), "--chunk-fraction", str(chunk_fraction)]  # fmt: skip
    if config:
        path = out.parent / f"{out.name}-config.json"
        path.write_text(json.dumps(config))
        args += ["--config", str(path)]
    started = time.monotonic()
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as handle:
        code = subprocess.run(args, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"domain-embed run failed ({code}); see {log}")
    return json.loads((out / "report.json").read_text()), time.monotonic() - started


def figures(evaluation: dict) -> dict:
    """{metric: {dim: {base, tuned, delta, delta_low, delta_high, verdict}}} from one report evaluation."""
    out: dict = {}
    intervals = evaluation["intervals"]["tuned-base"]
    for metric in METRICS:
        out[metric] = {}
        for dim, values in evaluation["results"]["tuned"].items():
            iv = intervals[dim][metric]
            out[metric][dim] = {"base": round(evaluation["results"]["base"][dim][metric], 4), "tuned": round(values[metric], 4),
                                "delta": round(iv["delta"], 4), "delta_low": round(iv["low"], 4), "delta_high": round(iv["high"], 4),
                                "verdict": iv["verdict"]}  # fmt: skip
    return out


def dev_figures(tuned_dir: str, beir: Path) -> dict:
    """The same figures on the dev queries (where recipe changes are judged), for a tuned model folder."""
    from domain_embed.tasks.beir import load_beir
    from domain_embed.tasks.embed import resolve_model
    from domain_embed.tasks.evaluate import delta_intervals, evaluate_models

    data = load_beir(str(beir))
    results, per_query = evaluate_models({"base": resolve_model("all-MiniLM-L6-v2"), "tuned": tuned_dir}, data.corpus,
                                         data.queries, data.relevant, [384, 256, 128, 64])  # fmt: skip
    intervals = {label: {d: {m: iv.model_dump() for m, iv in per.items()} for d, per in dims.items()}
                 for label, dims in delta_intervals(per_query).items()}  # fmt: skip
    return figures({"results": results, "intervals": intervals})


def summary(report: dict, seconds: float, beir_label: str) -> dict:
    """The figures of one run: metrics on the test queries, LLM calls, training steps, stage seconds."""
    training = report["training"]
    return {
        **figures(report["evaluation"][beir_label]),
        "queries": report["evaluation"][beir_label]["queries"],
        "promotion": report["promotion"]["reason"],
        "llm_calls": report["llm_usage"]["llm_calls"],
        "training_steps": training["steps"],
        "training_examples": training["examples"],
        "training_pairs_by_source": report.get("training_pairs_by_source"),
        "stage_seconds": report["timings_s"],
        "wall_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="Working folder (default: a new temporary folder)")
    parser.add_argument("--chunk-fraction", type=float, default=0.3, help="Share of chunks sent to the LLM (0.3: about 30 minutes on 2 cores)")
    parser.add_argument("--no-seed", action="store_true", help="Skip the seed recipe's row")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="quality-"))
    work.mkdir(parents=True, exist_ok=True)
    debian_faq.ensure_packages()
    counts = debian_faq.write(debian_faq.build(), work)
    store, test, dev = work / "store", work / "beir-test", work / "beir-dev"
    label = f"user:{test.name}"
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    ours, ours_s = run_pipeline(work / "docs", work / "out-ours", store, test, args.chunk_fraction, None)
    record = {"benchmark": "debian-faq", "reported_split": "test", **counts, **summary(ours, ours_s, label),
              "dev": dev_figures(ours["store"]["model"], dev)}  # fmt: skip
    if not args.no_seed:
        seed, seed_s = run_pipeline(work / "docs", work / "out-seed", store, test, args.chunk_fraction, SEED_RECIPE)
        record["seed_recipe"] = {**summary(seed, seed_s, label), "dev": dev_figures(seed["store"]["model"], dev)}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
