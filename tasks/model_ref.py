"""Models as run-store references: a folder's files go up under models/<sha>/, and come back into a local cache by hash."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import fsspec

from domain_embed.tasks.embed import model_files
from domain_embed.tasks.store import Ref, RunStore, atomic_write, exists, read_json, sha256_file, stable_hash


class ModelRef(Ref):
    """A model folder in the run store: uri is its manifest (file -> sha256), sha256 the model's fingerprint, count its files."""


class CorruptDownload(RuntimeError):
    """A fetched file or manifest does not hash to what the reference says."""


def local_cache() -> Path:
    """This machine's working copies (fetched models, training scratch): DOMAIN_EMBED_LOCAL_CACHE, else the user's cache."""
    env = os.environ.get("DOMAIN_EMBED_LOCAL_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domain-embed"


def put_folder(manifest_uri: str, folder: str | os.PathLike, files: dict[str, str]) -> None:
    """Upload `files` (relative path -> sha256) of a local folder beside manifest_uri, then the manifest: its presence
    says the upload is complete."""
    fs, path = fsspec.core.url_to_fs(manifest_uri)
    prefix = path.removesuffix(".json")
    for rel in files:
        fs.makedirs(f"{prefix}/{rel}".rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(Path(folder, rel)), f"{prefix}/{rel}")
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
    manifest = store.uri("models", f"{sha}.json")
    if not exists(manifest):
        put_folder(manifest, folder, files)
    return ModelRef(uri=manifest, sha256=sha, count=len(files))


def local_model(ref: ModelRef) -> str:
    """A local folder holding the referenced model: the cached copy, else fetched and verified against its hash."""
    target = local_cache() / "fetched-models" / ref.sha256
    if not target.is_dir():
        files = read_json(ref.uri)
        if stable_hash(files) != ref.sha256:
            raise CorruptDownload(f"the manifest {ref.uri} does not hash to the model's {ref.sha256[:12]}")
        fetch_folder(ref.uri, target, files)
    return str(target)
