"""Does the tuned model beat the base model on questions people wrote? Seven Debian FAQs, end to end.

Builds the benchmark from Debian packages (benchmarks/faq/domains.py: each FAQ's questions are the queries, their
answers the relevant passages, with the domain's other documentation as distractors; each domain's corpus as training
documents with no query text in them; questions split into train, dev and test by FAQ section). Runs `domain-embed run`
once on all domains' documents, as a user would, then scores the base and the tuned model on each domain's own corpus
and pools the per-query scores: per domain, and pooled with a 95% paired-bootstrap interval over every pooled query.
Recipe choices are judged on dev; test gives the reported figures. Optional rows: the oracle (the same recipe trained on
the train split's human questions in place of the LLM's: what a perfect generator would reach) and the seed recipe.
Prints one JSON line: `ndcg@10`, `mrr@10`, `recall@10` per dim (base, tuned, delta, delta_low, delta_high, verdict) on
the pooled test queries, `dev` the same on dev, `domains` per domain, and one block per extra row
(its `minus_main`: its tuned model minus the LLM row's, paired on the same queries).

    python -m benchmarks.quality [--work DIR] [--domains debian,perl] [--chunk-fraction 0.3] [--llm embedded-large]
                                 [--config FILE] [--oracle] [--seed] [--only-extra-rows] [--tiny]
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

METRICS = ("ndcg@10", "mrr@10", "recall@10")
DIMS = [384, 256, 128, 64]
SPLITS = ("dev", "test")
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


class Scorer:
    """Per-query scores of a model folder on every domain's dev and test queries (each corpus embedded once per model),
    kept in the work folder by model fingerprint and benchmark content, so a later row scores only its own model."""

    def __init__(self, work: Path, domains: list[str]) -> None:
        from domain_embed.tasks.core.objects import sha256_file, stable_hash
        from domain_embed.tasks.evaluation.beir import load_beir

        self.data = {
            name: {split: load_beir(str(work / name / f"beir-{split}")) for split in SPLITS} for name in domains
        }
        files = sorted(p for name in domains for p in (work / name).glob("beir-*/**/*") if p.is_file())
        self.content = stable_hash({str(p.relative_to(work)): sha256_file(p) for p in files})
        self.folder = work / "scores"

    def scores(self, model_dir: str) -> dict:
        """{domain: {split: {dim: {metric: [per query]}}}}, from the work folder when this model was scored before."""
        from domain_embed.tasks.embedding.models import model_fingerprint

        path = self.folder / f"{model_fingerprint(model_dir)[:24]}-{self.content[:16]}.json"
        if not path.exists():
            scored = {name: self._domain(model_dir, splits) for name, splits in self.data.items()}
            self.folder.mkdir(exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(scored))
            path.with_suffix(".tmp").replace(path)  # whole or absent: a cut run leaves nothing half-written
        stored = json.loads(path.read_text())
        return {
            name: {split: {int(dim): metrics for dim, metrics in dims.items()} for split, dims in splits.items()}
            for name, splits in stored.items()
        }

    @staticmethod
    def _domain(model_dir: str, splits: dict) -> dict:
        from domain_embed.tasks.evaluation.retrieval import ir_evaluator, score_retrieval

        queries = {f"{s}/{q}": text for s, data in splits.items() for q, text in data.queries.items()}
        relevant = {f"{s}/{q}": ids for s, data in splits.items() for q, ids in data.relevant.items()}
        corpus = splits["test"].corpus
        order = ir_evaluator(corpus, queries, relevant).queries_ids
        _, per_query = score_retrieval(model_dir, corpus, queries, relevant, DIMS)
        return {
            split: {
                dim: {
                    m: [v for qid, v in zip(order, values) if qid.startswith(f"{split}/")]
                    for m, values in metrics.items()
                }
                for dim, metrics in per_query.items()
            }
            for split in SPLITS
        }


def figures(tuned: dict, base: dict) -> dict:
    """{metric: {dim: {base, tuned, delta, delta_low, delta_high, verdict}}} from paired per-query scores."""
    from domain_embed.tasks.evaluation.uncertainty import paired_bootstrap

    out: dict = {}
    for metric in METRICS:
        out[metric] = {}
        for dim in DIMS:
            t, b = tuned[dim][metric], base[dim][metric]
            iv = paired_bootstrap(t, b)
            out[metric][str(dim)] = {
                "base": round(sum(b) / len(b), 4),
                "tuned": round(sum(t) / len(t), 4),
                "delta": round(iv.delta, 4),
                "delta_low": round(iv.low, 4),
                "delta_high": round(iv.high, 4),
                "verdict": iv.verdict,
            }
    return out


def pooled(per_domain: dict, split: str) -> dict:
    """{dim: {metric: [scores of every domain's queries, domain after domain]}} for one split."""
    names = list(per_domain)
    return {dim: {m: [v for name in names for v in per_domain[name][split][dim][m]] for m in METRICS} for dim in DIMS}


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


def paired_gap(ours: dict, theirs: dict) -> dict:
    """One row's tuned model minus another row's, paired on the same pooled queries: {split: figures}, where "base"
    is the other row's model. Rows whose intervals overlap can still differ: this says whether they do."""
    return {split: figures(pooled(ours, split), pooled(theirs, split)) for split in SPLITS}


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


def main_row(
    work: Path, counts: dict, chunk_fraction: float, config: dict, llm: str | None, scorer: Scorer
) -> tuple[dict, dict]:
    """The row of the LLM as configured: its figures, each domain's with that domain's counts; its report."""
    label = "out-ours" if not llm else f"out-{llm.replace('/', '_')}"
    report, seconds = run_pipeline(work / "docs", work / label, work / "store", chunk_fraction, config, llm)
    row = {**compare(scorer, report), **summary(report, seconds)}
    for name, figures_ in row["domains"].items():
        figures_.update(counts[name])
    return row, report


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
        row, reports["main"] = main_row(work, counts, fraction, config, args.llm, scorer)
        print(json.dumps({**record, **row}), file=sys.stderr, flush=True)  # kept should a longer row be cut short
        record.update(row)
    if args.oracle:
        record["oracle"], reports["oracle"] = oracle_row(work, names, config, scorer)
    if args.seed:
        seed, seed_s = run_pipeline(
            work / "docs", work / "out-seed", work / "store", fraction, {**config, **SEED_RECIPE}, args.llm
        )
        record["seed_recipe"], reports["seed_recipe"] = {**compare(scorer, seed), **summary(seed, seed_s)}, seed
    for key in sorted(set(reports) - {"main"}) if "main" in reports else ():
        ours, theirs = (scorer.scores(tuned_folder(reports[k])) for k in (key, "main"))
        record[key]["minus_main"] = paired_gap(ours, theirs)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
