"""`domain-embed search`: the published index searched by the tuned model, the base model beside it, at any dim."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from domain_embed.flows.cli import main
from domain_embed.tasks.embedding.models import load_model
from domain_embed.tasks.evaluation.retrieval import truncate
from domain_embed.tasks.publishing.search import search_run


def test_search_prints_tuned_and_base_hits_with_files(tiny_run, capsys):
    assert main(["search", "How many keys does a piano have?", "--run", str(tiny_run), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert 'Query: "How many keys does a piano have?"' in out and "top 3 of 28 passages, dim 384" in out
    header = next(line for line in out.splitlines() if "tuned:" in line)
    assert header.index("tuned:") < header.index("base: all-MiniLM-L6-v2")
    first = next(line for line in out.splitlines() if line.startswith(" 1."))
    assert re.fullmatch(r" 1\.  0\.\d{4}  piano\.md +0\.\d{4}  piano\.md", first)  # tuned left, base right
    assert "A piano has 88 keys" in out
    assert sum(line.startswith((" 1.", " 2.", " 3.")) for line in out.splitlines()) == 3
    assert not any(line.startswith(" 4.") for line in out.splitlines())


def test_dim_truncates_and_renormalises_both_sides(tiny_run):
    full = search_run(str(tiny_run), "What is the largest animal ever?", k=2)
    small = search_run(str(tiny_run), "What is the largest animal ever?", k=2, dim=64)
    assert (full.dim, small.dim, small.base_model) == (384, 64, "all-MiniLM-L6-v2")
    assert small.tuned[0].file == "whale.md" and small.base[0].file == "whale.md"
    model = load_model(str((tiny_run / "model").resolve()))
    query = model.encode_query(["What is the largest animal ever?"], normalize_embeddings=True)
    passage = model.encode([small.tuned[0].text], normalize_embeddings=True)
    expected = float((truncate(query, 64) * truncate(passage, 64)).sum())
    assert small.tuned[0].score == pytest.approx(expected, abs=1e-4)
    assert small.tuned[0].score != pytest.approx(full.tuned[0].score, abs=1e-3)
    assert [h.rank for h in small.base] == [1, 2] and small.base[0].section == "Mammals"


def test_base_index_is_built_once_beside_the_index(tiny_run):
    search_run(str(tiny_run), "bread", k=1)
    (cached,) = (tiny_run / "index").glob("base-*.faiss")
    stamp = cached.stat().st_mtime_ns
    assert search_run(str(tiny_run), "coffee beans", k=1).base[0].file == "coffee.md"
    assert cached.stat().st_mtime_ns == stamp


def test_bad_run_folders_and_options_fail_with_one_line(tiny_run, tmp_path, capsys):
    def error(*argv) -> str:
        assert main(["search", "bread", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("domain-embed: error: ") and "\n" not in err
        return err

    assert "run folder not found" in error("--run", tmp_path / "missing")
    run = tmp_path / "run"
    run.mkdir()
    assert "report.json not found" in error("--run", run)
    (run / "report.json").write_text(json.dumps({"base_model": "all-MiniLM-L6-v2"}))
    assert "has no published SentenceTransformer model" in error("--run", run)
    shutil.copytree(tiny_run / "model", run / "model")
    assert "has no published index (index.faiss and chunks.jsonl)" in error("--run", run)
    assert "--dim 512 is not available: the index has 384 dimensions" in error("--run", tiny_run, "--dim", "512")
    assert "--k must be at least 1" in error("--run", tiny_run, "--k", "0")
    assert "unknown model 'no-such-model'" in error("--run", tiny_run, "--base-model", "no-such-model")
