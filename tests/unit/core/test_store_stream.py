"""Large objects go to the run store as streams: the corpus rows and its embeddings are never all in memory at once.

Checked on a local folder and on an S3-protocol server (moto on 127.0.0.1)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import S3_ENV

from domain_embed.tasks.core import store as store_module
from domain_embed.tasks.core.objects import read_bytes, read_jsonl, read_npy
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.embedding import models as embed
from domain_embed.tasks.embedding.corpus import corpus_embeddings
from domain_embed.tasks.embedding.models import embed_texts

ROWS = [{"chunk_id": f"c{i}", "text": f"passage {i} about the apt cache and its lists"} for i in range(600)]


def names(store: RunStore, kind: str) -> list[str]:
    """File names under one kind of the store (hidden temporaries included)."""
    folder = f"{store.root}/{kind}"
    return (
        sorted(path.rsplit("/", 1)[-1] for path in store.fs.ls(folder, detail=False))
        if store.fs.exists(folder)
        else []
    )


def test_a_stream_past_the_spool_is_the_same_object_as_one_written_whole(shared_store, monkeypatch):
    whole = shared_store.put_jsonl("rows", ROWS)
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)
    streamed = shared_store.put_jsonl("rows", iter(ROWS))
    assert streamed == whole and whole.count == len(ROWS)
    assert read_jsonl(streamed) == ROWS
    other = shared_store.put_jsonl("rows", iter(ROWS[1:]))
    assert other.count == len(ROWS) - 1 and other.sha256 != whole.sha256
    assert names(shared_store, "rows") == sorted(
        [f"{whole.sha256}.jsonl", f"{other.sha256}.jsonl"]
    )  # no temporary left


def test_rows_reach_a_folder_store_while_they_are_still_being_produced(store, monkeypatch):
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)
    written_meanwhile = []

    def rows():
        for i, row in enumerate(ROWS):
            if i == 500:  # about 30 kB produced, past the spool and the file buffer
                written_meanwhile.append(
                    sum((store.fs.size(f"{store.root}/rows/{n}") for n in names(store, "rows")), 0)
                )
            yield row

    ref = store.put_jsonl("rows", rows())
    assert written_meanwhile[0] > 10_000
    assert ref.count == len(ROWS)


def test_a_stream_that_fails_leaves_nothing_in_the_store(shared_store, monkeypatch):
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)

    def rows():
        yield from ROWS[:300]
        raise RuntimeError("the source went away")

    with pytest.raises(RuntimeError, match="went away"):
        shared_store.put_jsonl("rows", rows())
    assert names(shared_store, "rows") == []


def failing_rows(n: int, width: int):
    """n rows of `width` characters, then the error of a source that went away."""
    for i in range(n):
        yield {"i": i, "text": "x" * width}
    raise RuntimeError("the source went away")


def cannot_delete(*args, **kwargs):
    """A store that refuses to delete."""
    raise OSError("permission denied")


def test_a_clean_up_that_fails_is_logged_and_the_streams_own_error_raised(store, monkeypatch, caplog):
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)
    monkeypatch.setattr(store.fs, "rm", cannot_delete)
    with pytest.raises(RuntimeError, match="went away"):
        store.put_jsonl("rows", failing_rows(300, 40))
    assert "could not clean up the temporary" in caplog.text and "permission denied" in caplog.text


def test_a_failed_upload_to_s3_is_aborted_and_never_becomes_an_object(s3_endpoint, monkeypatch):
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    store = RunStore("s3://aborted-uploads/store")
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)
    monkeypatch.setattr(store.fs, "default_block_size", 5 << 20)  # S3's smallest part: 7 MB of rows upload one part
    monkeypatch.setattr(store.fs, "rm", cannot_delete)  # nothing was stored, so nothing needs deleting
    with pytest.raises(RuntimeError, match="went away"):
        store.put_jsonl("rows", failing_rows(60_000, 100))
    assert names(store, "rows") == []
    assert store.fs.call_s3("list_multipart_uploads", Bucket="aborted-uploads").get("Uploads", []) == []


def test_a_row_holding_a_line_separator_reads_back_whole(store):
    rows = [{"text": "first line\u2028second line\u2029third\x85fourth"}, {"text": "next row"}]
    assert read_jsonl(store.put_jsonl("rows", rows)) == rows


def test_streamed_arrays_are_the_bytes_np_save_writes(shared_store, monkeypatch):
    array = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 100)
    ref = shared_store.put_npy_stream("vectors", 50, [array[:20], array[20:21], array[21:]], empty_dim=3)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    assert read_bytes(ref.uri) == buffer.getvalue() and ref.count == 50
    with pytest.raises(ValueError, match="49 rows streamed where 50 were announced"):
        shared_store.put_npy_stream("vectors", 50, [array[:49]], empty_dim=8)
    with pytest.raises(ValueError, match="more than the 50 rows announced"):
        shared_store.put_npy_stream("vectors", 50, [array[:30], array[:30]], empty_dim=8)
    with pytest.raises(ValueError, match=r"shape \(20, 4\) in a stream of 8-column rows"):
        shared_store.put_npy_stream("vectors", 50, [array[:30], array[30:, :4]], empty_dim=8)
    empty = shared_store.put_npy_stream("vectors", 0, [], empty_dim=8)
    assert np.load(io.BytesIO(read_bytes(empty.uri))).shape == (0, 8)
    assert names(shared_store, "vectors") == sorted([f"{ref.sha256}.npy", f"{empty.sha256}.npy"])


def test_corpus_embeddings_computed_slice_by_slice_equal_the_whole_corpus_at_once(store, base_model_dir, monkeypatch):
    rows = [
        {"chunk_id": f"c{i}", "text": text}
        for i, text in enumerate(
            [
                "apt-get update refreshes the package lists",
                "dpkg -i installs a local .deb file",
                "short",
                "the sources.list file names the archive mirrors and suites " * 4,
                "aptitude resolves dependencies interactively",
                "debconf asks configuration questions during installation",
                "reportbug files a bug in the Debian BTS",
            ]
        )
    ]
    monkeypatch.setattr(embed, "EMBED_SLICE", 3)
    monkeypatch.setattr(store_module, "SPOOL_BYTES", 1000)
    ref = corpus_embeddings(store.put_jsonl("corpus", rows), base_model_dir, store, batch_size=2)
    vectors = read_npy(ref)
    assert vectors.shape == (7, 384) and ref.count == 7
    np.testing.assert_allclose(vectors, embed_texts(base_model_dir, [r["text"] for r in rows]), atol=1e-5)
    assert (
        corpus_embeddings(store.put_jsonl("corpus", rows), base_model_dir, store) == ref
    )  # cached by corpus and model
