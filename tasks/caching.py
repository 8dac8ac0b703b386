"""Cache policy on code: the source of the task's module and of the modules it relies on, not just the task body."""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects


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


def code_and_inputs(*modules: str, exclude: tuple[str, ...] = ()) -> CachePolicy:
    """The stage cache policy: code of the stage (and helpers) + inputs, minus inputs that are not content."""
    policy = ModuleSource(modules=tuple(modules)) + INPUTS
    for name in exclude:
        policy = policy - name
    return policy
