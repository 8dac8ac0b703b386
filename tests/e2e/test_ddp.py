"""Data-parallel training for real on CPU: 2 gloo ranks match one process on the same global batch."""

from __future__ import annotations

import pytest
import torch

from domain_embed.tasks.core.model_ref import local_model
from domain_embed.tasks.settings import TrainSettings
from domain_embed.tasks.training.ddp import DistributedJob, requested_processes, train_distributed
from domain_embed.tasks.training.fit import train_model

TOPICS = ["index", "vacuum", "wal", "replication", "planner", "trigger", "sequence", "schema"]


def tiny_model(folder) -> str:
    """A random 2-layer BERT (hidden 64) SentenceTransformer with MiniLM's tokenizer and no dropout, whose random masks
    would differ between one process and two ranks."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from domain_embed.tasks.embedding.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    model = SentenceTransformer(
        modules=[Transformer(str(folder / "bert"), max_seq_length=16), Pooling(64, "mean")], device="cpu"
    )
    model.save(str(folder / "st"))
    return str(folder / "st")


def weights(model_dir: str) -> dict[str, torch.Tensor]:
    """The model's parameters by name."""
    from sentence_transformers import SentenceTransformer

    return {k: v.detach().clone() for k, v in SentenceTransformer(model_dir, device="cpu").state_dict().items()}


def test_processes_zero_means_one_per_gpu():
    assert requested_processes(TrainSettings(processes=3)) == 3
    assert requested_processes(TrainSettings(processes=0)) == max(1, torch.cuda.device_count())


@pytest.mark.slow
@pytest.mark.extended  # two training processes: `make test-all`
def test_two_gloo_ranks_train_like_one_process_on_the_same_global_batch(store, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the ranks share 2 cores; also inherited by the ranks
    base = tiny_model(tmp_path)
    # hard-negative rows and pairs: two datasets, so global batches also alternate between 3 and 2 columns
    tuples = store.put_jsonl(
        "tuples",
        [
            {
                "anchor": f"how does {TOPICS[i % 8]} {i} work",
                "positive": f"The {TOPICS[i % 8]} item {i} keeps state.",
                "negative_1": f"The {TOPICS[(i + 3) % 8]} item is unrelated to {i}.",
            }
            for i in range(16)
        ],
    )
    pairs = store.put_jsonl(
        "pairs", [{"anchor": f"what is {t}", "positive": f"{t} is a database concept."} for t in TOPICS]
    )
    settings = TrainSettings(
        epochs=2, batch_size=8, max_seq_length=16, learning_rate=1e-3, warmup_ratio=0.0, evaluations=0, rotate=False
    )

    single = train_model(tuples, pairs, base, settings, store, "single")
    job = DistributedJob(
        tuples=tuples,
        pairs=pairs,
        base_model_dir=base,
        settings=settings.model_copy(update={"processes": 2}),
        store_url=store.url,
        run_key="ddp",
    )
    echoed: list[str] = []
    ddp = train_distributed(job, 2, echo=echoed.append)

    assert ddp.processes == 2 and single.processes == 1 and ddp.steps == single.steps == 6
    # The same global batches in the same order: the ranks' halves, gathered, are the single process's batch, so
    # the loss and the update are the same sums, only added in another order (and each half padded to its own
    # longest text, masked out). Float32 rounding then differs at ~1e-7 relative per step, and Adam, which divides
    # by the gradient's running size, turns that into weight differences of up to ~lr x that noise per step.
    # Measured: losses (~1-2.3) within 1e-6, weights within 7.5e-6 where training moved them by up to 3.5e-3.
    # The bounds, 1e-4 on the loss and 1% of the largest move on the weights, leave room for other CPUs' rounding
    # and still catch real differences: ranks that trained on the whole batch each (not split) logged log(2) more.
    assert [s for s, _ in ddp.loss_curve] == [s for s, _ in single.loss_curve]
    loss_gap = max(abs(a - b) for (_, a), (_, b) in zip(ddp.loss_curve, single.loss_curve))
    before, one, two = weights(base), weights(local_model(single.model)), weights(local_model(ddp.model))
    weight_gap = max(float((one[k] - two[k]).abs().max()) for k in one)
    moved = max(float((one[k] - before[k]).abs().max()) for k in one)
    print(
        f"losses {[round(loss, 4) for _, loss in single.loss_curve]}: max gap {loss_gap:.2e}; weights moved {moved:.2e}, max gap {weight_gap:.2e}"
    )
    assert loss_gap < 1e-4
    assert moved > 1e-3 and weight_gap < 0.01 * moved
    assert echoed  # rank 0's output reaches the caller's log
