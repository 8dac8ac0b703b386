"""Does the tuned model beat the base model on questions people wrote? Seven Debian FAQs, end to end.

Builds the benchmark from Debian packages (benchmarks/faq/domains.py: each FAQ's questions are the queries, their
answers the relevant passages, with the domain's other documentation as distractors; each domain's corpus as training
documents with no query text in them; questions split into train, dev and test by FAQ section). Runs `domain-embed run`
once on all domains' documents, as a user would, then scores the base and the tuned model on each domain's own corpus
and pools the per-query scores: per domain, and pooled with a 95% paired-bootstrap interval over every pooled query.
Recipe choices are judged on dev; test gives the reported figures. Optional rows: the oracle (the same recipe trained on
the train split's human questions in place of the LLM's: what a perfect generator would reach), the seed recipe, and
variants (--variant, repeatable: PipelineConfig fields over --config, the way to judge a recipe change on dev).
Prints one JSON line: `ndcg@10`, `mrr@10`, `recall@10` per dim (base, tuned, delta, delta_low, delta_high, verdict) on
the pooled test queries, `dev` the same on dev, `domains` per domain, and one block per extra row
(`oracle`, `seed_recipe`, `variant:<file stem>`; its `minus_main`: its tuned model minus the LLM row's, paired on
the same queries).

    python -m benchmarks.quality [--work DIR] [--domains debian,perl] [--chunk-fraction 0.3] [--llm embedded-large]
                                 [--config FILE] [--oracle] [--seed] [--variant FILE ...]
                                 [--only-extra-rows] [--tiny]
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

from benchmarks.faq import domains as faq_domains  # noqa: E402
from benchmarks.faq.scores import SPLITS, Scorer, figures, paired_gap, pooled  # noqa: E402

BASE = "all-MiniLM-L6-v2"
SEED_RECIPE = {
    "train": {
        "epochs": 4,
        "learning_rate": 2e-5,
        "batch_size": 32,
        "teacher": None,
        "evaluations": 0,
        "rotate": False,
    },
    "supervision": {"headings": False, "inverse_cloze": False},
    "llm": {"candidates_per_chunk": 2},
}
ORACLE_KEY = "DOMAIN_EMBED_ORACLE_KEY"
TINY = {
    "domains": ["git"],
    "max_documents": 2,
    "chunk_fraction": 0.05,
    "config": {"train": {"epochs": 0.1, "evaluations": 0, "teacher": None, "max_seq_length": 64}},
}


def run_pipeline(
    docs: Path, out: Path, store: Path, chunk_fraction: float, config: dict, llm: str | None
) -> tuple[dict, float]:
    """`domain-embed run` as a user runs it; returns its report.json and wall seconds."""
    args = [sys.executable, "-m", "domain_embed.flows.cli", "run", str(docs), "--out", str(out), "--store", str(store)]
    args += ["--chunk-fraction", str(chunk_fraction)] + (["--llm", llm] if llm else [])
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


def tuned_folder(report: dict) -> str:
    """A local folder holding a run's tuned model, fetched from the run store by its reference."""
    from domain_embed.tasks.core import ModelRef, local_model

    return local_model(ModelRef(uri=report["store"]["model"], sha256=report["training"]["model_sha"]))


def compare(scorer: Scorer, report: dict) -> dict:
    """Pooled test figures, pooled dev figures and per-domain figures of a run's tuned model against the base model."""
    from domain_embed.tasks.embedding.models import resolve_model

    tuned, base = scorer.scores(tuned_folder(report)), scorer.scores(resolve_model(BASE))
    domains = {name: {split: figures(tuned[name][split], base[name][split]) for split in SPLITS} for name in tuned}
    return {
        **figures(pooled(tuned, "test"), pooled(base, "test")),
        "dev": figures(pooled(tuned, "dev"), pooled(base, "dev")),
        "domains": domains,
    }


def summary(report: dict, seconds: float) -> dict:
    """The run's own facts: LLM calls, training steps and pairs, stage seconds."""
    training = report["training"]
    return {
        "promotion": report["promotion"]["reason"],
        "llm": report.get("llm"),
        "llm_calls": report["llm_usage"]["llm_calls"],
        "training_steps": training["steps"],
        "training_examples": training["examples"],
        "training_pairs_by_source": report.get("training_pairs_by_source"),
        "stage_seconds": report["timings_s"],
        "wall_s": round(seconds, 1),
    }


def oracle_llm_settings(config: dict, api_base: str) -> dict:
    """The run's `llm` settings for the oracle server: JSON answers, every refusal tolerated, and no client-side rate
    limit (500 requests/min would make asking every chunk of a local server take 17 min)."""
    return {
        **config.get("llm", {}),
        "model": "openai/oracle",
        "api_base": api_base,
        "api_key_env": ORACLE_KEY,
        "prompt_style": "json",
        "questions_per_chunk": 4,
        "max_consecutive_failures": 1_000_000,
        "requests_per_minute": 1_000_000,
        "tokens_per_minute": 1_000_000_000,
    }


