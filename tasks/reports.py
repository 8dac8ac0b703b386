"""Artifact helpers: markdown tables, small inline SVG charts, and publishing only inside a Prefect run."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext, TaskRunContext


def in_prefect_run() -> bool:
    """True inside a flow or task run (artifacts can be attached)."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def publish_table(key: str, rows: list[dict], description: str) -> None:
    """A table artifact, when running under Prefect."""
    if in_prefect_run():
        create_table_artifact(key=key, table=rows or [{"note": "nothing to show"}], description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact, when running under Prefect."""
    if in_prefect_run():
        create_markdown_artifact(key=key, markdown=markdown, description=description)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a GitHub markdown table."""
    if not rows:
        return "_none_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def histogram(values: Iterable[int], edges: Sequence[int]) -> dict[str, int]:
    """Counts of values per bucket [edge_i, edge_i+1), the last bucket open-ended."""
    counts = {f"{a}-{b - 1}": 0 for a, b in zip(edges, edges[1:])}
    counts[f"{edges[-1]}+"] = 0
    for value in values:
        for a, b in zip(edges, edges[1:]):
            if a <= value < b:
                counts[f"{a}-{b - 1}"] += 1
                break
        else:
            if value >= edges[-1]:
                counts[f"{edges[-1]}+"] += 1
    return counts


def svg_line_chart(series: dict[str, list[tuple[float, float]]], title: str, width: int = 520, height: int = 220) -> str:
    """A small self-contained SVG line chart of named (x, y) series."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    pad = 40
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{pad - 4}" y="{sy(y1) + 4}" text-anchor="end">{y1:.3g}</text>',
        f'<text x="{pad - 4}" y="{sy(y0) + 4}" text-anchor="end">{y0:.3g}</text>',
        f'<text x="{sx(x0)}" y="{height - pad + 14}" text-anchor="middle">{x0:g}</text>',
        f'<text x="{sx(x1)}" y="{height - pad + 14}" text-anchor="middle">{x1:g}</text>',
    ]
    for i, (name, pts) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts)
        parts.append(f'<text x="{width - pad + 4}" y="{pad + 14 * i}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)
