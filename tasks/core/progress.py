"""One progress line per stage at a steady cadence: count, rate and time left, in the run log (or the terminal)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator

EVERY_S = 30.0
log = logging.getLogger("domain_embed.progress")


def in_run() -> bool:
    """True inside a Prefect flow or task run."""
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(TaskRunContext.get() or FlowRunContext.get())


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run, else this module's logger."""
    from prefect.logging import get_run_logger

    return get_run_logger() if in_run() else log


def duration(seconds: float) -> str:
    """'1h 02m', '4m 05s', '12s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts items of a stage and logs `stage: done/total unit (pct), rate/s, ETA ..., extra` every `every_s` seconds."""

    def __init__(
        self, stage: str, total: int, unit: str, every_s: float = EVERY_S, extra: Callable[[], str] | None = None
    ) -> None:
        self.stage, self.total, self.unit, self.every_s, self.extra = stage, total, unit, every_s, extra
        self.done = 0
        self.started = self.last = time.monotonic()
        self.logger = run_logger()

    def line(self) -> str:
        """The current progress line."""
        elapsed = max(1e-9, time.monotonic() - self.started)
        rate = self.done / elapsed
        left = (
            f"ETA {duration((self.total - self.done) / rate)}"
            if rate > 0 and self.done < self.total
            else f"in {duration(elapsed)}"
        )
        pct = 100.0 * self.done / max(1, self.total)
        text = f"{self.stage}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2f}/s, {left}"
        return f"{text}, {self.extra()}" if self.extra else text

    def advance(self, n: int = 1) -> None:
        """Count n more items; log when the cadence is due and at the end."""
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self.logger.info(self.line())


class Stopwatch:
    """Wall time per stage, in the order the stages ran, and the process's peak memory when each stage ended."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage `name`; the stage whose peak is the first to reach the run's set it."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 2)
            self.peak_rss_mb[name] = peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)
