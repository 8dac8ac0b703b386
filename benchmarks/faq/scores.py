"""Per-query scores of a model on every FAQ domain's dev and test queries, and the figures made from them: per domain,
pooled over every domain's queries, and one model against another, each with a 95% paired-bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = ("ndcg@10", "mrr@10", "recall@10")
DIMS = [384, 256, 128, 64]
SPLITS = ("dev", "test")


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

        corpus, queries, relevant = split_queries(splits)
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


def split_queries(splits: dict) -> tuple[dict, dict, dict]:
    """One domain's corpus, its dev and test queries (ids prefixed by split) and their relevant passages."""
    queries = {f"{s}/{q}": text for s, data in splits.items() for q, text in data.queries.items()}
    relevant = {f"{s}/{q}": ids for s, data in splits.items() for q, ids in data.relevant.items()}
    return splits["test"].corpus, queries, relevant


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


def paired_gap(ours: dict, theirs: dict) -> dict:
    """One row's tuned model minus another row's, paired on the same pooled queries: {split: figures}, where "base"
    is the other row's model. Rows whose intervals overlap can still differ: this says whether they do."""
    return {split: figures(pooled(ours, split), pooled(theirs, split)) for split in SPLITS}
