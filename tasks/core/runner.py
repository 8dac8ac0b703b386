"""Where a flow runs its many small tasks: threads of this process or a Dask cluster, in batches of documents."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TypeVar

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from ..settings import RunnerSettings

T = TypeVar("T")


def task_runner(settings: RunnerSettings) -> TaskRunner:
    """DaskTaskRunner on the cluster at settings.address, else settings.threads threads (one per core) in this process."""
    if not settings.address:
        return ThreadPoolTaskRunner(max_workers=settings.threads or os.cpu_count() or 1)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=settings.address)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def label(names: Sequence[str]) -> str:
    """A task-run label for a batch: its first document and how many follow."""
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"
