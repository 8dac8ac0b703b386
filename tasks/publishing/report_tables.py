"""The evaluation tables of a run's report, its model card and the CLI: base vs tuned per dim with the interval of
the difference, the secondary metrics, the BM25 row and, on synthetic questions, why BM25 may win."""

from __future__ import annotations

from typing import Any

from ..core.reports import markdown_table, png_line_chart
from ..evaluation.tables import HYBRID_LABEL

HEADLINE_METRICS = ("ndcg@10", "mrr@10", "recall@10")


def by_dim(results: dict[str, Any]) -> dict[int, dict[str, float]]:
    """A model's results keyed by int dim (JSON round trips turn keys into strings)."""
    return {int(d): m for d, m in results.items()}


def interval_of(evaluation: dict, dim: int, metric: str, against: str = "base") -> dict | None:
    """The stored paired-bootstrap interval of tuned minus `against` (JSON round trips turn dims into strings)."""
    per_dim = evaluation.get("intervals", {}).get(f"tuned-{against}", {})
    return per_dim.get(dim, per_dim.get(str(dim), {})).get(metric)


def ci_text(interval: dict | None) -> str:
    """'+0.0412 [+0.0105, +0.0731]' or '-' when there is no interval."""
    return f"{interval['delta']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]" if interval else "-"


def comparison_rows(evaluation: dict) -> list[dict]:
    """Rows per dim for NDCG@10: base, tuned, the delta with its 95% paired-bootstrap interval, and the verdict."""
    results = evaluation["results"]
    base, tuned = by_dim(results.get("base", {})), by_dim(results.get("tuned", {}))
    rows = []
    for d in sorted(set(base) | set(tuned), reverse=True):
        ndcg = interval_of(evaluation, d, "ndcg@10")
        rows.append(
            {
                "dim": d,
                "base ndcg@10": base.get(d, {}).get("ndcg@10"),
                "tuned ndcg@10": tuned.get(d, {}).get("ndcg@10"),
                "Δ [95% CI]": ci_text(ndcg),
                "gain?": ndcg["verdict"] if ndcg else "-",
            }
        )
    return rows


def secondary_rows(evaluation: dict) -> list[dict]:
    """Rows per dim: the deltas of MRR@10 and Recall@10 with their intervals (a second, narrow table)."""
    dims = sorted(by_dim(evaluation["results"].get("tuned", {})), reverse=True)
    return [
        {"dim": d, **{f"Δ {m} [95% CI]": ci_text(interval_of(evaluation, d, m)) for m in HEADLINE_METRICS[1:]}}
        for d in dims
    ]


def bm25_rows(evaluation: dict) -> list[dict]:
    """The lexical baseline's one row (BM25 has no dims) with tuned minus BM25 NDCG@10 at the full dim; [] without it."""
    bm25 = evaluation.get("bm25")
    if not bm25:
        return []
    row: dict[str, Any] = {
        "model": "bm25 (lexical)",
        "dim": "-",
        **{metric: bm25[metric] for metric in HEADLINE_METRICS},
    }
    tuned = by_dim(evaluation["results"].get("tuned", {}))
    if tuned:
        full = max(tuned)
        row[f"tuned - bm25 ndcg@10 at dim {full}"] = f"{tuned[full]['ndcg@10'] - bm25['ndcg@10']:+.4f}"
    return [row]


def hybrid_rows(evaluation: dict) -> list[dict]:
    """The hybrid rows (BM25 and the tuned model fused by reciprocal rank, at the full and the smallest dim), each with
    its gain over the tuned model alone; [] without them."""
    tuned = by_dim(evaluation["results"].get("tuned", {}))
    rows = []
    for dim, values in sorted(by_dim(evaluation.get("hybrid") or {}).items(), reverse=True):
        row: dict[str, Any] = {"model": HYBRID_LABEL, "dim": dim, **{m: values[m] for m in HEADLINE_METRICS}}
        if dim in tuned:
            row["hybrid - tuned ndcg@10"] = f"{values['ndcg@10'] - tuned[dim]['ndcg@10']:+.4f}"
        rows.append(row)
    return rows


def evaluation_title(label: str) -> str:
    """What an evaluation set is, in words."""
    if label == "synthetic":
        return "synthetic eval split (held-out documents, LLM-written queries)"
    return f"YOUR labelled queries: {label.removeprefix('user:')}"


def bm25_note(label: str, evaluation: dict) -> str:
    """When keywords beat the tuned model on the synthetic questions, the plain reason: they copy the passage's words."""
    bm25, tuned = evaluation.get("bm25"), by_dim(evaluation["results"].get("tuned", {}))
    if label != "synthetic" or not bm25 or not tuned or bm25["ndcg@10"] <= tuned[max(tuned)]["ndcg@10"]:
        return ""
    return (
        "BM25 beats the tuned model on these questions because the LLM wrote them from the passages and copies their "
        "words, which is exactly what keyword matching rewards; people ask in their own words. Judge the model on real "
        "questions (`--eval-dataset`), where the dense models usually lead.\n\n"
    )


def evaluation_tables(evaluation: dict, label: str = "") -> str:
    """The facts of one evaluation set, its base vs tuned table and the BM25 row beneath (with why BM25 wins, if it
    does on synthetic questions)."""
    facts = (
        f"{evaluation['queries']} queries over {evaluation['passages']} passages. The interval is the 95% paired bootstrap "
        "of the per-query difference: a gain is real when the whole interval is above 0, else it is within noise."
    )
    if evaluation.get("train_overlap") is not None:
        facts += (
            f" {evaluation['train_overlap']} of these passages ({evaluation['train_overlap_relevant']} judged relevant)"
            " also occur among the training positives."
        )
    lexical, fused = bm25_rows(evaluation), hybrid_rows(evaluation)
    baseline = (
        f"Keywords alone (BM25 by bm25s, English stopwords):\n\n{markdown_table(lexical)}\n{bm25_note(label, evaluation)}"
        if lexical
        else ""
    )
    if fused:
        baseline += (
            "The retrieval many RAG systems run, BM25 and the tuned model fused by reciprocal rank (k = 60, each one's "
            f"top 100):\n\n{markdown_table(fused)}\n"
        )
    return f"{facts}\n\n{markdown_table(comparison_rows(evaluation))}\n{markdown_table(secondary_rows(evaluation))}\n{baseline}"


def evaluation_section(label: str, evaluation: dict) -> str:
    """Markdown tables + NDCG@10 chart for one evaluation set."""
    rows = comparison_rows(evaluation)
    chart = png_line_chart(
        {
            name: [
                (float(r["dim"]), r[f"{name} ndcg@10"])
                for r in sorted(rows, key=lambda r: r["dim"])
                if r[f"{name} ndcg@10"] is not None
            ]
            for name in ("base", "tuned")
        },
        f"NDCG@10 per dimension: {label}",
    )
    return f"### Evaluation on the {evaluation_title(label)}\n\n{evaluation_tables(evaluation, label)}{chart}\n"
