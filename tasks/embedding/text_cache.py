"""Embeddings of texts by one model, kept in the run store by text hash: each text is embedded once per model."""

from __future__ import annotations

import io

import numpy as np

from ..core.objects import sha256_bytes
from ..core.store import RunStore, atomic_write
from .models import embed_texts, model_fingerprint


def text_key(text: str) -> str:
    """The cache key of one text."""
    return sha256_bytes(text.encode())[:32]


class EmbeddingCache:
    """Batches of (text key, vector) in `text-embeddings/<model>/`; a lookup embeds only the texts not seen before."""

    def __init__(self, store: RunStore, model_dir: str, batch_size: int = 64) -> None:
        self.store, self.model_dir, self.batch_size = store, model_dir, batch_size
        self.folder = store.uri("text-embeddings", model_fingerprint(model_dir)[:24])

    def _known(self) -> dict[str, np.ndarray]:
        known: dict[str, np.ndarray] = {}
        if not self.store.fs.exists(self.folder):
            return known
        for path in sorted(self.store.fs.glob(f"{self.folder}/*.npz")):
            with self.store.fs.open(path, "rb") as handle, np.load(io.BytesIO(handle.read())) as batch:
                known.update(zip(batch["keys"].tolist(), batch["vectors"]))
        return known

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text (in order), computing and storing only the unseen ones."""
        known = self._known()
        missing = sorted({text_key(t): t for t in texts if text_key(t) not in known}.items())
        if missing:
            vectors = embed_texts(self.model_dir, [t for _, t in missing], batch_size=self.batch_size)
            keys = np.array([k for k, _ in missing])
            buffer = io.BytesIO()
            np.savez(buffer, keys=keys, vectors=vectors)
            atomic_write(f"{self.folder}/{sha256_bytes(keys.tobytes())[:24]}.npz", buffer.getvalue())
            known.update(zip(keys.tolist(), vectors))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[text_key(t)] for t in texts]).astype(np.float32)
