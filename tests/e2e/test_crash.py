"""kill -9 in the middle of real work, then run again: nothing paid twice, nothing half-written, same result."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT
from llm_stub import LLMStub
from transformers import TrainerCallback

import domain_embed.tasks.mining.mine as mine
from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.core.objects import exists, read_bytes, sha256_bytes
from domain_embed.tasks.core.store import RunStore, atomic_write
from domain_embed.tasks.llm.endpoint import LLMEndpoint
from domain_embed.tasks.questions.generate import cache_key, generate_pairs
from domain_embed.tasks.settings import FilterSettings, LLMSettings, MineSettings, TrainSettings
from domain_embed.tasks.training.checkpoints import scratch_dir

PRELUDE = "import json, sys\nfrom domain_embed.flows.env import set_offline_defaults\nset_offline_defaults()\nargs = json.load(sys.stdin)\n"
VOCAB = (
    "replica vacuum planner index heap tuple toast sequence trigger schema role grant lock latch buffer page wal "
    "checkpoint archive standby slot publication subscription partition tablespace cluster analyze statistics "
    "histogram cost join hash merge nested loop bitmap scan gin gist brin btree collation encoding cursor portal"
).split()


def start(code: str, **args) -> subprocess.Popen:
    """Run `code` in a fresh interpreter (its `args` dict as JSON on stdin), in its own session so a kill reaches only it."""
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty worker never blocks on a full pipe
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.stdin.write(json.dumps(args).encode())
    proc.stdin.close()
    proc.log = log
    return proc


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL the process as soon as `ready()` holds; fail if it ended (or never got there) first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=30)
            proc.log.seek(0)
            output = proc.log.read().decode(errors="replace")[-3000:]
            pytest.fail(f"the worker ended (rc {proc.returncode}) before the point to kill it:\n{output}")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.log.close()
    assert proc.returncode == -signal.SIGKILL


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(VOCAB, n))


# --- generation -----------------------------------------------------------------------------------

GENERATE = """
from domain_embed.tasks.questions.generate import generate_pairs
from domain_embed.tasks.training.checkpoints import scratch_dir
from domain_embed.tasks.llm.endpoint import LLMEndpoint
from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.settings import FilterSettings, LLMSettings
from domain_embed.tasks.core.store import RunStore
endpoint = LLMEndpoint(model="openai/stub-model", api_base=args["api_base"])
generate_pairs(args["chunks"], LLMSettings(**args["llm"]), FilterSettings(**args["filters"]), endpoint, args["model"], RunStore(args["store"]))
"""


@pytest.mark.slow
def test_kill_during_generation_pays_only_for_unanswered_chunks(tmp_path, base_model_dir):
    rng = random.Random(5)
    chunks = [
        {
            "chunk_id": f"{i:016x}",
            "doc_id": f"{i // 5:016x}",
            "section": "",
            "text": f"Topic {i}: the {sentence(rng, 6)} setting controls how {sentence(rng, 6)} behave.",
            "n_tokens": 20,
        }
        for i in range(30)
    ]
    llm = {"model": "stub-logical", "max_concurrency": 2, "backoff_base_s": 0.02, "timeout_s": 10}
    filters = {"roundtrip_top_k": 0}
    settings, store = LLMSettings(**llm), RunStore(str(tmp_path / "killed"))
    with LLMStub(latency_s=0.1) as stub:
        endpoint = LLMEndpoint(model="openai/stub-model", api_base=stub.api_base)
        worker = start(
            GENERATE,
            api_base=stub.api_base,
            chunks=chunks,
            llm=llm,
            filters=filters,
            model=base_model_dir,
            store=store.url,
        )
        kill_when(worker, lambda: stub.count() >= 15)
        first = stub.chunks_seen
        cached = {p.stem for p in Path(store.root, "qa-cache").rglob("*.json")}
        assert 10 <= len(cached) < 30

        stub.reset()
        resumed = generate_pairs(chunks, settings, FilterSettings(**filters), endpoint, base_model_dir, store)
        again = stub.chunks_seen
        stub.reset()
        whole = generate_pairs(
            chunks, settings, FilterSettings(**filters), endpoint, base_model_dir, RunStore(str(tmp_path / "whole"))
        )
        assert stub.count() == 30

    answered = {c["text"] for c in chunks if cache_key(c["text"], settings) in cached}
    assert set(again) == {c["text"] for c in chunks} - answered and set(again.values()) == {1}
    assert not answered & set(again)  # no answer that reached the cache was paid for twice
    assert len(set(first) & set(again)) <= settings.max_concurrency  # only requests in flight at the kill
    assert resumed.stats.llm_calls == 30 - len(cached) and resumed.stats.cache_hits == len(cached)
    assert resumed.stats.chunks_answered == 30
    assert resumed.pairs.sha256 == whole.pairs.sha256 and resumed.pairs.count > 30


# --- mining ---------------------------------------------------------------------------------------

MINE = """
from domain_embed.tasks.mining.mine import mine_hard_negatives
from domain_embed.tasks.settings import MineSettings
from domain_embed.tasks.core.store import RunStore
mine_hard_negatives(args["pairs"], args["chunks"], args["model"], MineSettings(), RunStore(args["store"]))
"""


@pytest.mark.slow
def test_kill_during_mining_reuses_the_corpus_embeddings(tmp_path, base_model_dir, monkeypatch):
    rng = random.Random(7)
    chunks = [
        {
            "chunk_id": f"{i:016x}",
            "doc_id": f"{i // 10:016x}",
            "section": "",
            "text": sentence(rng, 12),
            "n_tokens": 12,
        }
        for i in range(100)
    ]
    pairs = [
        {"query": sentence(rng, 4), "chunk_id": chunks[i % 100]["chunk_id"], "doc_id": chunks[i % 100]["doc_id"]}
        for i in range(400)
    ]
    store = RunStore(str(tmp_path / "killed"))
    worker = start(MINE, pairs=pairs, chunks=chunks, model=base_model_dir, store=store.url)
    pointers = Path(store.root, "corpus-embeddings")
    kill_when(worker, lambda: any(pointers.rglob("*.json")))
    assert not Path(store.root, "mined-tuples").exists()  # killed before the end

    embedded = []
    real_embed = mine.embed_texts
    monkeypatch.setattr(
        mine, "embed_texts", lambda d, texts, **kw: embedded.append(len(texts)) or real_embed(d, texts, **kw)
    )
    resumed = mine.mine_hard_negatives(pairs, chunks, base_model_dir, MineSettings(), store)
    assert embedded == [400]  # only the queries: the corpus embeddings written before the kill were reused
    whole = mine.mine_hard_negatives(pairs, chunks, base_model_dir, MineSettings(), RunStore(str(tmp_path / "whole")))
    assert resumed.corpus_embeddings.sha256 == whole.corpus_embeddings.sha256
    assert resumed.tuples.sha256 == whole.tuples.sha256 and resumed.tuples.count > 100
    assert resumed.pairs_without_negatives.sha256 == whole.pairs_without_negatives.sha256


# --- training -------------------------------------------------------------------------------------

TRAIN = """
from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.core.objects import Ref
from domain_embed.tasks.core.store import RunStore
from domain_embed.tasks.training.fit import train_model
train_model(Ref(**args["tuples"]), Ref(**args["pairs"]), args["model"], TrainSettings(**args["settings"]), RunStore(args["store"]), "crash")
"""
TRAIN_SETTINGS = TrainSettings(
    epochs=1, batch_size=4, max_seq_length=24, matryoshka_dims=[384, 64], teacher=None
)  # 8 steps, a checkpoint every 2


def training_data(store: RunStore):
    rng = random.Random(11)
    tuples = [
        {
            "anchor": f"what does {w} do",
            "positive": f"The {w} feature: {sentence(rng, 6)}.",
            "negative_1": f"Unrelated to {w}: {sentence(rng, 6)}.",
        }
        for w in VOCAB[:32]
    ]
    return store.put_jsonl("tuples", tuples), store.put_jsonl("pairs", [])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, base_model_dir):
    """The same training, never interrupted."""
    from domain_embed.tasks.training.fit import train_model

    store = RunStore(str(tmp_path_factory.mktemp("whole")))
    result = train_model(*training_data(store), base_model_dir, TRAIN_SETTINGS, store, "crash")
    assert result.resumed_from is None and result.steps == 8
    return result


@pytest.mark.slow
@pytest.mark.extended  # two trainings; resuming is also tested in tests/unit/training/test_train.py
def test_kill_during_training_resumes_from_the_last_checkpoint(tmp_path, base_model_dir, uninterrupted):
    from domain_embed.tasks.training.fit import train_model

    store = RunStore(str(tmp_path / "killed"))
    tuples, pairs = training_data(store)
    worker = start(
        TRAIN,
        tuples=tuples.model_dump(),
        pairs=pairs.model_dump(),
        model=base_model_dir,
        settings=TRAIN_SETTINGS.model_dump(),
        store=store.url,
    )
    work_dir = scratch_dir(store, "crash")
    kill_when(worker, lambda: any(work_dir.glob("checkpoint-*/trainer_state.json")))
    assert not Path(store.root, "models").exists()  # killed before the end

    resumed = train_model(tuples, pairs, base_model_dir, TRAIN_SETTINGS, store, "crash")
    assert resumed.resumed_from and Path(resumed.resumed_from).name.startswith("checkpoint-")
    assert resumed.steps == uninterrupted.steps
    assert not work_dir.exists() and Path(local_model(resumed.model)).is_dir()


class CrashAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise RuntimeError("killed")


@pytest.mark.slow
@pytest.mark.extended  # two trainings: `make test-all`
def test_a_half_written_checkpoint_is_not_resumed_from(tmp_path, base_model_dir, uninterrupted):
    from domain_embed.tasks.training.fit import train_model

    store = RunStore(str(tmp_path / "killed"))
    tuples, pairs = training_data(store)
    with pytest.raises(RuntimeError, match="killed"):
        train_model(
            tuples, pairs, base_model_dir, TRAIN_SETTINGS, store, "crash", callbacks=[CrashAfterFirstCheckpoint()]
        )
    work_dir = scratch_dir(store, "crash")
    (complete,) = work_dir.glob("checkpoint-*")
    half = (
        work_dir / "checkpoint-4"
    )  # what kill -9 during the next save leaves: weights half written, no trainer_state.json
    half.mkdir()
    weights = (complete / "model.safetensors").read_bytes()
    (half / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    resumed = train_model(tuples, pairs, base_model_dir, TRAIN_SETTINGS, store, "crash")
    assert resumed.resumed_from == str(complete) and resumed.steps == uninterrupted.steps


# --- atomic writes --------------------------------------------------------------------------------

WRITE = """
from domain_embed.tasks.core.store import atomic_write
atomic_write(args["target"], bytes(range(256)) * (args["size"] // 256))
"""


@pytest.mark.slow
def test_kill_during_a_write_leaves_no_half_file(tmp_path):
    size = 256 * 1024 * 1024
    payload_sha = sha256_bytes(bytes(range(256)) * (size // 256))
    store = RunStore(str(tmp_path / "store"))
    target = store.uri("embeddings", f"{payload_sha}.npy")
    folder = Path(target).parent
    worker = start(WRITE, target=target, size=size)

    def writing() -> bool:
        return any(0 < p.stat().st_size < size for p in folder.glob(".tmp-*")) if folder.exists() else False

    kill_when(worker, writing)
    leftovers = list(folder.iterdir())
    assert not exists(target) or sha256_bytes(read_bytes(target)) == payload_sha
    assert leftovers and all(
        p.name.startswith(".tmp-") for p in leftovers
    )  # hidden, no data suffix: never read as data
    assert not list(Path(store.root).rglob("*.npy"))

    ref = store.put_bytes("embeddings", bytes(range(256)) * (size // 256), ".npy")  # the next run writes it whole
    assert ref.uri == target and sha256_bytes(read_bytes(target)) == payload_sha
    shutil.rmtree(store.root)  # half a gigabyte: not kept with pytest's last temporary folders


def test_atomic_write_flushes_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_size)) or real_fsync(fd))
    monkeypatch.setattr(os, "rename", lambda a, b: events.append(("rename", Path(b).name)) or real_replace(a, b))
    atomic_write(str(tmp_path / "data.json"), b'{"questions": ["q"]}')
    assert events == [("fsync", 20), ("rename", "data.json")]
    assert (tmp_path / "data.json").read_bytes() == b'{"questions": ["q"]}'
