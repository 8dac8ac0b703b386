"""Cache keys on code: the source of a stage's module and of every module of this package it imports, directly or
through others, found by reading the imports (inside functions too), never by a list typed by hand."""

from __future__ import annotations

import ast
import datetime
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from .objects import intact, refs_in
from .progress import run_logger

PACKAGE = "domain_embed.tasks"


def imported_modules(name: str) -> set[str]:
    """The modules of this package that module `name` imports anywhere in its source (relative imports resolved)."""
    spec = importlib.util.find_spec(name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith(PACKAGE) and is_module(m)}


def is_module(name: str) -> bool:
    """Whether a dotted name is a module (not a function or class imported from one)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a package
        return False


@functools.cache
def module_closure(name: str) -> tuple[str, ...]:
    """Module `name` and every module of this package it imports, directly or through others, sorted."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module) - seen)
    return tuple(sorted(seen))


def module_source(module: str) -> str:
    """The text of a module's source file."""
    return Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=64)
def source_hash(module: str) -> str:
    """Hash of the source files of a module and of every module of this package it imports: the code part of a key."""
    return hash_objects(*[module_source(m) for m in module_closure(module)], raise_on_failure=True)


@dataclass
class ModuleSource(CachePolicy):
    """Key = source_hash of the task's module: any edit to it or to a module it imports is a cache miss."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        return source_hash(task_ctx.task.fn.__module__) if task_ctx else None


@dataclass
class RefsIntact(CachePolicy):
    """`policy`'s key, serving a cached result only while every run-store object it refers to is there and hashes
    right: otherwise the cached record is expired (the task runs again) and the log says why."""

    policy: CachePolicy | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        key = self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs) if self.policy else None
        results = getattr(task_ctx, "result_store", None)
        if key and results is not None and results.exists(key):
            try:
                cached = results.read(key).result
            except Exception:  # noqa: BLE001 (an unreadable record is a miss to Prefect as well)
                return key
            broken = [ref.uri for ref in refs_in(cached) if not intact(ref)]
            if broken:
                run_logger().warning(
                    "cached %s result refers to %d missing or corrupt object(s) (%s): computed again",
                    task_ctx.task.name,
                    len(broken),
                    broken[0],
                )
                past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
                results.write(obj=None, key=key, expiration=past)
        return key


def code_and_inputs(exclude: tuple[str, ...] = ()) -> CachePolicy:
    """The stage cache policy: the code the stage runs + its inputs, minus inputs that are not content; a cached result
    whose objects in the run store are gone or corrupt is computed again."""
    policy = ModuleSource() + INPUTS
    for name in exclude:
        policy = policy - name
    return RefsIntact(policy=policy)
