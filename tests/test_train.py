"""Real training steps on CPU with the packaged MiniLM: loss, Matryoshka dims, resume from checkpoint."""

from __future__ import annotations

import pytest
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from flows.config import TrainSettings
from tasks.train import matryoshka_dims, train_model

TOPICS = ["index", "vacuum", "wal", "replication", "planner", "trigger", "sequence", "schema"]


def dataset(store, n=32):
    tuples = [
        {"anchor": f"how does {TOPICS[i % 8]} number {i} work",
         "positive": f"The {TOPICS[i % 8]} feature, item {i}, works by keeping state about {TOPICS[i % 8]} data.",
         "negative_1": f"The {TOPICS[(i + 3) % 8]} feature is unrelated to item {i}."}
        for i in range(n)
    ]  # fmt: skip
    pairs = [{"anchor": f"what is {t}", "positive": f"{t} is a PostgreSQL concept."} for t in TOPICS]
    return store.put_jsonl("tuples", tuples), store.put_jsonl("pairs", pairs)


def test_matryoshka_dims_follow_the_model_dimension():
    assert matryoshka_dims(384, None) == [384, 256, 128, 64]
    assert matryoshka_dims(768, None) == [768, 512, 256, 128, 64]
    assert matryoshka_dims(384, [64, 384, 128]) == [384, 128, 64]
    with pytest.raises(ValueError, match="dimension 384"):
        matryoshka_dims(384, [512])


def test_training_writes_a_loadable_model_with_a_loss_curve(store, base_model_dir):
    tuples, pairs = dataset(store)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=64)
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-train")
    assert result.examples == 40 and result.steps >= 5
    assert result.dims == [384, 256, 128, 64]
    assert len(result.loss_curve) >= 2 and all(loss > 0 for _, loss in result.loss_curve)
    model = SentenceTransformer(result.model_dir, device="cpu")
    assert model.encode(["a query"]).shape == (1, 384)
    assert result.model_sha and result.device == "cpu"


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_a_crashed_run_resumes_from_its_last_checkpoint(store, base_model_dir):
    tuples, pairs = dataset(store, n=56)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=48)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_model(tuples, pairs, base_model_dir, settings, store, "unit-resume", callbacks=[CrashAt(5)])
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-resume")
    assert result.resumed_from and result.resumed_from.endswith("checkpoint-4")
    assert result.steps == 8
