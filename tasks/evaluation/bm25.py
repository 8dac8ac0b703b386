"""Lexical baseline: BM25 rankings by bm25s (its own tokenizer: lower case, English stopwords, no stemming)."""

from __future__ import annotations

import logging

import numpy as np


def bm25_rankings(passages: list[str], queries: list[str], k: int) -> list[list[tuple[int, float]]]:
    """Top-k (passage index, score) per query, best first, ties by index; passages sharing no term are not ranked."""
    import bm25s
    from bm25s.tokenization import Tokenizer

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: one line per index built
    tokenizer = Tokenizer(stopwords="en")
    retriever = bm25s.BM25()
    retriever.index(tokenizer.tokenize(passages, show_progress=False, return_as="tuple"), show_progress=False)
    rankings = []
    for tokens in tokenizer.tokenize(queries, update_vocab=False, show_progress=False, return_as="string"):
        terms = [t for t in tokens if t]
        if not terms:  # only stopwords or words no passage has
            rankings.append([])
            continue
        scores = retriever.get_scores(terms)
        order = np.argsort(-scores, kind="stable")[:k]
        rankings.append([(int(i), float(scores[i])) for i in order if scores[i] > 0])
    return rankings
