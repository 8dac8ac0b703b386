"""Real training steps on CPU with the packaged MiniLM: loss, Matryoshka dims, resume, length-grouped batches."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
from transformers import TrainerCallback

from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.embedding.models import bf16_native
from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.training.batching import LengthGroupedBatchSampler, TokenLengths, padding_fraction
from domain_embed.tasks.training.checkpoints import scratch_dir, stored_checkpoints
from domain_embed.tasks.training.fit import read_train_result, save_train_result, train_model, training_rows
from domain_embed.tasks.training.loading import load_for_training
from domain_embed.tasks.training.trainer import build_loss, build_trainer, matryoshka_dims

TOPICS = ["index", "vacuum", "wal", "replication", "planner", "trigger", "sequence", "schema"]


def dataset(store, n=32):
    tuples = [
        {
            "anchor": f"how does {TOPICS[i % 8]} number {i} work",
            "positive": f"The {TOPICS[i % 8]} feature, item {i}, works by keeping state about {TOPICS[i % 8]} data.",
            "negative_1": f"The {TOPICS[(i + 3) % 8]} feature is unrelated to item {i}.",
        }
        for i in range(n)
    ]
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
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=64, teacher=None)
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-train")
    assert result.examples == 40 and result.steps >= 5
    assert result.dims == [384, 256, 128, 64]
    assert len(result.loss_curve) >= 2 and all(loss > 0 for _, loss in result.loss_curve)
    model = SentenceTransformer(local_model(result.model), device="cpu")
    assert model.encode(["a query"]).shape == (1, 384)
    assert result.model_sha and result.device == "cpu"
    assert result.tokens_per_second > 0 and 0 <= result.padding_fraction < 1
    save_train_result(store, "unit-train", result)
    assert read_train_result(store, "unit-train") == result


def test_training_logs_progress_lines_and_prints_nothing(store, base_model_dir, caplog, capsys):
    import logging

    tuples, pairs = dataset(store)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=64, teacher=None, evaluations=0)
    with caplog.at_level(logging.INFO, logger="domain_embed.progress"):
        result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-progress")
    lines = [r.getMessage() for r in caplog.records if r.name == "domain_embed.progress"]
    assert (
        lines and lines[-1].startswith(f"train: {result.steps}/{result.steps} steps (100%)") and "loss " in lines[-1]
    )
    printed = capsys.readouterr().out
    assert "{'loss'" not in printed and "LOAD_GLOBAL" not in printed


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_a_crashed_run_resumes_from_its_last_checkpoint(store, base_model_dir):
    tuples, pairs = dataset(store, n=56)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=48, teacher=None)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_model(tuples, pairs, base_model_dir, settings, store, "unit-resume", callbacks=[CrashAt(5)])
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-resume")
    assert result.resumed_from and result.resumed_from.endswith("checkpoint-4")
    assert result.steps == 8


def test_a_retry_on_another_machine_resumes_from_the_checkpoint_in_the_store(
    store, base_model_dir, tmp_path, monkeypatch
):
    tuples, pairs = dataset(store, n=56)
    settings = TrainSettings(epochs=1, batch_size=8, max_seq_length=48, teacher=None)
    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "first-machine"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_model(tuples, pairs, base_model_dir, settings, store, "unit-move", callbacks=[CrashAt(5)])
    local = sorted(p.name for p in scratch_dir(store, "unit-move").glob("checkpoint-*"))
    assert (
        stored_checkpoints(store, "unit-move") == local == ["checkpoint-2", "checkpoint-4"]
    )  # mirrored, rotation included
    shutil.rmtree(tmp_path / "first-machine")  # the first machine is gone

    monkeypatch.setenv("DOMAIN_EMBED_LOCAL_CACHE", str(tmp_path / "second-machine"))
    result = train_model(tuples, pairs, base_model_dir, settings, store, "unit-move")
    assert result.resumed_from == str(scratch_dir(store, "unit-move") / "checkpoint-4")
    assert result.resumed_from.startswith(str(tmp_path / "second-machine")) and result.steps == 8
    assert stored_checkpoints(store, "unit-move") == [] and not scratch_dir(store, "unit-move").exists()
    assert SentenceTransformer(local_model(result.model), device="cpu").encode(["a query"]).shape == (1, 384)


WORDS = "table index page tuple vacuum wal replica planner cost trigger schema sequence lock snapshot".split()


def varied_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows of very different lengths, 2 questions per passage; every 4th negative is another row's positive."""
    rng = random.Random(seed)
    text = lambda tag: " ".join(rng.choices(WORDS, k=rng.randint(4, 90))) + f" ({tag})"  # noqa: E731
    positives = [text(f"passage {p}") for p in range(n // 2 + 1)]
    negatives = [text(f"other {i}") for i in range(n)]
    return [
        {
            "anchor": " ".join(rng.choices(WORDS, k=rng.randint(3, 15))) + f" ? {i}",
            "positive": positives[i // 2],
            "negative_1": positives[(i // 2 + 3) % len(positives)] if i % 4 == 0 else negatives[i],
        }
        for i in range(n)
    ]


def test_length_grouped_sampler_never_repeats_a_text_in_a_batch_and_covers_every_example_once():
    rows = varied_rows(150)
    dataset = Dataset.from_list(rows)
    sampler = LengthGroupedBatchSampler(
        dataset, batch_size=8, drop_last=False, generator=torch.Generator(), seed=3, mega_batch=4
    )
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        epochs.append(batches)
        assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))
        for batch in batches:
            texts = [text for i in batch for text in rows[i].values()]
            assert len(texts) == len(set(texts)), batch
        assert len(batches) == len(sampler)  # the trainer takes len(sampler) steps: no example is left out
    assert epochs[0] != epochs[1]
    again = LengthGroupedBatchSampler(
        dataset, batch_size=8, drop_last=False, generator=torch.Generator(), seed=3, mega_batch=4
    )
    assert list(again) == epochs[0]  # same seed and epoch, same batches: a resumed run skips the right ones


def test_length_grouped_batches_carry_less_padding_than_random_ones(base_model_dir):
    model = SentenceTransformer(base_model_dir, device="cpu")
    model.max_seq_length = 128
    measure = TokenLengths(model.tokenizer, model.max_seq_length)
    texts = [r["positive"] * 2 for r in varied_rows(30)]
    collated = model.preprocess(texts)["attention_mask"].sum(dim=1).numpy()
    assert (
        np.array_equal(measure(texts), collated) and collated.max() == 128
    )  # as the collator tokenizes, truncation included

    dataset = Dataset.from_list(varied_rows(1600))
    kwargs = dict(batch_size=16, drop_last=False, generator=torch.Generator(), seed=5)
    grouped = LengthGroupedBatchSampler(dataset, measure=measure, **kwargs)
    shuffled = list(NoDuplicatesBatchSampler(dataset, **kwargs))
    grouped_padding = padding_fraction(list(grouped), grouped.lengths)
    random_padding = padding_fraction(shuffled, grouped.lengths)
    assert random_padding > 0.25
    assert grouped_padding < 0.7 * random_padding, (grouped_padding, random_padding)


def retrieval_loss(model, rows: list[dict]) -> float:
    """MNRL of a model on all rows as one batch (scale 20): each query against every positive and negative."""
    encode = lambda key: model.encode([r[key] for r in rows], normalize_embeddings=True)  # noqa: E731
    scores = 20 * encode("anchor") @ np.concatenate([encode("positive"), encode("negative_1")]).T
    scores -= scores.max(axis=1, keepdims=True)
    log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return float(-np.mean(log_softmax[np.arange(len(rows)), np.arange(len(rows))]))


def small_trainer(base_model_dir, rows: list[dict], out, **settings):
    """A model and its trainer for one quick epoch over rows (batch 8, 32 tokens), checkpoints off."""
    train = TrainSettings(epochs=1, batch_size=8, learning_rate=2e-4, max_seq_length=32, teacher=None, **settings)
    model = load_for_training(base_model_dir, train)
    return model, build_trainer(model, {"with_negatives": rows}, train, str(out), checkpoints=False)


def test_length_grouping_trains_as_well_as_the_default_sampler(base_model_dir, tmp_path):
    rows = varied_rows(32, seed=1)
    base = retrieval_loss(SentenceTransformer(base_model_dir, device="cpu"), rows)
    tuned, seen = {}, {}
    for grouped in (True, False):
        model, trainer = small_trainer(base_model_dir, rows, tmp_path / str(grouped), group_by_length=grouped)
        trainer.train()
        tuned[grouped], seen[grouped] = retrieval_loss(model, rows), sum(trainer.data_collator.examples)
    assert seen == {True: 32, False: 32}
    assert tuned[False] < base - 0.1 and tuned[True] < base - 0.1, (base, tuned)
    assert abs(tuned[True] - tuned[False]) < 0.3 * (base - tuned[False]), (base, tuned)


def test_training_rows_put_columns_in_the_order_the_loss_reads_them(store):
    row = {"anchor": "q", "positive": "p", **{f"negative_{i}": f"n{i}" for i in range(1, 12)}}
    rows = training_rows(
        store.put_jsonl("tuples", [row]), store.put_jsonl("pairs", [{"anchor": "q2", "positive": "p2"}])
    )
    assert list(rows["with_negatives"][0]) == ["anchor", "positive", *[f"negative_{i}" for i in range(1, 12)]]
    assert rows["with_negatives"][0]["positive"] == "p" and list(rows["pairs_only"][0]) == ["anchor", "positive"]


def test_cached_mnrl_gives_the_same_loss_and_gradients_as_mnrl(base_model_dir):
    rows = varied_rows(8, seed=2)
    grads = {}
    for mini_batch in (None, 3):
        settings = TrainSettings(cached_mnrl_mini_batch=mini_batch, max_seq_length=32, teacher=None)
        model = load_for_training(base_model_dir, settings)
        model.eval()  # no dropout: both losses see the same embeddings
        loss_fn = build_loss(model, settings, [384, 64])
        features = [model.preprocess([r[column] for r in rows]) for column in ("anchor", "positive", "negative_1")]
        loss = loss_fn(features, labels=None)
        loss.backward()
        weight = model[0].auto_model.encoder.layer[0].attention.self.query.weight
        grads[mini_batch] = (loss.item(), weight.grad.clone())
    assert type(loss_fn.loss).__name__ == "CachedMultipleNegativesRankingLoss"
    assert grads[None][0] == pytest.approx(grads[3][0], rel=1e-4)
    assert grads[None][1].abs().sum() > 0
    assert torch.allclose(grads[None][1], grads[3][1], atol=1e-6, rtol=1e-3)


def test_training_embeds_the_corpus_once_reading_and_leaving_embeddings_in_the_store(store, base_model_dir):
    from domain_embed.tasks.core.objects import read_npy
    from domain_embed.tasks.embedding.corpus import corpus_embeddings, keep_corpus_embeddings, stored_corpus_embeddings
    from domain_embed.tasks.embedding.models import embed_texts, model_fingerprint
    from domain_embed.tasks.training.fit import validation_set
    from domain_embed.tasks.training.trainer import validation_evaluator

    tuples, pairs = dataset(store, n=16)
    texts = [f"The {t} feature, note {i}, keeps {t} state in its own catalog." for i in range(3) for t in TOPICS]
    corpus = store.put_jsonl("corpus", [{"chunk_id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    val = store.put_jsonl(
        "pairs", [{"query": f"where is {t} state kept", "chunk_id": f"c{i}"} for i, t in enumerate(TOPICS)]
    )
    validation = validation_set(val, corpus)
    base = SentenceTransformer(base_model_dir, device="cpu")
    evaluator = validation_evaluator(validation)
    stored = read_npy(corpus_embeddings(corpus, base_model_dir, store))  # what prepare leaves in the store
    fresh = evaluator(base)["validation_cosine_ndcg@10"]
    assert evaluator(base, corpus_embeddings=torch.from_numpy(stored))["validation_cosine_ndcg@10"] == pytest.approx(
        fresh, abs=1e-4
    )
    # the base score is taken on the stored embeddings: rows given in reverse order score differently, and are used
    keep_corpus_embeddings(corpus, model_fingerprint(base_model_dir), stored[::-1], store)
    reversed_score = evaluator(base, corpus_embeddings=torch.from_numpy(stored[::-1].copy()))[
        "validation_cosine_ndcg@10"
    ]
    assert reversed_score < fresh - 0.2
    settings = TrainSettings(epochs=1, batch_size=8, teacher=None, evaluations=1, rotate=True)
    result = train_model(
        tuples, pairs, base_model_dir, settings, store, "unit-embed-once", validation=validation, corpus=corpus
    )
    assert result.validation_curve[0] == (0, pytest.approx(reversed_score, abs=1e-6))
    # the rotation's embeddings of the corpus are stored as the tuned model's: evaluate and publish read them
    tuned = local_model(result.model)
    kept = stored_corpus_embeddings(corpus, tuned, store)
    assert kept is not None and kept.count == len(texts)
    np.testing.assert_allclose(read_npy(kept), embed_texts(tuned, texts), atol=1e-5)


def test_a_validation_pool_ranks_every_relevant_chunk_among_a_seeded_sample_and_reuses_their_stored_rows(
    store, base_model_dir
):
    from domain_embed.tasks.core.objects import read_npy
    from domain_embed.tasks.embedding.corpus import corpus_embeddings
    from domain_embed.tasks.training.fit import stored_base_embeddings, validation_set

    texts = [f"Note {i}: the {t} feature keeps its state in catalog {i}." for i in range(10) for t in TOPICS]
    corpus = store.put_jsonl("corpus", [{"chunk_id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    val = store.put_jsonl(
        "pairs", [{"query": f"where is {t} kept", "chunk_id": f"c{7 * i}"} for i, t in enumerate(TOPICS)]
    )
    relevant = {f"c{7 * i}" for i in range(len(TOPICS))}
    pooled = validation_set(val, corpus, pool=12, seed=1)
    assert len(pooled["corpus"]) == 12 and relevant <= set(pooled["corpus"])
    assert [f"c{i}" for i in pooled["rows"]] == list(pooled["corpus"])  # rows name the kept chunks, in corpus order
    assert pooled["corpus"] == validation_set(val, corpus, pool=12, seed=1)["corpus"]
    assert pooled["corpus"] != validation_set(val, corpus, pool=12, seed=2)["corpus"]
    assert len(validation_set(val, corpus, pool=len(texts))["corpus"]) == len(texts)
    assert len(validation_set(val, corpus)["corpus"]) == len(texts)
    stored = read_npy(corpus_embeddings(corpus, base_model_dir, store))
    picked = stored_base_embeddings(base_model_dir, TrainSettings(), store, pooled, corpus)
    np.testing.assert_array_equal(picked, stored[pooled["rows"]])


def test_train_bf16_trains_under_bfloat16_autocast_on_cpu_and_is_off_when_unset_without_native_bf16(
    base_model_dir, tmp_path
):
    rows = varied_rows(32, seed=1)
    base = retrieval_loss(SentenceTransformer(base_model_dir, device="cpu"), rows)
    args = {}
    for bf16 in (None, True):
        model, trainer = small_trainer(base_model_dir, rows, tmp_path / str(bf16), bf16=bf16)
        args[bf16] = (trainer.args.bf16, trainer.args.tf32)
        trainer.train()
        assert next(model.parameters()).dtype == torch.float32  # autocast: the weights stay fp32
    assert args == {None: (bf16_native(), False), True: (True, False)}  # unset: where the CPU has bf16 natively
    assert retrieval_loss(model, rows) < base - 0.1, base


def test_gradient_checkpointing_trains_to_the_same_losses_with_the_layers_checkpointed(store, base_model_dir):
    tuples, pairs = dataset(store, n=24)
    settings = TrainSettings(
        epochs=1,
        batch_size=8,
        max_seq_length=48,
        teacher=None,
        evaluations=0,
        rotate=False,
        gradient_checkpointing=False,
    )
    checkpointed = settings.model_copy(update={"gradient_checkpointing": True})
    assert load_for_training(base_model_dir, checkpointed)[0].auto_model.is_activation_checkpointing
    assert not load_for_training(base_model_dir, settings)[0].auto_model.is_activation_checkpointing
    on_this_cpu = settings.model_copy(update={"gradient_checkpointing": None})  # empty: on a CPU, on
    assert load_for_training(base_model_dir, on_this_cpu)[0].auto_model.is_activation_checkpointing
    plain = train_model(tuples, pairs, base_model_dir, settings, store, "unit-plain")
    recomputed = train_model(tuples, pairs, base_model_dir, checkpointed, store, "unit-checkpointed")
    assert len(plain.loss_curve) >= 3
    np.testing.assert_allclose(
        [loss for _, loss in recomputed.loss_curve], [loss for _, loss in plain.loss_curve], rtol=1e-4
    )
