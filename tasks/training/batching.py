"""Length-grouped batches without duplicate texts: little padding, and in-batch negatives that are never the positive."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

EXCLUDED_COLUMNS = {"dataset_name"}
MEGA_BATCH = 50


class TokenLengths:
    """Token count of each text as the model's collator would tokenize it (special tokens, truncation)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(texts))


def char_lengths(texts: list[str]) -> np.ndarray:
    """Characters per text: a tokenizer-free length proxy."""
    return np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))


def padded_positions(widths: Sequence[int], rows: int) -> int:
    """Token positions the loss computes for one batch whose columns are padded to `widths`.

    Sentence-transformers' MNRL embeds the first (anchor) column on its own and all other columns in
    one merged forward, padded to the widest of them.
    """
    return rows * (widths[0] + (len(widths) - 1) * max(widths[1:])) if len(widths) > 1 else rows * sum(widths)


def padding_fraction(batches: Sequence[Sequence[int]], lengths: np.ndarray) -> float:
    """Share of the computed token positions that are padding; lengths: one row per example, one column per text column."""
    real = padded = 0
    for batch in batches:
        block = lengths[list(batch)]
        real += int(block.sum())
        padded += padded_positions(block.max(axis=0).tolist(), len(batch))
    return 1.0 - real / padded if padded else 0.0


def grouping_lengths(lengths: np.ndarray) -> np.ndarray:
    """What a batch's padding depends on: the anchor's length and the longest of the other columns (merged forward)."""
    return np.column_stack([lengths[:, 0], lengths[:, 1:].max(axis=1)]) if lengths.shape[1] > 2 else lengths


def grouped_order(pool: list[int], lengths: np.ndarray, leaf: int) -> list[int]:
    """The pool ordered so that runs of `leaf` examples have similar lengths in every column.

    A k-d split: sort by the column whose lengths spread most, cut at a multiple of `leaf` near the
    middle, recurse on both halves. Sorting by one total length would not do: the anchor (query) and
    the passages are padded separately, and a short query says nothing about its passage's length.
    """
    if len(pool) <= leaf:
        return pool
    block = lengths[pool]
    column = int(np.argmax(block.max(axis=0) - block.min(axis=0)))
    ordered = [pool[i] for i in np.argsort(block[:, column], kind="stable")]
    half = (-(-len(pool) // leaf) // 2) * leaf
    return grouped_order(ordered[:half], lengths, leaf) + grouped_order(ordered[half:], lengths, leaf)


class CountingCollator:
    """Wraps a data collator and counts, per batch, the examples, the real (attention mask 1) and the computed token positions, and its seconds."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate
        self.examples: list[int] = []
        self.real: list[int] = []
        self.padded: list[int] = []
        self.seconds: list[float] = []

    def __getattr__(self, name: str) -> Any:
        if name == "collate":
            raise AttributeError(name)
        return getattr(self.collate, name)

    def __call__(self, features: list[dict]) -> dict:
        started = time.perf_counter()
        batch = self.collate(features)
        self.seconds.append(time.perf_counter() - started)
        masks = [v for k, v in batch.items() if k.endswith("attention_mask")]
        self.examples.append(len(features))
        self.real.append(int(sum(int(m.sum()) for m in masks)))
        self.padded.append(padded_positions([m.shape[1] for m in masks], len(features)) if masks else 0)
        return batch

    @property
    def padding_fraction(self) -> float | None:
        """Share of padding over all batches so far."""
        return 1.0 - sum(self.real) / sum(self.padded) if sum(self.padded) else None


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """NO_DUPLICATES batches (no text twice in a batch, across columns) of examples with similar token length.

    Per epoch: shuffle, cut into mega-batches of `mega_batch` batches (at least two mega-batches, so that
    small datasets still get new batch companions every epoch), order each by length (`grouped_order`),
    fill batches greedily in that order, skipping examples that would repeat a text (what a mega-batch
    cannot place joins the next one; the last leftovers are packed by `settle`), then shuffle the order
    of the batches. Every example appears exactly once per epoch, in `len(self)` batches unless the data
    has too few distinct texts for that (drop_last=False).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        measure: Callable[[list[str]], np.ndarray] = char_lengths,
        mega_batch: int = MEGA_BATCH,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        skip = EXCLUDED_COLUMNS | set(valid_label_columns or [])
        columns = [c for c in dataset.column_names if c not in skip]
        values = [[str(v) for v in dataset[c]] for c in columns]
        self.texts = [frozenset(hash(v) for v in row) for row in zip(*values)]
        self.lengths = (
            np.stack([measure(col) for col in values], axis=1) if columns else np.zeros((len(dataset), 0), np.int64)
        )
        self.grouping = grouping_lengths(self.lengths)
        self.mega_batch = mega_batch

    def __len__(self) -> int:
        n = len(self.texts)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        batches = self.epoch_batches()
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]

    def epoch_batches(self) -> list[list[int]]:
        """This epoch's batches, before their order is shuffled."""
        order = torch.randperm(len(self.texts), generator=self.generator).tolist()
        size = self.batch_size * max(1, min(self.mega_batch, -(-len(self) // 2)))
        batches: list[list[int]] = []
        carry: list[int] = []
        for start in range(0, len(order), size):
            full, carry = self.fill(grouped_order(carry + order[start : start + size], self.grouping, self.batch_size))
            batches += full
        short = self.settle(carry, batches)
        return batches + [b for b in short if len(b) == self.batch_size or not self.drop_last]

    def fill(self, pool: list[int]) -> tuple[list[list[int]], list[int]]:
        """Full no-duplicate batches taken greedily in pool order; returns them and the examples left over."""
        batches: list[list[int]] = []
        while pool:
            batch: list[int] = []
            seen: set[int] = set()
            rest: list[int] = []
            for pos, index in enumerate(pool):
                if len(batch) == self.batch_size:
                    rest += pool[pos:]
                    break
                if seen.isdisjoint(self.texts[index]):
                    batch.append(index)
                    seen |= self.texts[index]
                else:
                    rest.append(index)
            if len(batch) < self.batch_size:
                return batches, batch + rest
            batches.append(batch)
            pool = rest
        return batches, []

    def settle(self, leftovers: list[int], full: list[list[int]]) -> list[list[int]]:
        """Pack the last examples into as few batches as their count needs, so that the trainer's `len(self)` steps see them all.

        An example that clashes with every open batch trades places with an example of a full batch.
        """
        bins: list[list[int]] = [[] for _ in range(-(-len(leftovers) // self.batch_size))]

        def open_bin(index: int) -> list[int] | None:
            return next((b for b in bins if len(b) < self.batch_size and self.fits(index, b)), None)

        for index in leftovers:
            target = open_bin(index)
            if target is None and (evicted := self.trade(index, full, open_bin)) is not None:
                index, target = evicted, open_bin(evicted)
            if target is None:
                bins.append(target := [])
            target.append(index)
        return bins

    def trade(self, index: int, full: list[list[int]], open_bin: Callable[[int], list[int] | None]) -> int | None:
        """Put the example into a full batch in place of one that an open batch can take; returns that one."""
        for batch in full:
            clashes = [pos for pos, other in enumerate(batch) if not self.texts[other].isdisjoint(self.texts[index])]
            if len(clashes) > 1:
                continue
            for pos in clashes or range(len(batch)):
                if open_bin(batch[pos]) is not None:
                    batch[pos], evicted = index, batch[pos]
                    return evicted
        return None

    def fits(self, index: int, batch: list[int]) -> bool:
        """Whether the example shares no text with the batch."""
        return all(self.texts[index].isdisjoint(self.texts[other]) for other in batch)
