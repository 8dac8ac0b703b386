"""Split question/chunk pairs into train and eval by document, so no document is in both."""

from __future__ import annotations

from pydantic import BaseModel

from flows.config import SplitSettings
from tasks.qa_filters import passes_roundtrip
from tasks.store import Ref, RunStore, read_jsonl, sha256_bytes


class SplitResult(BaseModel):
    """Train and eval pairs, which documents went where, and the training pairs dropped by the round-trip rule."""

    train: Ref
    eval: Ref
    train_docs: list[str]
    eval_docs: list[str]
    dropped: dict[str, int] = {}


def assign_eval_docs(doc_ids: list[str], settings: SplitSettings) -> set[str]:
    """Documents held out for eval: a stable hash rank, so adding a document never moves the others."""
    docs = sorted(set(doc_ids), key=lambda d: sha256_bytes(f"{settings.seed}:{d}".encode()))
    if len(docs) < 2:
        return set()
    n_eval = min(len(docs) - 1, max(1, round(len(docs) * settings.eval_fraction)))
    threshold = int(settings.eval_fraction * 2**32)
    by_hash = {d for d in docs if int(sha256_bytes(f"{settings.seed}:{d}".encode())[:8], 16) < threshold}
    if 1 <= len(by_hash) <= len(docs) - 1:
        return by_hash
    return set(docs[:n_eval])


def split_pairs(pairs: Ref, settings: SplitSettings, store: RunStore, roundtrip_top_k: int = 0) -> SplitResult:
    """Write train and eval pair files; training pairs must pass the round-trip rule, eval pairs are left unbiased."""
    rows = read_jsonl(pairs)
    eval_docs = assign_eval_docs([r["doc_id"] for r in rows], settings)
    candidates = [r for r in rows if r["doc_id"] not in eval_docs]
    train_rows = [r for r in candidates if passes_roundtrip(r, roundtrip_top_k)]
    eval_rows = [r for r in rows if r["doc_id"] in eval_docs]
    missed = len(candidates) - len(train_rows)
    return SplitResult(
        dropped={"round-trip miss (training pairs only)": missed} if missed else {},
        train=store.put_jsonl("pairs-train", train_rows),
        eval=store.put_jsonl("pairs-eval", eval_rows),
        train_docs=sorted({r["doc_id"] for r in train_rows}),
        eval_docs=sorted(eval_docs),
    )
