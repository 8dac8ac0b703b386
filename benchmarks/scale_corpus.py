"""Real-text documents for the scale benchmark: the Debian Reference, then the READMEs, NEWS and changelogs under
/usr/share/doc, cut into paragraphs, duplicates dropped, packed into plain-text documents of about 4 kB each."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

REFERENCE_DIR = Path("/usr/share/debian-reference")
DOC_DIR = Path("/usr/share/doc")
PACKAGE = "debian-reference-en"
TEXT_NAMES = re.compile(
    r"^(README|NEWS|CHANGES|changelog|HISTORY|FAQ|TODO|USAGE)[\w.-]*?(\.txt|\.md|\.rst)?(\.gz)?$", re.I
)
DOC_CHARS = 4000
MIN_PARAGRAPH = 40


def ensure_package() -> None:
    """Install debian-reference-en when its pages are missing (the benchmark runs as root in CI)."""
    if any(REFERENCE_DIR.glob("*.en.html")):
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"{PACKAGE} is needed: install it with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=True, env=env, stdout=subprocess.DEVNULL)


def reference_paragraphs() -> Iterator[str]:
    """Paragraphs, list items and code blocks of the Debian Reference's English pages, in page order."""
    from lxml import html

    for page in sorted(REFERENCE_DIR.glob("*.en.html")):
        tree = html.parse(str(page))
        for block in tree.iter("p", "li", "pre", "dd", "td"):
            if not any(child.tag in ("p", "li", "pre") for child in block.iterdescendants()):
                yield block.text_content()


def package_doc_paragraphs() -> Iterator[str]:
    """Blank-line separated paragraphs of the text docs that installed packages ship (READMEs first, changelogs last)."""
    files = sorted(
        (p for p in DOC_DIR.rglob("*") if p.is_file() and not p.is_symlink() and TEXT_NAMES.match(p.name)),
        key=lambda p: (p.name.lower().startswith("changelog"), str(p)),
    )
    for path in files:
        try:
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = data.decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
            continue
        if "\x00" in text:
            continue
        yield from re.split(r"\n\s*\n", text)


def paragraphs() -> Iterator[str]:
    """Every distinct paragraph of at least MIN_PARAGRAPH characters, whitespace tidied, in a fixed order."""
    seen: set[bytes] = set()
    for source in (reference_paragraphs(), package_doc_paragraphs()):
        for raw in source:
            text = "\n".join(" ".join(line.split()) for line in raw.strip().splitlines() if line.strip())
            digest = hashlib.sha1(" ".join(text.lower().split()).encode()).digest()
            if len(text) >= MIN_PARAGRAPH and digest not in seen:
                seen.add(digest)
                yield text


def write_documents(n: int, folder: Path) -> int:
    """Write n documents doc-00000.txt… of about DOC_CHARS characters each; the first k are the same for every n."""
    folder.mkdir(parents=True, exist_ok=True)
    written, body = 0, []
    for paragraph in paragraphs():
        body.append(paragraph)
        if sum(len(p) for p in body) >= DOC_CHARS:
            (folder / f"doc-{written:05d}.txt").write_text("\n\n".join(body) + "\n", encoding="utf-8")
            written, body = written + 1, []
            if written == n:
                return total_bytes(folder)
    raise SystemExit(f"only {written} documents of real text found, {n} asked")


def total_bytes(folder: Path) -> int:
    """Bytes of every file under folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
