"""Every artifact of a run goes through here (published only inside a Prefect run); markdown tables, PNG charts."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    acreate_progress_artifact,
    aupdate_progress_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from .progress import in_run

log = logging.getLogger("domain_embed.reports")


def publish_table(key: str, rows: list[dict], description: str) -> None:
    """A table artifact, when running under Prefect."""
    if in_run():
        create_table_artifact(key=key, table=rows or [{"note": "nothing to show"}], description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact, when running under Prefect."""
    if in_run():
        create_markdown_artifact(key=key, markdown=markdown, description=description)


def publish_link(key: str, link: str, description: str) -> None:
    """A link artifact, when running under Prefect."""
    if in_run():
        create_link_artifact(key=key, link=link, description=description)


class ProgressArtifact:
    """A progress artifact (inside a run), refreshed at most every 2 seconds; a failed update only turns it off."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.artifact_id: UUID | None = None
        self.enabled = in_run()
        self.last_push = 0.0

    async def push(self, percent: float, line: str, force: bool = False) -> None:
        """Show percent and a line; skipped when the last push was under 2 s ago, unless forced."""
        if not self.enabled or (not force and time.monotonic() - self.last_push < 2.0):
            return
        self.last_push = time.monotonic()
        try:
            if self.artifact_id is None:
                self.artifact_id = await acreate_progress_artifact(percent, key=self.key, description=line)
            else:
                await aupdate_progress_artifact(self.artifact_id, percent, description=line)
        except Exception as exc:  # the UI view must never stop the stage
            log.debug("progress artifact %s not updated: %s", self.key, exc)
            self.enabled = False


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


def png_line_chart(
    series: dict[str, list[tuple[float, float]]], title: str, width_px: int = 560, height_px: int = 240
) -> str:
    """A line chart of named (x, y) series as a markdown image: a PNG in a data URI (the Prefect UI strips inline SVG)."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    dpi = 80
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    axes = figure.add_subplot()
    for name, pts in series.items():
        axes.plot([x for x, _ in pts], [y for _, y in pts], marker="o", linewidth=2, label=name)
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
