"""What a file must be before a parser opens it: text that decodes (any charset, no binary), a PDF that opens and is
not encrypted, a zip-based document that is a valid zip of its type and does not inflate past the cap."""

from __future__ import annotations

import zipfile

ZIP_PARTS = {".docx": "word/document.xml"}  # zip-based types, and the part each must hold


class ParseError(ValueError):
    """A document that cannot be parsed, with the reason a user can act on."""


def decode_text(data: bytes) -> str:
    """Decode text bytes (UTF-8, UTF-16 with BOM, else a detected charset); reject binary data."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    sample = data[:8192]
    if b"\x00" in sample:
        raise ParseError("binary data in a text file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("binary data in a text file (no text encoding fits)")
    text = str(best)
    if _control_ratio(text) > 0.05:
        raise ParseError("binary data in a text file (mostly control characters)")
    return text


def _control_ratio(text: str) -> float:
    sample = text[:8192]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return control / max(1, len(sample))


def check_pdf(path: str, data_head: bytes) -> None:
    if not data_head.startswith(b"%PDF-"):
        raise ParseError("not a PDF (missing %PDF- header)")
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
    except (PdfReadError, ValueError, OSError) as exc:
        raise ParseError(f"corrupt or truncated PDF: {exc}") from exc
    if encrypted:
        raise ParseError("encrypted PDF (password protected)")


def check_zip(path: str, ext: str, max_inflated_mb: float) -> None:
    """Reject a zip-based document that is not a valid zip of its type, or that inflates past the cap, before parsing.

    The sizes are those the zip declares: zipfile (under python-docx) never inflates an entry past its declared size."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ParseError(f"not a valid {ext} (zip) file: {exc}") from exc
    except OSError as exc:  # removed or made unreadable since discovery
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if ZIP_PARTS[ext] not in {e.filename for e in entries}:
        raise ParseError(f"not a valid {ext} file: the zip holds no {ZIP_PARTS[ext]}")
    inflated = sum(e.file_size for e in entries) / 2**20
    if inflated > max_inflated_mb:
        raise ParseError(
            f"inflates to {inflated:.0f} MB (> {max_inflated_mb:g} MB cap, parse.max_inflated_mb); "
            "a zip bomb or a very large document, not parsed"
        )
