"""How sure a gain is: the 95% paired-bootstrap interval of the mean per-query difference, tuned minus base."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, computed_field

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0

Verdict = Literal["gain", "loss", "within noise"]


class DeltaInterval(BaseModel):
    """Mean per-query difference (tuned - base) with its bootstrap interval, over `queries` paired queries."""

    delta: float
    low: float
    high: float
    queries: int
    confidence: float = CONFIDENCE

    @computed_field
    @property
    def verdict(self) -> Verdict:
        """'gain' when the whole interval is above 0, 'loss' when below, else 'within noise'."""
        return "gain" if self.low > 0 else "loss" if self.high < 0 else "within noise"

    def describe(self) -> str:
        """e.g. '+0.0412 [+0.0105, +0.0731]: gain'."""
        return f"{self.delta:+.4f} [{self.low:+.4f}, {self.high:+.4f}]: {self.verdict}"


def paired_bootstrap(
    tuned: Sequence[float],
    base: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> DeltaInterval:
    """Percentile interval of mean(tuned - base) over queries resampled with replacement (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    diff = np.asarray(tuned, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if diff.ndim != 1 or len(tuned) != len(base):
        raise ValueError(f"paired scores must be two equal-length lists (got {len(tuned)} and {len(base)})")
    if len(diff) < 2 or np.all(diff == diff[0]):
        value = float(diff.mean()) if len(diff) else 0.0
        return DeltaInterval(delta=value, low=value, high=value, queries=len(diff), confidence=confidence)
    result = bootstrap(
        (diff,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    interval = result.confidence_interval
    return DeltaInterval(
        delta=float(diff.mean()),
        low=float(interval.low),
        high=float(interval.high),
        queries=len(diff),
        confidence=confidence,
    )
