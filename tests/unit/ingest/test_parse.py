"""Discovery and parsing on real small documents and on bad files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

from domain_embed.tasks.core.objects import read_jsonl, sha256_file
from domain_embed.tasks.ingest.discover import DocsNotFound, discover_documents
from domain_embed.tasks.ingest.parse import ParseError, decode_text, parse_document
from domain_embed.tasks.settings import ParseSettings

SETTINGS = ParseSettings()


def parse(path: Path, store):
    return parse_document(str(path), sha256_file(path), path.suffix.lower(), SETTINGS, store)


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "docs").iterdir()))
def test_each_format_parses_to_text_with_sections(name, store):
    result = parse(FIXTURES / "docs" / name, store)
    assert result.status == "ok", result.error
    records = read_jsonl(result.ref)
    assert result.elements == len(records) >= 5
    assert result.chars > 1500
    assert any(r["section"] for r in records), "no heading found"


def test_same_bytes_give_the_same_reference_wherever_the_file_lives(tmp_path, store):
    source = FIXTURES / "docs" / "wal-intro.html"
    copy = tmp_path / "renamed" / "other-name.html"
    copy.parent.mkdir()
    shutil.copy(source, copy)
    assert parse(source, store).ref == parse(copy, store).ref


def write_bad_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("   \n\n  ")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\ntrunc")
    (folder / "notapdf.pdf").write_bytes(b"hello, I am text pretending to be a PDF")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "fake.docx").write_bytes(b"this is not a zip file at all")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)


def test_bad_files_are_errors_with_reasons_not_crashes(tmp_path, store):
    folder = tmp_path / "bad"
    write_bad_files(folder)
    docs = {d.rel_path: d for d in discover_documents(str(folder), SETTINGS.extensions, SETTINGS.max_file_mb)}
    assert docs["empty.txt"].skipped == "empty file (0 bytes)"
    assert docs["image.png"].skipped.startswith("unsupported file type '.png'")
    errors = {
        name: parse(folder / name, store)
        for name in ("blank.md", "corrupt.pdf", "notapdf.pdf", "binary.txt", "fake.docx")
    }
    assert all(r.status == "error" for r in errors.values())
    assert "empty" in errors["blank.md"].error
    assert "PDF" in errors["corrupt.pdf"].error
    assert "missing %PDF- header" in errors["notapdf.pdf"].error
    assert "binary data" in errors["binary.txt"].error
    assert errors["fake.docx"].error == "not a valid .docx (zip) file: File is not a zip file"


def test_non_utf8_text_is_decoded(tmp_path, store):
    text = "Les index partiels réduisent la taille de l'index et accélèrent les écritures. " * 10
    path = tmp_path / "latin1.txt"
    path.write_bytes(("Index partiels\n\n" + text).encode("latin-1"))
    result = parse(path, store)
    assert result.status == "ok", result.error
    assert "réduisent" in " ".join(r["text"] for r in read_jsonl(result.ref))


def test_decode_text_rejects_nul_bytes():
    with pytest.raises(ParseError, match="binary"):
        decode_text(b"abc\x00def")


def test_discovery_skips_large_files_duplicates_and_outside_symlinks(tmp_path):
    docs_dir = tmp_path / "docs"
    (docs_dir / "a" / "b" / "c" / "d").mkdir(parents=True)
    shutil.copy(FIXTURES / "docs" / "wal-intro.html", docs_dir / "a" / "b" / "c" / "d" / "deep.html")
    shutil.copy(FIXTURES / "docs" / "wal-intro.html", docs_dir / "copy.html")
    (docs_dir / "big.txt").write_bytes(b"x" * 3 * 1024 * 1024)
    secret = tmp_path / "outside.txt"
    secret.write_text("outside the docs folder")
    os.symlink(secret, docs_dir / "link.txt")
    (docs_dir / ".hidden.txt").write_text("hidden")
    found = {d.rel_path: d for d in discover_documents(str(docs_dir), SETTINGS.extensions, max_file_mb=2)}
    assert set(found) == {"a/b/c/d/deep.html", "copy.html", "big.txt", "link.txt", ".hidden.txt"}
    assert found[".hidden.txt"].skipped == "hidden file (name starts with '.')"
    assert found["big.txt"].skipped.startswith("larger than the 2 MB limit") and found["big.txt"].sha256 is None
    assert found["link.txt"].skipped == "symlink pointing outside the docs folder (not followed)"
    duplicates = [d for d in found.values() if d.skipped and d.skipped.startswith("duplicate of")]
    assert len(duplicates) == 1
    assert found["a/b/c/d/deep.html"].sha256 == found["copy.html"].sha256


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DocsNotFound, match="docs folder not found"):
        discover_documents(str(tmp_path / "nope"), SETTINGS.extensions, 1)


def test_encrypted_pdf_is_reported(tmp_path, store):
    import pikepdf

    path = tmp_path / "locked.pdf"
    with pikepdf.open(FIXTURES / "docs" / "ddl-generated-columns.pdf") as pdf:
        pdf.save(path, encryption=pikepdf.Encryption(owner="owner-pw", user="user-pw"))
    result = parse(path, store)
    assert result.status == "error"
    assert result.error == "encrypted PDF (password protected)"


def test_truncated_pdf_is_reported(tmp_path, store):
    data = (FIXTURES / "docs" / "ddl-generated-columns.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 3])
    result = parse(path, store)
    assert result.status == "error" and result.error