def oracle_row(work: Path, names: list[str], config: dict, scorer: Scorer) -> tuple[dict, dict]:
    """The same recipe on the train split's human questions in place of the LLM's (every chunk asked); its report."""
    from benchmarks.faq.oracle import OracleLLM
    from domain_embed.tasks.evaluation.beir import load_beir

    queries, relevant, passages = {}, {}, {}
    for name in names:
        data = load_beir(str(work / name / "beir-train"))
        queries.update({f"{name}/{q}": t for q, t in data.queries.items()})
        relevant.update({f"{name}/{q}": [f"{name}/{p}" for p in ids] for q, ids in data.relevant.items()})
        passages.update({f"{name}/{p}": t for p, t in data.texts.items()})
    os.environ[ORACLE_KEY] = "sk-oracle"
    with OracleLLM(queries, relevant, passages) as oracle:
        llm = oracle_llm_settings(config, oracle.api_base)
        report, seconds = run_pipeline(
            work / "docs", work / "out-oracle", work / "store", 1.0, {**config, "llm": llm}, None
        )
    row = {**compare(scorer, report), **summary(report, seconds), "train_queries": len(queries)}
    return {**row, "chunks_with_a_human_question": oracle.answered}, report


def row(
    work: Path, label: str, chunk_fraction: float, config: dict, llm: str | None, scorer: Scorer
) -> tuple[dict, dict]:
    """One run of the pipeline with this config, written to out-<label>: its figures and facts; its report."""
    report, seconds = run_pipeline(work / "docs", work / f"out-{label}", work / "store", chunk_fraction, config, llm)
    return {**compare(scorer, report), **summary(report, seconds)}, report


def merged(config: dict, fields: dict) -> dict:
    """PipelineConfig fields over a config, group by group (`{"train": {"bf16": true}}` keeps the other train fields)."""
    return {**config, **{k: {**config.get(k, {}), **v} if isinstance(v, dict) else v for k, v in fields.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="Working folder (default: a new temporary folder)")
    parser.add_argument("--domains", default=None, help=f"Comma-separated subset of {','.join(faq_domains.DOMAINS)}")
    parser.add_argument("--chunk-fraction", type=float, default=0.15, help="Chunks sent to the LLM (0.15: ~830)")
    parser.add_argument("--llm", default=None, help="llm.model of the run (default: the embedded default)")
    parser.add_argument("--config", default=None, help="JSON file of PipelineConfig fields for every row")
    parser.add_argument(
        "--oracle", action="store_true", help="Add the oracle row (human train questions for the LLM's)"
    )
    parser.add_argument("--seed", action="store_true", help="Add the seed recipe's row")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="JSON file of fields over --config: adds a row named by its stem",
    )
    parser.add_argument("--only-extra-rows", action="store_true", help="Leave the LLM's row out: run only the others")
    parser.add_argument("--tiny", action="store_true", help="Seconds-scale check: one small domain, a few steps")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="quality-"))
    work.mkdir(parents=True, exist_ok=True)
    names = args.domains.split(",") if args.domains else (TINY["domains"] if args.tiny else list(faq_domains.DOMAINS))
    config = json.loads(Path(args.config).read_text()) if args.config else (TINY["config"] if args.tiny else {})
    fraction = TINY["chunk_fraction"] if args.tiny else args.chunk_fraction
    counts = faq_domains.build_all(names, work, TINY["max_documents"] if args.tiny else None)
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    scorer = Scorer(work, names)
    totals = {
        key: sum(c[key] for c in counts.values())
        for key in ("passages", "documents", "queries_dropped", "train_queries", "dev_queries", "test_queries")
    }
    record = {"benchmark": "debian-faqs", "reported_split": "test", **totals, "queries": totals["test_queries"]}
    reports = {}
    if not args.only_extra_rows:
        label = "ours" if not args.llm else args.llm.replace("/", "_")
        main, reports["main"] = row(work, label, fraction, config, args.llm, scorer)
        for name, figures_ in main["domains"].items():
            figures_.update(counts[name])
        print(json.dumps({**record, **main}), file=sys.stderr, flush=True)  # kept should a longer row be cut short
        record.update(main)
    if args.oracle:
        record["oracle"], reports["oracle"] = oracle_row(work, names, config, scorer)
    if args.seed:
        record["seed_recipe"], reports["seed_recipe"] = row(
            work, "seed", fraction, {**config, **SEED_RECIPE}, args.llm, scorer
        )
    for path in map(Path, args.variant):
        key, fields = f"variant:{path.stem}", json.loads(path.read_text())
        record[key], reports[key] = row(
            work, f"variant-{path.stem}", fraction, merged(config, fields), args.llm, scorer
        )
        record[key]["fields"] = fields
        print(json.dumps({key: record[key]}), file=sys.stderr, flush=True)
    for key in sorted(set(reports) - {"main"}) if "main" in reports else ():
        ours, theirs = (scorer.scores(tuned_folder(reports[k])) for k in (key, "main"))
        record[key]["minus_main"] = paired_gap(ours, theirs)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
