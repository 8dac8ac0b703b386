"""Bad input never stops a run: every file found is parsed or listed with the reason it was not."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES
from llm_stub import LLMStub

from domain_embed.tasks.core.objects import read_jsonl, sha256_file
from domain_embed.tasks.ingest import discover
from domain_embed.tasks.ingest.discover import discover_documents
from domain_embed.tasks.ingest.parse import parse_document
from domain_embed.tasks.settings import ParseSettings, PipelineConfig

SETTINGS = ParseSettings()
FRENCH = "Les index partiels réduisent la taille de l'index et accélèrent les écritures sur les tables très actives. "
GERMAN = "Die Größe des Puffers bestimmt, wie viele Seiten gleichzeitig im Speicher gehalten werden können. "
DEEP = "Checkpoints flush every dirty page to disk so that crash recovery can start from a known position. "


def parse(path: Path, store):
    return parse_document(str(path), sha256_file(path), path.suffix.lower(), SETTINGS, store)


def test_huge_sparse_file_is_skipped_without_being_opened(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    huge = docs / "huge.pdf"
    with open(huge, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB that take no disk space
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **kw: opened.append(str(file)) or real_open(file, *a, **kw))
    found = {d.rel_path: d for d in discover_documents(str(docs), SETTINGS.extensions, SETTINGS.max_file_mb)}
    assert found["huge.pdf"].skipped == "larger than the 50 MB limit (209.7 MB), not read"
    assert found["huge.pdf"].sha256 is None and found["huge.pdf"].size == 200 * 1024 * 1024
    assert str(huge) not in opened
    assert str(docs / "tutorial-agg.txt") in opened  # the spy sees the files that are hashed


@pytest.mark.parametrize("encoding, bom", [("utf-16-le", "\ufeff"), ("utf-16-be", "\ufeff"), ("utf-8", "\ufeff")])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path, store, encoding, bom):
    path = tmp_path / "bom.txt"
    path.write_bytes((bom + "Puffer\n\n" + GERMAN * 8).encode(encoding))
    result = parse(path, store)
    assert result.status == "ok", result.error
    text = " ".join(r["text"] for r in read_jsonl(result.ref))
    assert "Größe" in text and "\ufeff" not in text


def test_symlinked_folders_are_listed_and_never_followed(tmp_path):
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    (docs / "real").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs / "real")
    (outside / "secret.txt").write_text("not part of the documents")
    os.symlink(outside, docs / "elsewhere")
    os.symlink(docs / "real", docs / "alias")
    os.symlink(docs, docs / "real" / "loop")
    found = {d.rel_path: d.skipped for d in discover_documents(str(docs), SETTINGS.extensions, 1)}
    assert found == {
        "alias": "symlinked folder (not followed)",
        "elsewhere": "symlink pointing outside the docs folder (not followed)",
        "real/loop": "symlinked folder (not followed)",
        "real/tutorial-agg.txt": None,
    }


def test_unreadable_files_and_folders_are_reported_not_fatal(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "locked" / "inside.txt").write_text("never listed")
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs)
    (docs / "private.txt").write_text("mode 000 on a share the pipeline cannot read")
    real_hash, real_scandir = discover.sha256_file, os.scandir

    def hash_or_deny(path):
        if Path(path).name == "private.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    def scandir_or_deny(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(discover, "sha256_file", hash_or_deny)  # tests run as root: chmod would not stop a read
    monkeypatch.setattr(os, "scandir", scandir_or_deny)
    found = {d.rel_path: d.skipped for d in discover_documents(str(docs), SETTINGS.extensions, 1)}
    assert found == {
        "locked": "cannot read folder: Permission denied",
        "private.txt": "cannot read: Permission denied",
        "tutorial-agg.txt": None,
    }


def test_a_file_gone_since_discovery_is_a_parse_error(tmp_path, store):
    result = parse_document(str(tmp_path / "removed.md"), "0" * 64, ".md", SETTINGS, store)
    assert result.status == "error"
    assert result.error == "cannot read file: No such file or directory"


def docx_bomb(path: Path, inflated_mb: float) -> None:
    """A valid .docx whose word/document.xml inflates to about `inflated_mb` MB of one repeated paragraph."""
    with (
        zipfile.ZipFile(FIXTURES / "docs" / "manage-ag-templatedbs.docx") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for entry in source.infolist():
            data = source.read(entry.filename)
            if entry.filename == "word/document.xml":
                paragraph = b"<w:p><w:r><w:t>checkpoint</w:t></w:r></w:p>"
                body = paragraph * int(inflated_mb * 2**20 / len(paragraph))
                data = data.partition(b"<w:body>")[0] + b"<w:body>" + body + b"</w:body></w:document>"
            out.writestr(entry.filename, data)


def test_a_docx_that_inflates_past_the_cap_is_not_parsed(tmp_path, store, monkeypatch):
    from domain_embed.tasks.ingest import parse as parse_module

    path = tmp_path / "bomb.docx"
    docx_bomb(path, inflated_mb=2.2)
    monkeypatch.setattr(parse_module, "partition_file", lambda *a: pytest.fail("the parser opened a zip bomb"))
    result = parse_document(str(path), sha256_file(path), ".docx", ParseSettings(max_inflated_mb=2), store)
    assert path.stat().st_size < 50_000
    assert result.status == "error"
    assert (
        result.error
        == "inflates to 2 MB (> 2 MB cap, parse.max_inflated_mb); a zip bomb or a very large document, not parsed"
    )


@pytest.mark.parametrize(
    "name, data, reason",
    [
        (
            "truncated.docx",
            (FIXTURES / "docs" / "manage-ag-templatedbs.docx").read_bytes()[:4000],
            "not a valid .docx (zip) file: ",
        ),
        ("text.docx", b"this is not a zip file at all", "not a valid .docx (zip) file: File is not a zip file"),
        ("other.docx", None, "not a valid .docx file: the zip holds no word/document.xml"),
    ],
)
def test_a_docx_that_is_not_a_valid_zip_says_so(tmp_path, store, name, data, reason):
    path = tmp_path / name
    if data is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("xl/workbook.xml", "<workbook/>")
    else:
        path.write_bytes(data)
    result = parse(path, store)
    assert result.status == "error" and result.error.startswith(reason), result.error


def test_html_nested_deeper_than_lxml_reads_is_parsed_as_plain_text(tmp_path, store):
    path = tmp_path / "nested.html"
    depth = 5000  # libxml2 stops at 256 levels and keeps nothing below; 50,000 takes the same path
    path.write_text(
        "<html><body><h1>Checkpoints</h1><p>"
        + DEEP
        + "</p>"
        + "<div>" * depth
        + DEEP * 3
        + "</div>" * depth
        + "<p>After the nest: "
        + GERMAN
        + "</p></body></html>"
    )
    result = parse(path, store)
    assert result.status == "ok", result.error
    assert result.note == "HTML nested deeper than 255 levels: read as plain text (no headings)"
    text = "\n".join(r["text"] for r in read_jsonl(result.ref))
    assert text.count("Checkpoints flush") == 4 and "Größe des Puffers" in text and "<div>" not in text


def test_html_within_lxml_depth_keeps_its_structure(tmp_path, store):
    path = tmp_path / "shallow.html"
    path.write_text(
        "<html><body><h1>Checkpoints</h1>" + "<div>" * 100 + "<p>" + DEEP + "</p>" + "</div>" * 100 + "</body></html>"
    )
    result = parse(path, store)
    assert result.status == "ok" and result.note is None
    assert [r["section"] for r in read_jsonl(result.ref)][-1] == "Checkpoints"


def test_a_parsed_document_that_gives_no_chunk_is_listed_with_the_reason(store):
    from test_run_report import report

    from domain_embed.tasks.ingest import Parsed, account_for_chunks
    from domain_embed.tasks.ingest.chunk import ChunkedDoc
    from domain_embed.tasks.ingest.discover import DocFile
    from domain_embed.tasks.publishing.run_report import render_markdown

    docs = [DocFile(rel_path=name, path=name, ext=".txt", size=9, sha256=name * 64) for name in ("a", "b")]
    rows = [
        {"file": d.rel_path, "type": "txt", "bytes": 9, "elements": 1, "chars": 9, "status": "ok", "note": ""}
        for d in docs
    ]
    ref = store.put_jsonl("chunks", [])
    chunked = [
        ChunkedDoc(sha256="a" * 64, ref=ref, chunks=3, dropped={}, token_lengths=[30, 30, 30]),
        ChunkedDoc(
            sha256="b" * 64, ref=ref, chunks=0, dropped={"no words (only symbols or emoji)": 2}, token_lengths=[]
        ),
    ]
    parsed = account_for_chunks(Parsed(by_sha={}, ok_docs=docs, rows=rows, cached=0), chunked)
    assert [r["status"] for r in parsed.rows] == ["ok", "no chunk: no words (only symbols or emoji): 2"]
    markdown = render_markdown({**report(True, 1, 0, False), "files": parsed.rows})
    assert (
        "## Files not used" in markdown and "| b | txt | no chunk: no words (only symbols or emoji): 2 |" in markdown
    )


# --- the whole flow on a folder of every kind of bad file -------------------------------------------


def bad_docs_folder(root: Path) -> dict[str, str]:
    """Two good documents and one of every kind of bad file; returns the expected report status per file."""
    docs = root / "docs"
    docs.mkdir(parents=True)
    for name in ("tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, docs)
    pdf = (FIXTURES / "docs" / "ddl-generated-columns.pdf").read_bytes()
    (docs / "empty.txt").write_bytes(b"")
    (docs / "truncated.pdf").write_bytes(pdf[: len(pdf) // 3])
    import pikepdf

    with pikepdf.open(FIXTURES / "docs" / "ddl-generated-columns.pdf") as source:
        source.save(docs / "encrypted.pdf", encryption=pikepdf.Encryption(owner="owner-pw", user="user-pw"))
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (docs / "big.md").write_bytes(b"# Big\n\n" + b"a big file of words " * 55_000)  # 1.05 MB, limit 0.5 MB
    (docs / "latin1.txt").write_bytes(("Index partiels\n\n" + FRENCH * 6).encode("latin-1"))
    (docs / "utf16.txt").write_bytes(("Puffer\n\n" + GERMAN * 6).encode("utf-16"))
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "outside.txt").write_text("a file outside the docs folder " * 20)
    os.symlink(root / "outside.txt", docs / "link.txt")
    (root / "outside-folder").mkdir()
    os.symlink(root / "outside-folder", docs / "linked-folder")
    deep = docs.joinpath(*(f"level{i:02d}" for i in range(30)))
    deep.mkdir(parents=True)
    (deep / "deep.md").write_text("# Checkpoints\n\n" + DEEP * 6)
    (docs / "archive").mkdir()
    shutil.copy(FIXTURES / "docs" / "tutorial-agg.txt", docs / "archive" / "tutorial-agg.txt")
    deep_rel = deep.relative_to(docs).as_posix() + "/deep.md"
    with open(os.path.join(os.fsencode(docs), b"bad-\xff\xfe-name.txt"), "wb") as handle:  # not UTF-8: legal on Linux
        handle.write(
            (
                "Vacuum\n\n"
                + "Vacuum reclaims the space of dead row versions and refreshes the planner statistics. " * 6
            ).encode()
        )
    (docs / "-rf\nwal|intro.html").write_bytes((FIXTURES / "docs" / "wal-intro.html").read_bytes())
    (docs / ".hidden.md").write_text("# hidden\n\n" + DEEP)
    (docs / "x.md").mkdir()
    (docs / "x.md" / "inside.txt").write_text("Puffer\n\n" + GERMAN * 5)
    os.mkfifo(docs / "pipe.txt")
    return {
        "bad-\\xff\\xfe-name.txt": "ok",
        "-rf\\nwal|intro.html": "ok",
        ".hidden.md": "skipped: hidden file (name starts with '.')",
        "x.md/inside.txt": "ok",
        "pipe.txt": "skipped: not a regular file",
        "tutorial-agg.txt": "ok",
        "tutorial-inheritance.md": "ok",
        "latin1.txt": "ok",
        "utf16.txt": "ok",
        deep_rel: "ok",
        "archive/tutorial-agg.txt": "skipped: duplicate of tutorial-agg.txt",
        "empty.txt": "skipped: empty file (0 bytes)",
        "big.md": "skipped: larger than the 0.5 MB limit (1.1 MB), not read",
        "photo.png": "skipped: unsupported file type '.png'",
        "link.txt": "skipped: symlink pointing outside the docs folder (not followed)",
        "linked-folder": "skipped: symlink pointing outside the docs folder (not followed)",
        "encrypted.pdf": "error: encrypted PDF (password protected)",
        "truncated.pdf": "error: corrupt or truncated PDF",
        "binary.txt": "error: binary data in a text file",
    }


def test_flow_accounts_for_every_bad_file_and_completes(tmp_path, prefect_harness, monkeypatch):
    from domain_embed.flows.pipeline import build_embedder

    expected = bad_docs_folder(tmp_path)
    monkeypatch.setenv("STUB_LLM_KEY", "sk-stub-secret")
    with LLMStub() as stub:
        config = PipelineConfig.model_validate(
            {
                "docs_dir": str(tmp_path / "docs"),
                "out_dir": str(tmp_path / "out"),
                "store_url": str(tmp_path / "store"),
                "parse": {"max_file_mb": 0.5},
                "llm": {
                    "model": "openai/stub-model",
                    "api_base": stub.api_base,
                    "api_key_env": "STUB_LLM_KEY",
                    "questions_per_chunk": 1,
                },
                "chunk": {"chunk_tokens": 96, "overlap_tokens": 8, "min_tokens": 16},
                "filter": {"roundtrip_top_k": 0},
                "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "teacher": None},
                "split": {"eval_fraction": 0.4},
            }
        )
        build_embedder(config)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {f["file"]: f["status"] for f in report["files"]}
    assert set(status) == set(expected)
    for name, want in expected.items():
        assert status[name].startswith(want), (name, status[name])
    assert report["documents"] == {**report["documents"], "found": len(expected), "parsed": 8}
    parsed = {f["file"]: f for f in report["files"] if f["status"] == "ok"}
    assert all(f["elements"] > 0 and f["chars"] > 200 for f in parsed.values())
    listed = "\n".join(line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if "|" in line)
    assert all(name in listed for name, want in expected.items() if want != "ok")
    chunks = [
        json.loads(line)
        for line in (tmp_path / "out" / "index" / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert {"bad-\\xff\\xfe-name.txt", "-rf\\nwal|intro.html"} <= {c["document"] for c in chunks}


def test_a_folder_where_no_file_parses_fails_with_one_line(tmp_path, prefect_harness, monkeypatch, capsys):
    from domain_embed.flows.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n%broken")
    (docs / "notes.png").write_bytes(b"\x89PNG")
    for name in ("DOMAIN_EMBED_STORE", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):  # the CLI points both at its store
        monkeypatch.setenv(name, os.environ.get(name, ""))
    code = main(["run", str(docs), "--out", str(tmp_path / "out"), "--store", str(tmp_path / "store")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("domain-embed: error:")]
    assert code == 2
    assert errors == [f"domain-embed: error: none of the 3 files in {docs} could be parsed: see parse-report"]
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_folder_where_no_document_gives_a_chunk_fails_with_one_line(tmp_path, prefect_harness, monkeypatch, capsys):
    from domain_embed.flows.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "emoji.txt").write_text("😀🎉🚀 " * 200)
    for name in ("DOMAIN_EMBED_STORE", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):  # the CLI points both at its store
        monkeypatch.setenv(name, os.environ.get(name, ""))
    code = main(["run", str(docs), "--out", str(tmp_path / "out"), "--store", str(tmp_path / "store")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("domain-embed: error:")]
    assert code == 2
    assert errors == ["domain-embed: error: none of the 1 parsed documents gave a chunk: see chunk-report"]
