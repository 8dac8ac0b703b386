"""Checks before paying: the output folder and the run store take writes, and the store has room for the run."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from .names import escape_name
from .store import RunStore, atomic_write

TEXT_COPIES = 3  # a text document's bytes are stored about three times: elements, chunks, corpus
BINARY_COPIES = 1  # a PDF or DOCX holds less text than its size
MODEL_COPIES = 10  # the tuned model, and at the peak three mirrored checkpoints (the newest is mirrored before the
# oldest is dropped), each the model and the optimizer's two moments


def check_output_folder(out_dir: str) -> None:
    """Create the output folder and write a file into it; a ValueError naming the folder when that fails."""
    folder = Path(out_dir)
    probe = folder / f".write-test-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"cannot write the output folder {escape_name(out_dir)}: {exc.strerror or exc} (choose another with --out)"
        ) from None


def store_need(documents: Iterable[tuple[str, int]], model_dir: str) -> int:
    """Bytes a run is expected to add to its store at its peak, from its documents' (extension, size): their text a few
    times over, the tuned model and the training checkpoints."""
    text = sum(size * (BINARY_COPIES if ext in (".pdf", ".docx") else TEXT_COPIES) for ext, size in documents)
    model = sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())
    return text + MODEL_COPIES * model


def check_store(store_url: str, need: int) -> None:
    """Write (and remove) a probe object in the run store, and, for a local store, find `need` bytes free there; a
    ValueError naming the store and the space otherwise."""
    try:
        store = RunStore(store_url)
        probe = store.uri("preflight", f"{uuid.uuid4().hex}.probe")
        atomic_write(probe, b"probe")
        store.fs.rm(probe)
    except OSError as exc:
        raise ValueError(
            f"cannot write the run store {escape_name(store_url)}: {exc.strerror or exc} (choose another with --store)"
        ) from None
    if not isinstance(store.fs, LocalFileSystem):  # an object store has no free space to read
        return
    free = shutil.disk_usage(store.root).free
    if free < need:
        raise ValueError(
            f"the run store {escape_name(store_url)} has {free / 1e6:.0f} MB free and this run needs about "
            f"{need / 1e6:.0f} MB: free some space there or choose another --store"
        )
