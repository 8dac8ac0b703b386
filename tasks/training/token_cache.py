"""Tokenize each distinct training text once; the collator then only pads cached token ids.

The stock collator re-tokenizes every text of every batch in the training loop's own process (about
1 ms per example on one CPU core at 256 tokens), which leaves a GPU idle between steps. Here the
distinct texts go through the model's own `preprocess` once, in large batches, and a batch is built
by padding their ids: the same tensors, checked against `preprocess` before use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

TEXT_KEYS = ("input_ids", "token_type_ids", "attention_mask")
CHUNK = 1024
CHECK_SAMPLE = 32


class UnsupportedModel(Exception):
    """The model's preprocess makes something other than padded text ids (prompts, images, flattening)."""


class TokenCache:
    """Token ids of every distinct text as `preprocess` makes them; called like `model.preprocess` by the collator."""

    def __init__(self, preprocess: Callable[..., dict], pad_id: int, pad_left: bool) -> None:
        self.preprocess = preprocess
        self.pad_id = pad_id
        self.pad_left = pad_left
        self.rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def build(cls, model: Any, texts: Iterable[str]) -> TokenCache | None:
        """A cache holding `texts`, or None when the model's preprocess is not plain padded text (then keep preprocess)."""
        distinct = list(dict.fromkeys(texts))
        cache = cls(
            model.preprocess, pad_id=model.tokenizer.pad_token_id or 0, pad_left=model.tokenizer.padding_side == "left"
        )
        try:
            cache.add(distinct)
            if distinct and not cache.matches_preprocess(distinct[:CHECK_SAMPLE]):
                raise UnsupportedModel("padded cached ids differ from preprocess")
        except UnsupportedModel as exc:
            log.info("token cache off, the collator tokenizes each batch: %s", exc)
            return None
        return cache

    def add(self, texts: list[str]) -> None:
        """Tokenize the texts not cached yet through the model's own preprocess, CHUNK at a time on parallel threads."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if not missing:  # every batch after the build: no thread pool on the hot path
            return
        chunks = [missing[start : start + CHUNK] for start in range(0, len(missing), CHUNK)]
        workers = min(len(chunks), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for wave in range(0, len(chunks), workers):  # a wave at a time: padded outputs never pile up in memory
                for chunk, out in zip(
                    chunks[wave : wave + workers], pool.map(self.preprocess, chunks[wave : wave + workers])
                ):
                    self.keep(chunk, out)

    def keep(self, chunk: list[str], out: dict[str, Any]) -> None:
        """Store each text's unpadded ids from one preprocess output."""
        extra = set(out) - set(TEXT_KEYS) - {"modality"}
        if extra or out.get("modality", "text") != "text" or "attention_mask" not in out:
            raise UnsupportedModel(f"preprocess returns {sorted(out)} (modality {out.get('modality')!r})")
        mask = out["attention_mask"].numpy().astype(bool)
        ids = out["input_ids"].numpy().astype(np.int32)
        types = out["token_type_ids"].numpy().astype(np.int32) if "token_type_ids" in out else None
        for i, text in enumerate(chunk):
            self.rows[text] = (ids[i][mask[i]], types[i][mask[i]] if types is not None else None)

    def lengths(self, texts: list[str]) -> np.ndarray:
        """Token count of each text, special tokens and truncation included (the length sampler's measure)."""
        self.add(texts)
        return np.fromiter((len(self.rows[t][0]) for t in texts), dtype=np.int64, count=len(texts))

    def __call__(self, inputs: list[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The padded batch for plain texts; anything else (a prompt, a task, a max length, non-text) goes to preprocess."""
        if prompt or any(v is not None for v in kwargs.values()) or not all(isinstance(t, str) for t in inputs):
            return self.preprocess(inputs, prompt=prompt, **kwargs)
        self.add(inputs)
        rows = [self.rows[t] for t in inputs]
        width = max(len(ids) for ids, _ in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        with_types = rows[0][1] is not None
        types = np.zeros((len(rows), width), dtype=np.int64) if with_types else None
        for i, (row_ids, row_types) in enumerate(rows):
            span = slice(width - len(row_ids), width) if self.pad_left else slice(0, len(row_ids))
            ids[i, span], mask[i, span] = row_ids, 1
            if with_types:
                types[i, span] = row_types
        batch: dict[str, Any] = {"input_ids": torch.from_numpy(ids)}
        if with_types:
            batch["token_type_ids"] = torch.from_numpy(types)
        batch["attention_mask"] = torch.from_numpy(mask)
        batch["modality"] = "text"
        return batch

    def matches_preprocess(self, texts: list[str]) -> bool:
        """Whether the cached batch of `texts` equals what the model's preprocess makes, key for key."""
        ours, theirs = self(texts), self.preprocess(texts)
        if list(ours) != list(theirs):
            return False
        return all(
            torch.equal(v, theirs[k]) if isinstance(v, torch.Tensor) else v == theirs[k] for k, v in ours.items()
        )
