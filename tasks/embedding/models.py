"""Embedding models: find them offline (folders or packaged models), load once, embed in batches."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.model_ref import model_files
from ..core.objects import stable_hash
from .hub import hub_model_dir, hub_revision, is_hub_id
from .packaged import ModelNotFound, packaged_model_dir, packaged_names

MATRYOSHKA_SIZES = (1024, 768, 512, 256, 128, 64)
EMBED_SLICE = 4096  # texts per encode call when texts are streamed: memory stays bounded however many come


class Backend(NamedTuple):
    """An inference backend ('torch', or 'onnx': ONNX Runtime on the CPU) and the run store keeping ONNX exports."""

    name: str = "torch"
    store_url: str | None = None


TORCH = Backend()


def default_matryoshka_dims(full_dim: int) -> list[int]:
    """The full dimension and the usual Matryoshka sizes below it, largest first."""
    return [full_dim] + [d for d in MATRYOSHKA_SIZES if d < full_dim]


def resolve_model(name: str) -> str:
    """Local folder for a model name: an existing SentenceTransformer folder, a model shipped in a package, or a Hugging
    Face Hub id (ORG/NAME[@revision]) from the local Hub cache, downloaded only when the network is allowed."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelNotFound(f"model folder {name} has no config.json or modules.json")
        return str(path.resolve())
    packaged = packaged_model_dir(name)
    if packaged:
        return packaged
    if is_hub_id(name):
        return hub_model_dir(name)
    raise ModelNotFound(
        f"unknown model '{name}': give a SentenceTransformer folder, a Hugging Face id (ORG/NAME[@revision]) "
        f"or one of: {', '.join(packaged_names())}"
    )


@functools.lru_cache(maxsize=8)
def model_fingerprint(model_dir: str) -> str:
    """Content hash of a model folder (configs and weights), independent of where it lives."""
    return stable_hash(model_files(model_dir))


def model_source(name: str) -> dict[str, str | None]:
    """Where a model name led: its Hub revision (commit hash, None off the Hub) and the fingerprint of its files."""
    model_dir = resolve_model(name)
    return {"name": name, "revision": hub_revision(model_dir), "fingerprint": model_fingerprint(model_dir)}


def best_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model_dir: str, device: str | None = None, backend: Backend = TORCH):
    """Load a SentenceTransformer from a folder, offline, cached per process; backend 'onnx' runs its transformer on
    ONNX Runtime (CPU), from the export kept in the backend's run store."""
    return _load(model_dir, device, backend)


@functools.lru_cache(maxsize=4)
def _load(model_dir: str, device: str | None, backend: Backend):
    from sentence_transformers import SentenceTransformer

    if backend.name == "onnx":
        from ..core.store import RunStore
        from .onnx_export import load_onnx_model, stored_onnx

        return load_onnx_model(
            model_dir, stored_onnx(model_dir, model_fingerprint(model_dir), RunStore(backend.store_url))
        )
    return SentenceTransformer(model_dir, device=device or best_device(), local_files_only=True)


def model_dimension(model_dir: str) -> int:
    """Output dimension of a SentenceTransformer folder, from its module configs (loads the model only if needed)."""
    root = Path(model_dir)
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").exists() else []
    kinds = [m.get("type", "") for m in modules]
    pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    if pooling and not any(k.endswith(("Dense", "LayerNorm")) for k in kinds):
        config = root / pooling.get("path", "") / "config.json"
        settings = json.loads(config.read_text()) if config.exists() else {}
        for key in ("embedding_dimension", "word_embedding_dimension"):  # as sentence-transformers 6 and 2-5 save it
            if key in settings:
                return int(settings[key])
    return int(load_model(model_dir).get_embedding_dimension())


def max_seq_length(model_dir: str) -> int:
    """The model's max sequence length in tokens."""
    config = Path(model_dir) / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return int(load_model(model_dir).max_seq_length)


def embed_texts(
    model_dir: str,
    texts: list[str],
    batch_size: int = 64,
    progress: bool = False,
    backend: Backend = TORCH,
) -> np.ndarray:
    """L2-normalised float32 embeddings, computed in batches on the best device (or on ONNX Runtime: load_model)."""
    if not texts:
        return np.zeros((0, model_dimension(model_dir)), dtype=np.float32)
    model = load_model(model_dir, None, backend)
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def embed_stream(
    model_dir: str, texts: Iterable[str], batch_size: int = 64, backend: Backend = TORCH
) -> Iterator[np.ndarray]:
    """embed_texts over EMBED_SLICE texts at a time, in order: never holds more than one slice of texts or vectors."""
    texts = iter(texts)
    while piece := list(itertools.islice(texts, EMBED_SLICE)):
        yield embed_texts(model_dir, piece, batch_size=batch_size, backend=backend)


def bf16_native() -> bool:
    """Whether torch multiplies bf16 matrices in hardware on this CPU (AMX or AVX512-BF16)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, p, lambda: False)() for p in probes)
