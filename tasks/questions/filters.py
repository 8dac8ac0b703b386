"""Quality filters for generated questions; every dropped question carries the reason it was dropped."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..core.text import normalize
from ..embedding.models import TORCH, Backend, embed_texts
from ..settings import FilterSettings

TOO_SHORT, TOO_LONG, COPIED = "too short", "too long", "copies the passage"
DUPLICATE, NEAR_DUPLICATE = "duplicate", "near duplicate"


def length_reason(question: str, filters: FilterSettings) -> str | None:
    """'too short' / 'too long' by characters, else None."""
    if len(question) < filters.min_chars:
        return TOO_SHORT
    if len(question) > filters.max_chars:
        return TOO_LONG
    return None


def copies_span(question: str, passage: str, n_words: int) -> bool:
    """Whether the question repeats n_words consecutive words of the passage."""
    q = normalize(question).split()
    if len(q) < n_words:
        return False
    p = normalize(passage).split()
    shingles = {tuple(p[i : i + n_words]) for i in range(len(p) - n_words + 1)}
    return any(tuple(q[i : i + n_words]) in shingles for i in range(len(q) - n_words + 1))


class NearDuplicateIndex:
    """Word-set Jaccard search over the questions kept so far, with prefix filtering on a global word order."""

    def __init__(self, threshold: float, corpus: Iterable[set[str]]) -> None:
        self.threshold = threshold
        freq = Counter(w for words in corpus for w in words)
        self._rank = lambda w: (freq.get(w, 0), w)
        self._kept: list[set[str]] = []
        self._postings: dict[str, list[int]] = {}

    def _prefix(self, words: set[str]) -> list[str]:
        ordered = sorted(words, key=self._rank)
        return ordered[: len(words) - math.ceil(self.threshold * len(words) - 1e-9) + 1]

    def find(self, words: set[str]) -> bool:
        """Whether a kept question has Jaccard >= threshold with these words."""
        seen: set[int] = set()
        for w in self._prefix(words):
            for i in self._postings.get(w, ()):
                if i not in seen:
                    seen.add(i)
                    other = self._kept[i]
                    if len(words & other) >= self.threshold * len(words | other) - 1e-9:
                        return True
        return False

    def add(self, words: set[str]) -> None:
        self._kept.append(words)
        for w in self._prefix(words):
            self._postings.setdefault(w, []).append(len(self._kept) - 1)


def roundtrip_ranks(questions: np.ndarray, chunks: np.ndarray, own: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Rank (0 = best) of each question's own chunk among all chunks by inner product; ties count in its favour."""
    ranks = np.zeros(len(own), dtype=np.int64)
    for start in range(0, len(own), batch):
        scores = questions[start : start + batch] @ chunks.T
        mine = scores[np.arange(len(scores)), own[start : start + batch]]
        ranks[start : start + batch] = (scores > mine[:, None] + 1e-6).sum(axis=1)
    return ranks


def filter_questions(
    candidates: list[dict],
    chunk_texts: dict[str, str],
    filters: FilterSettings,
    base_model_dir: str | None,
    chunk_vectors: np.ndarray | None = None,
    backend: Backend = TORCH,
) -> tuple[list[dict], list[dict]]:
    """Split candidate pairs ({query, chunk_id, doc_id}, deterministically ordered) into kept and dropped (+ 'reason').

    chunk_texts holds every chunk of the corpus (chunk_id -> text); chunk_vectors, when given, are the base model's
    embeddings of those texts in that order (the corpus embeddings the run already has). Order: length, copied span,
    exact and near duplicates. Kept rows get 'base_rank', the rank of their own chunk among all chunks under the base
    model: the round-trip filter applies it to training pairs only (domain_embed.tasks.questions.split), since filtering eval
    queries with the base model would pick exactly the queries the base model already answers.
    """
    dropped: list[dict] = []
    survivors: list[dict] = []
    for row in candidates:
        passage = chunk_texts.get(row["chunk_id"], "")
        reason = length_reason(row["query"], filters)
        if not reason and copies_span(row["query"], passage, filters.max_copied_words):
            reason = COPIED
        if reason:
            dropped.append({**row, "reason": reason})
        else:
            survivors.append(row)
    survivors = _with_base_ranks(
        survivors, chunk_texts, filters.roundtrip_top_k, base_model_dir, chunk_vectors, backend
    )
    kept: list[dict] = []
    exact: set[str] = set()
    word_sets = [set(normalize(r["query"]).split()) for r in survivors]
    index = NearDuplicateIndex(filters.near_duplicate_jaccard, word_sets)
    for row, words in zip(survivors, word_sets):
        norm = normalize(row["query"])
        if norm in exact:
            dropped.append({**row, "reason": DUPLICATE})
        elif words and index.find(words):
            dropped.append({**row, "reason": NEAR_DUPLICATE})
        else:
            exact.add(norm)
            if words:
                index.add(words)
            kept.append(row)
    return kept, dropped


def _with_base_ranks(
    rows: list[dict],
    chunk_texts: dict[str, str],
    top_k: int,
    base_model_dir: str | None,
    chunk_vectors: np.ndarray | None,
    backend: Backend,
) -> list[dict]:
    if not rows or top_k <= 0 or top_k >= len(set(chunk_texts.values())) or base_model_dir is None:
        return rows
    if chunk_vectors is None:
        chunk_vectors = embed_texts(base_model_dir, list(chunk_texts.values()), backend=backend)
    elif len(chunk_vectors) != len(chunk_texts):
        raise ValueError(f"{len(chunk_vectors)} chunk embeddings for {len(chunk_texts)} chunks")
    position = {chunk_id: i for i, chunk_id in enumerate(chunk_texts)}
    question_vecs = embed_texts(base_model_dir, [r["query"] for r in rows], backend=backend)
    own = np.array([position[r["chunk_id"]] for r in rows], dtype=np.int64)
    ranks = roundtrip_ranks(question_vecs, chunk_vectors, own)
    return [{**r, "base_rank": int(rank)} for r, rank in zip(rows, ranks)]


def passes_roundtrip(row: dict, top_k: int) -> bool:
    """The round-trip rule (Promptagator/InPars): the question's own chunk ranks in the base model's top k."""
    return top_k <= 0 or row.get("base_rank") is None or row["base_rank"] < top_k
