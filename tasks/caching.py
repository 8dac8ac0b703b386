"""Cache policy on code: the source of the task's module and of the modules it relies on, not just the task body."""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from domain_embed.tasks.progress import run_logger
from domain_embed.tasks.store import intact, refs_in


@dataclass
class ModuleSource(CachePolicy):
    """Key = hash of the source files of the task's own module plus `modules`; any edit there is a cache miss."""

    modules: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: Optional[dict[str, Any]], flow_parameters: Optional[dict[str, Any]], **kwargs: Any
    ) -> Optional[str]:
        if not task_ctx:
            return None
        return source_hash(task_ctx.task.fn.__module__, *self.modules)


@functools.lru_cache(maxsize=32)
def source_hash(*modules: str) -> str:
    """Hash of the source files of `modules` (order-free): the code part of every cache key."""
    names = sorted(set(modules))
    return hash_objects(*[inspect.getsource(importlib.import_module(name)) for name in names], raise_on_failure=True)


@dataclass
class RefsIntact(CachePolicy):
    """`policy`'s key, serving a cached result only while every run-store object it refers to is there and hashes
    right: otherwise the cached record is expired (the task runs again) and the log says why."""

    policy: Optional[CachePolicy] = None

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: Optional[dict[str, Any]], flow_parameters: Optional[dict[str, Any]], **kwargs: Any
    ) -> Optional[str]:
        key = self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs) if self.policy else None
        results = getattr(task_ctx, "result_store", None)
        if key and results is not None and results.exists(key):
            try:
                cached = results.read(key).result
            except Exception:  # noqa: BLE001 (an unreadable record is a miss to Prefect as well)
                return key
            broken = [ref.uri for ref in refs_in(cached) if not intact(ref)]
            if broken:
                run_logger().warning("cached %s result refers to %d missing or corrupt object(s) (%s): computed again",
                               task_ctx.task.name, len(broken), broken[0])  # fmt: skip
                past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
                results.write(obj=None, key=key, expiration=past)
        return key


def code_and_inputs(*modules: str, exclude: tuple[str, ...] = ()) -> CachePolicy:
    """The stage cache policy: code of the stage (and helpers) + inputs, minus inputs that are not content; a cached
    result whose objects in the run store are gone or corrupt is computed again."""
    policy = ModuleSource(modules=tuple(modules)) + INPUTS
    for name in exclude:
        policy = policy - name
    return RefsIntact(policy=policy)
