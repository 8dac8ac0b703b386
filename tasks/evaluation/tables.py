"""The evaluation's tables: one row per dim and model, the gain with its interval, the BM25 and hybrid rows."""

from __future__ import annotations

from collections.abc import Iterable

from .retrieval import METRICS
from .uncertainty import DeltaInterval

REPORT_METRICS = ("ndcg@10", "mrr@10", "recall@10")
METRIC_NAMES = {
    "ndcg@10": "NDCG@10",
    "mrr@10": "MRR@10",
    "recall@10": "Recall@10",
    "recall@100": "Recall@100",
    "map@100": "MAP@100",
}
DELTA_LABEL = "tuned - base"
BM25_LABEL = "bm25"  # the lexical baseline's row; BM25 has no dims, its dim cell reads "-"
HYBRID_LABEL = "bm25 + tuned (RRF)"  # the two rankings fused by reciprocal rank

Results = dict[str, dict[int, dict[str, float]]]
Intervals = dict[str, dict[int, dict[str, DeltaInterval]]]  # 'tuned-base' -> dim -> metric -> interval


def table_rows(
    results: Results,
    metrics: Iterable[str] = METRICS,
    intervals: Intervals | None = None,
    bm25: dict | None = None,
    hybrid: dict[int, dict[str, float]] | None = None,
) -> list[dict]:
    """One row per dim x model (largest dim first), plus a 'tuned - base' row when both labels exist, and beside it
    the 95% paired-bootstrap interval and verdict of the NDCG@10 difference when `intervals` has them; last, one
    'bm25' row (dim '-') when `bm25` has the lexical baseline's metrics."""
    metrics = list(metrics)
    dims = sorted({dim for per_dim in results.values() for dim in per_dim}, reverse=True)
    rows = []
    for dim in dims:
        for label, per_dim in results.items():
            if dim in per_dim:
                rows.append(
                    {"dim": dim, "model": label, **{METRIC_NAMES[m]: round(per_dim[dim][m], 4) for m in metrics}}
                )
        base, tuned = results.get("base", {}).get(dim), results.get("tuned", {}).get(dim)
        if base and tuned:
            delta = {METRIC_NAMES[m]: round(tuned[m] - base[m], 4) for m in metrics}
            rows.append({"dim": dim, "model": DELTA_LABEL, **delta})
            found = (intervals or {}).get("tuned-base", {}).get(dim, {}).get("ndcg@10")
            if found is not None:
                rows[-1]["NDCG@10 95% CI"] = f"[{found.low:+.4f}, {found.high:+.4f}]: {found.verdict}"
    if bm25:
        rows.append({"dim": "-", "model": BM25_LABEL, **{METRIC_NAMES[m]: round(bm25[m], 4) for m in metrics}})
    for dim, values in sorted((hybrid or {}).items(), key=lambda item: -int(item[0])):
        rows.append(
            {"dim": int(dim), "model": HYBRID_LABEL, **{METRIC_NAMES[m]: round(values[m], 4) for m in metrics}}
        )
    return rows


def render_table(results: Results, title: str, metrics: Iterable[str] = METRICS, bm25: dict | None = None) -> str:
    """Markdown table of table_rows under a bold title; deltas carry an explicit sign."""
    metrics = list(metrics)
    header = ["dim", "model", *(METRIC_NAMES[m] for m in metrics)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(results, metrics, bm25=bm25):
        spec = "+.4f" if row["model"] == DELTA_LABEL else ".4f"
        cells = [str(row["dim"]), row["model"], *(format(row[METRIC_NAMES[m]], spec) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
