"""Find the documents in a folder: content hash, type, and why a file is skipped."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from ..core.names import escape_name, unescape_name
from ..core.objects import sha256_file


def doc_id(sha256: str) -> str:
    """A document's id in chunks, pairs and splits: the first 16 hex characters of its content hash."""
    return sha256[:16]


class DocFile(BaseModel):
    """One file found under the docs folder; its names are escaped (`tasks.names`): any bytes, safe in JSON and logs."""

    rel_path: str
    path: str
    ext: str
    size: int
    sha256: str | None = None
    skipped: str | None = None

    @property
    def doc_id(self) -> str:
        """The id of this document's chunks (its content hash's first 16 characters); empty when it was not read."""
        return doc_id(self.sha256 or "")

    @property
    def os_path(self) -> str:
        """The path to open, exactly as the file system names it."""
        return unescape_name(self.path)


class DocsNotFound(ValueError):
    """The docs folder is missing or holds no supported file."""


def discover_documents(docs_dir: str, extensions: list[str], max_file_mb: float) -> list[DocFile]:
    """List every file under docs_dir, sorted by relative path, marking skipped ones with a reason."""
    root = Path(docs_dir)
    if not root.is_dir():
        raise DocsNotFound(f"docs folder not found: {escape_name(docs_dir)}")
    real_root = root.resolve()
    allowed = {e.lower() for e in extensions}
    max_bytes = int(max_file_mb * 1024 * 1024)
    found: list[DocFile] = []
    seen: dict[str, str] = {}
    walk = os.walk(root, followlinks=False, onerror=lambda exc: found.append(_unreadable(exc, root)))
    for dirpath, dirnames, filenames in walk:
        linked = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        hidden = [d for d in dirnames if d.startswith(".") and d not in linked]
        dirnames[:] = sorted(d for d in dirnames if d not in linked and d not in hidden)
        for name in sorted(filenames + linked + hidden):
            path = Path(dirpath) / name
            doc = _entry(path, root)
            found.append(doc)
            if name.startswith("."):
                doc.skipped = (
                    "hidden folder (name starts with '.'), not read"
                    if name in hidden
                    else "hidden file (name starts with '.')"
                )
                continue
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
                seen[doc.sha256] = doc.rel_path
    found.sort(key=lambda d: d.rel_path)
    return found


def _entry(path: Path, root: Path) -> DocFile:
    """A DocFile for a path under root, its names escaped, not yet sized or hashed."""
    return DocFile(
        rel_path=escape_name(path.relative_to(root).as_posix()),
        path=escape_name(path),
        ext=escape_name(path.suffix.lower()),
        size=0,
    )


def _unreadable(exc: OSError, root: Path) -> DocFile:
    """A folder os.walk could not list, reported instead of silently missing its files."""
    path = Path(exc.filename or root)
    doc = (
        _entry(path, root)
        if _inside(path, root)
        else DocFile(rel_path=escape_name(path), path=escape_name(path), ext="", size=0)
    )
    doc.ext, doc.skipped = "", f"cannot read folder: {exc.strerror or exc}"
    return doc


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
