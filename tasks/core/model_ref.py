"""Models as run-store references: a folder's files go up under models/<sha>/, and come back into a local cache by hash."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import fsspec

from .objects import CorruptObject, Ref, intact, read_json, sha256_file, stable_hash, verify
from .progress import run_logger
from .store import RunStore, atomic_write, store_full


class ModelRef(Ref):
    """A model folder in the run store: uri is its manifest (file -> sha256), sha256 the model's fingerprint, count its files."""

    def verify(self) -> None:
        """FileNotFoundError when the model is not (all) there; CorruptDownload when its manifest or a file does not hash
        to what was written (a corrupt file is removed; put_model uploads the model again)."""
        files = read_json(self.uri)
        if stable_hash(files) != self.sha256:
            raise CorruptDownload(f"the manifest {self.uri} does not hash to the model's {self.sha256[:12]}")
        prefix = self.uri.removesuffix(".json")
        for rel, sha in files.items():
            try:
                verify(f"{prefix}/{rel}", sha)
            except CorruptObject as exc:
                raise CorruptDownload(str(exc)) from None


class CorruptDownload(CorruptObject):
    """A fetched file or manifest does not hash to what the reference says."""


def local_cache() -> Path:
    """This machine's working copies (fetched models, training scratch): DOMAIN_EMBED_LOCAL_CACHE, else the user's cache."""
    env = os.environ.get("DOMAIN_EMBED_LOCAL_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domain-embed"


def model_files(model_dir: str) -> dict[str, str]:
    """sha256 of each file that makes the model (configs and weights; not hidden files, not the Markdown card), by relative path."""
    root = Path(model_dir)
    return {
        file.relative_to(root).as_posix(): sha256_file(file)
        for file in sorted(root.rglob("*"))
        if file.is_file() and not file.name.startswith(".") and file.suffix != ".md"
    }


def put_folder(manifest_uri: str, folder: str | os.PathLike, files: dict[str, str]) -> None:
    """Upload `files` (relative path -> sha256) of a local folder beside manifest_uri, then the manifest: its presence
    says the upload is complete."""
    fs, path = fsspec.core.url_to_fs(manifest_uri)
    prefix = path.removesuffix(".json")
    for rel in files:
        parent = f"{prefix}/{rel}".rsplit("/", 1)[0]
        try:
            fs.makedirs(parent, exist_ok=True)
            fs.put_file(str(Path(folder, rel)), f"{prefix}/{rel}")
        except OSError as exc:
            raise store_full(exc, parent, Path(folder, rel).stat().st_size) from exc
    atomic_write(manifest_uri, json.dumps(files, sort_keys=True, indent=1).encode())


def fetch_folder(manifest_uri: str, target: Path, files: dict[str, str]) -> Path:
    """Download the folder of a manifest into `target` (through a hidden sibling, renamed when every file checks out)."""
    fs, path = fsspec.core.url_to_fs(manifest_uri)
    prefix = path.removesuffix(".json")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        for rel, sha in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{prefix}/{rel}", str(tmp / rel))
            if sha256_file(tmp / rel) != sha:
                raise CorruptDownload(f"{prefix}/{rel} does not hash to {sha[:12]}")
        try:
            tmp.rename(target)
        except OSError:  # another process fetched it first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def put_model(store: RunStore, folder: str | os.PathLike) -> ModelRef:
    """Upload a SentenceTransformer folder to the store (a no-op when the same model is there) and return its reference."""
    files = model_files(str(folder))
    sha = stable_hash(files)
    ref = ModelRef(uri=store.uri("models", f"{sha}.json"), sha256=sha, count=len(files))
    if not intact(ref):
        put_folder(ref.uri, folder, files)
    return ref


def local_model(ref: ModelRef) -> str:
    """A local folder holding the referenced model: the cached copy when every file still hashes right, else fetched
    from the store and verified (a store copy that fails its hashes raises CorruptObject and is removed)."""
    target = local_cache() / "fetched-models" / ref.sha256
    files = read_json(ref.uri)
    if target.is_dir() and not _copy_intact(target, files):
        run_logger().warning(
            "the local copy %s of model %s is corrupt: fetched again from the run store", target, ref.sha256[:12]
        )
        shutil.rmtree(target, ignore_errors=True)
    if not target.is_dir():
        ref.verify()
        fetch_folder(ref.uri, target, files)
    return str(target)


def _copy_intact(folder: Path, files: dict[str, str]) -> bool:
    try:
        for rel, sha in files.items():
            verify(str(folder / rel), sha)
    except (FileNotFoundError, CorruptObject):
        return False
    return True
