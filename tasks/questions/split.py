"""Split documents into train, validation and eval, so no document is on two sides; pairs follow their document."""

from __future__ import annotations

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.caching import code_and_inputs
from ..core.objects import Ref, read_jsonl, sha256_bytes
from ..core.reports import publish_table
from ..core.store import RunStore
from ..settings import SplitSettings
from .filters import passes_roundtrip


class SplitResult(BaseModel):
    """Train, validation and eval pairs, which documents went where, and the training pairs dropped by the round-trip rule."""

    train: Ref
    val: Ref
    eval: Ref
    train_docs: list[str]
    val_docs: list[str] = []
    eval_docs: list[str]
    dropped: dict[str, int] = {}


def _rank(doc: str, tag: str) -> str:
    return sha256_bytes(f"{tag}:{doc}".encode())


def pick_docs(doc_ids: list[str], fraction: float, tag: str, keep: int = 1) -> set[str]:
    """About `fraction` of the documents by a stable hash (adding a document never moves the others), leaving `keep`."""
    docs = sorted(set(doc_ids), key=lambda d: _rank(d, tag))
    if len(docs) <= keep:
        return set()
    threshold = int(fraction * 2**32)
    by_hash = {d for d in docs if int(_rank(d, tag)[:8], 16) < threshold}
    if 1 <= len(by_hash) <= len(docs) - keep:
        return by_hash
    return set(docs[: min(len(docs) - keep, max(1, round(len(docs) * fraction)))])


def assign_eval_docs(doc_ids: list[str], settings: SplitSettings) -> set[str]:
    """Documents held out for eval."""
    return pick_docs(doc_ids, settings.eval_fraction, str(settings.seed))


def assign_val_docs(doc_ids: list[str], eval_docs: set[str], settings: SplitSettings) -> set[str]:
    """Documents for validation (checkpoint choice) among the non-eval ones; none when too few documents."""
    rest = [d for d in set(doc_ids) if d not in eval_docs]
    if not settings.val_fraction or len(rest) < 4:
        return set()
    return pick_docs(rest, settings.val_fraction / (1 - settings.eval_fraction), f"{settings.seed}:val", keep=2)


def keep_per_chunk(rows: list[dict], n: int | None, rank: str) -> list[dict]:
    """At most n rows per chunk, the lowest `rank` first (ties: generation order)."""
    if not n:
        return rows
    by_chunk: dict[str, list[dict]] = {}
    for row in rows:
        by_chunk.setdefault(row["chunk_id"], []).append(row)
    ordered = [sorted(group, key=lambda r: (r.get(rank, 0), r.get("candidate", 0)))[:n] for group in by_chunk.values()]
    return [row for group in ordered for row in group]


def split_pairs(
    pairs: Ref,
    settings: SplitSettings,
    store: RunStore,
    roundtrip_top_k: int = 0,
    doc_ids: list[str] | None = None,
    per_chunk: int | None = None,
) -> SplitResult:
    """Write train, validation and eval pair files over all documents (doc_ids; default: those with pairs).

    Training pairs must pass the round-trip rule and are the `per_chunk` best of their chunk by round-trip rank;
    validation and eval pairs are left unbiased: the first `per_chunk` questions asked.
    """
    rows = read_jsonl(pairs)
    docs = sorted(set(doc_ids if doc_ids is not None else [r["doc_id"] for r in rows]))
    eval_docs = assign_eval_docs(docs, settings)
    val_docs = assign_val_docs(docs, eval_docs, settings)
    candidates = [r for r in rows if r["doc_id"] not in eval_docs | val_docs]
    passed = [r for r in candidates if passes_roundtrip(r, roundtrip_top_k)]
    train_rows = keep_per_chunk(passed, per_chunk, "base_rank")
    held_out = [r for r in rows if r["doc_id"] in eval_docs | val_docs]
    held_kept = keep_per_chunk(held_out, per_chunk, "candidate")
    dropped = {
        "round-trip miss (training pairs only)": len(candidates) - len(passed),
        "not among the chunk's best questions (training pairs)": len(passed) - len(train_rows),
        "beyond the chunk's first questions (held-out documents)": len(held_out) - len(held_kept),
    }
    return SplitResult(
        dropped={why: n for why, n in dropped.items() if n},
        train=store.put_jsonl("pairs-train", train_rows),
        val=store.put_jsonl("pairs-val", [r for r in held_kept if r["doc_id"] in val_docs]),
        eval=store.put_jsonl("pairs-eval", [r for r in held_kept if r["doc_id"] in eval_docs]),
        train_docs=sorted(set(docs) - eval_docs - val_docs),
        val_docs=sorted(val_docs),
        eval_docs=sorted(eval_docs),
    )


def split_report_rows(split: SplitResult) -> list[dict]:
    """The split-report table: documents and pairs per side, then the training pairs dropped and why."""
    sides = {
        "train": (split.train_docs, split.train),
        "validation": (split.val_docs, split.val),
        "eval": (split.eval_docs, split.eval),
    }
    rows = [
        {"set": name, "documents": len(docs), "pairs": ref.count, "dropped": ""} for name, (docs, ref) in sides.items()
    ]
    return rows + [{"set": "dropped", "documents": "", "pairs": n, "dropped": why} for why, n in split.dropped.items()]


@task(name="split", cache_policy=code_and_inputs(), persist_result=True)
def split_task(
    pairs: Ref,
    settings: SplitSettings,
    store_url: str,
    roundtrip_top_k: int,
    doc_ids: list[str],
    per_chunk: int | None,
) -> SplitResult:
    """Split the pairs by document (split_pairs); publishes the split-report."""
    split = split_pairs(pairs, settings, RunStore(store_url), roundtrip_top_k, doc_ids, per_chunk)
    get_run_logger().info(
        "Split by document: %d train pairs (%d docs), %d validation pairs (%d docs), %d eval pairs (%d docs)",
        split.train.count,
        len(split.train_docs),
        split.val.count,
        len(split.val_docs),
        split.eval.count,
        len(split.eval_docs),
    )
    publish_table(
        "split-report", split_report_rows(split), "Pairs per side of the by-document split, and training pairs dropped"
    )
    return split
