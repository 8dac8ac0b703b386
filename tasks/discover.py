"""Find the documents in a folder: content hash, type, and why a file is skipped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from domain_embed.tasks.store import sha256_file


class DocFile(BaseModel):
    """One file found under the docs folder."""

    rel_path: str
    path: str
    ext: str
    size: int
    sha256: Optional[str] = None
    skipped: Optional[str] = None


class DocsNotFound(ValueError):
    """The docs folder is missing or holds no supported file."""


def discover_documents(docs_dir: str, extensions: list[str], max_file_mb: float) -> list[DocFile]:
    """List every file under docs_dir, sorted by relative path, marking skipped ones with a reason."""
    root = Path(docs_dir)
    if not root.is_dir():
        raise DocsNotFound(f"docs folder not found: {docs_dir}")
    real_root = root.resolve()
    allowed = {e.lower() for e in extensions}
    max_bytes = int(max_file_mb * 1024 * 1024)
    found: list[DocFile] = []
    seen: dict[str, str] = {}
    walk = os.walk(root, followlinks=False, onerror=lambda exc: found.append(_unreadable(exc, root)))
    for dirpath, dirnames, filenames in walk:
        linked = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in linked)
        for name in sorted(filenames + linked):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            doc = DocFile(rel_path=rel, path=str(path), ext=path.suffix.lower(), size=0)
            found.append(doc)
            if path.is_symlink() and not _inside(path.resolve(), real_root):
                doc.skipped = "symlink pointing outside the docs folder (not followed)"
                continue
            if not path.is_file():
                doc.skipped = "symlinked folder (not followed)" if path.is_dir() else "not a regular file"
                continue
            try:
                doc.size = path.stat().st_size
                if doc.ext not in allowed:
                    doc.skipped = f"unsupported file type '{doc.ext or '(none)'}'"
                elif doc.size == 0:
                    doc.skipped = "empty file (0 bytes)"
                elif doc.size > max_bytes:
                    doc.skipped = f"larger than the {max_file_mb:g} MB limit ({doc.size / 1e6:.1f} MB), not read"
                else:
                    doc.sha256 = sha256_file(path)
            except OSError as exc:  # unreadable, or gone since it was listed
                doc.sha256, doc.skipped = None, f"cannot read: {exc.strerror or exc}"
            if doc.sha256 in seen:
                doc.skipped = f"duplicate of {seen[doc.sha256]}"
            elif doc.sha256:
                seen[doc.sha256] = rel
    found.sort(key=lambda d: d.rel_path)
    return found


def _unreadable(exc: OSError, root: Path) -> DocFile:
    """A folder os.walk could not list, reported instead of silently missing its files."""
    path = Path(exc.filename or root)
    rel = path.relative_to(root).as_posix() if _inside(path, root) else str(path)
    return DocFile(rel_path=rel, path=str(path), ext="", size=0, skipped=f"cannot read folder: {exc.strerror or exc}")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
