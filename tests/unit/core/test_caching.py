"""Cache keys on code are derived from the imports: every module a stage's task imports, directly or through others,
is in its key, so an edit to any of them misses the cache (a hand-typed list once left out the output rotation)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from prefect import Task

import domain_embed.tasks
from domain_embed.tasks.core import caching
from domain_embed.tasks.core.caching import RefsIntact, imported_modules, module_closure, source_hash


def cached_tasks() -> list[Task]:
    """Every Prefect task of the stages whose cache key holds code."""
    found = []
    for info in pkgutil.walk_packages(domain_embed.tasks.__path__, "domain_embed.tasks."):
        module = importlib.import_module(info.name)
        found += [v for v in vars(module).values() if isinstance(v, Task) and isinstance(v.cache_policy, RefsIntact)]
    return list({t.name: t for t in found}.values())


def test_the_cached_tasks_are_found():
    assert {"generate", "split", "supervise", "mine", "train", "evaluate", "evaluate-beir"} <= {
        t.name for t in cached_tasks()
    }


@pytest.mark.parametrize("task", cached_tasks(), ids=lambda t: t.name)
def test_every_module_a_task_imports_is_in_its_key(task):
    key_modules = set(module_closure(task.fn.__module__))
    for module in key_modules:
        assert imported_modules(module) <= key_modules, module


def test_the_training_key_holds_the_output_rotation():
    assert "domain_embed.tasks.training.rotation" in module_closure("domain_embed.tasks.training.task")


def test_an_edit_to_an_imported_module_changes_the_key(monkeypatch):
    source_hash.cache_clear()
    before = source_hash("domain_embed.tasks.training.task")
    real = caching.module_source
    edited = lambda m: real(m) + "\n# edited\n" if m == "domain_embed.tasks.training.rotation" else real(m)
    monkeypatch.setattr(caching, "module_source", edited)
    source_hash.cache_clear()
    assert source_hash("domain_embed.tasks.training.task") != before
    assert source_hash("domain_embed.tasks.ingest.parse") == source_hash.__wrapped__("domain_embed.tasks.ingest.parse")
    source_hash.cache_clear()
