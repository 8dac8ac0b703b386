"""Promotion: the `current` pointer in the run store moves to a new model only if it is not worse."""

from __future__ import annotations

import json
import time

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.model_ref import ModelRef, local_model
from ..core.objects import exists, read_json
from ..core.reports import publish_markdown
from ..core.store import RunStore, atomic_write


class Promotion(BaseModel):
    """Which model won on the fixed eval split, and why."""

    promoted: bool
    reason: str
    tuned_ndcg: float | None = None
    current_ndcg: float | None = None
    previous: dict | None = None


def pointer_uri(store: RunStore, name: str) -> str:
    """Where the `current` pointer of a named model lives."""
    return store.uri("current", f"{name}.json")


def read_current(store: RunStore, name: str) -> dict | None:
    """The current model's record, or None before the first promotion."""
    uri = pointer_uri(store, name)
    return read_json(uri) if exists(uri) else None


def current_model(current: dict | None) -> ModelRef | None:
    """The current model's reference, if the pointer has one (pointers of older versions hold a local folder) still in the store."""
    ref = ModelRef(**current["model"]) if current and "model" in current else None
    return ref if ref and exists(ref.uri) else None


def ndcg_at_full_dim(results: dict, label: str) -> float | None:
    """NDCG@10 at the largest dim for one model label of an evaluation's results."""
    by_dim = {int(d): m for d, m in results.get(label, {}).items()}
    return by_dim[max(by_dim)]["ndcg@10"] if by_dim else None


def interval_note(intervals: dict | None, reference: str, results: dict) -> str:
    """' (Δ +0.0123, 95% CI [-0.0050, +0.0290]: within noise)' at the full dim, or '' when no interval was computed."""
    per_dim = (intervals or {}).get(f"tuned-{reference}", {})
    full = max((int(d) for d in results.get("tuned", {})), default=None)
    found = per_dim.get(full, per_dim.get(str(full), {})).get("ndcg@10") if full is not None else None
    if found is None:
        return ""
    found = found if isinstance(found, dict) else found.model_dump()
    return f" (Δ {found['delta']:+.4f}, 95% CI [{found['low']:+.4f}, {found['high']:+.4f}]: {found['verdict']})"


def decide(current: dict | None, results: dict | None, intervals: dict | None = None) -> Promotion:
    """Promote unless the reference (the current model, else the base model) scores higher NDCG@10 on the same split.

    The reason states the paired-bootstrap interval of the difference when `intervals` has it.
    """
    if results is None:
        if current is None:
            return Promotion(promoted=True, reason="no eval split to compare on: the tuned model is the first model")
        return Promotion(promoted=False, reason="no eval split to compare on: current model kept", previous=current)
    tuned = ndcg_at_full_dim(results, "tuned")
    if current is not None and "current" not in results:
        return Promotion(
            promoted=True,
            reason="the tuned model is the current model",
            tuned_ndcg=tuned,
            current_ndcg=tuned,
            previous=current,
        )
    reference = "current" if current is not None else "base"
    held = ndcg_at_full_dim(results, reference)
    note = interval_note(intervals, reference, results)
    if tuned is not None and held is not None and tuned >= held:
        reason = f"tuned NDCG@10 {tuned:.4f} >= {reference} {held:.4f}{note}: promoted"
        return Promotion(promoted=True, reason=reason, tuned_ndcg=tuned, current_ndcg=held, previous=current)
    reason = f"tuned NDCG@10 {tuned:.4f} < {reference} {held:.4f}{note}: {reference} model kept"
    return Promotion(promoted=False, reason=reason, tuned_ndcg=tuned, current_ndcg=held, previous=current)


def write_current(store: RunStore, name: str, record: dict) -> None:
    """Move the pointer (atomically) to a new model record."""
    atomic_write(pointer_uri(store, name), json.dumps({**record, "promoted_at": time.time()}, indent=1).encode())


def promote(
    store: RunStore,
    name: str,
    model: ModelRef,
    model_sha: str,
    promotion: Promotion,
    corpus_sha: str,
    eval_pairs_sha: str,
) -> None:
    """Make the tuned model the current one of `name`, with the corpus and eval split it was judged on."""
    write_current(
        store,
        name,
        {
            "model": model.model_dump(),
            "model_sha": model_sha,
            "corpus_sha": corpus_sha,
            "eval_pairs_sha": eval_pairs_sha,
            "ndcg@10": promotion.tuned_ndcg,
        },
    )


def compared_models(
    base_dir: str, base_sha: str, tuned: ModelRef, tuned_sha: str, current: dict | None
) -> tuple[dict, dict]:
    """Local folders and content hashes by label of the models to compare: base, tuned, and current when it is another model."""
    models, shas = {"base": base_dir, "tuned": local_model(tuned)}, {"base": base_sha, "tuned": tuned_sha}
    current_ref = current_model(current)
    if current_ref and current_ref.sha256 != tuned_sha:
        models["current"], shas["current"] = local_model(current_ref), current_ref.sha256
    return models, shas


def last_run_uri(store: RunStore, name: str) -> str:
    """Where the corpus hash of the last finished run of a named model lives."""
    return store.uri("current", f"{name}.last-run.json")


def corpus_changed(store: RunStore, name: str, corpus_sha: str) -> bool:
    """Whether the corpus differs from the last finished run's (True on the first run)."""
    uri = last_run_uri(store, name)
    return not exists(uri) or read_json(uri).get("corpus_sha") != corpus_sha


def record_run(store: RunStore, name: str, corpus_sha: str) -> None:
    """Remember this run's corpus, promoted or not."""
    atomic_write(
        last_run_uri(store, name), json.dumps({"corpus_sha": corpus_sha, "finished_at": time.time()}).encode()
    )


@task(name="promote", persist_result=False)
def promote_task(
    store_url: str,
    name: str,
    current: dict | None,
    results: dict | None,
    intervals: dict | None,
    model: ModelRef,
    model_sha: str,
    corpus_sha: str,
    eval_pairs_sha: str,
) -> Promotion:
    """Decide on the eval split's results and, when the tuned model is not worse, make it `name`'s current model; the
    `promotion` artifact says why."""
    promotion = decide(current, results, intervals)
    if promotion.promoted:
        promote(RunStore(store_url), name, model, model_sha, promotion, corpus_sha, eval_pairs_sha)
    get_run_logger().info("Promotion: %s", promotion.reason)
    publish_markdown(
        "promotion",
        f"# Promotion of `{name}`\n\n{promotion.reason}.\n",
        "Whether the tuned model became the current one",
    )
    return promotion


@task(name="record-run", persist_result=False)
def record_run_task(store_url: str, name: str, corpus_sha: str) -> None:
    """Remember this finished run's corpus for `name` (the next run's report says whether documents changed)."""
    record_run(RunStore(store_url), name, corpus_sha)
