"""Training throughput: our trainer configuration vs SentenceTransformerTrainer with seed-style defaults.

Model: a bge-base-sized BERT (hidden 768, 12 layers, 12 heads, intermediate 3072; --tiny: hidden 128,
2 layers) randomly initialised, mean pooling, max sequence length 256. Data: random words, queries of
6-18 words, positive and one hard negative passage of 120-230 words each. Both runs: MNRL inside
MatryoshkaLoss, one epoch of --steps batches, checkpoints off; the first fifth of the steps is warm-up
and not timed. (a) domain_embed.tasks.training.trainer.build_trainer with TrainSettings (length-grouped no-duplicate batches,
each distinct text tokenized once, SDPA, fused AdamW, bf16 + tf32 on GPUs that have them, --compile);
(b) bf16 when supported, tf32, batch 32, NO_DUPLICATES, nothing else. Prints one JSON line: pairs/s,
real (non-padding) tokens/s, padding share, collator milliseconds per step (host work the GPU waits
for) and model FLOPs utilisation = 6 x non-embedding parameters x real tokens / s / peak
bf16 FLOP/s (null on CPU or an unknown GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from domain_embed.tasks.embedding.models import resolve_model  # noqa: E402
from domain_embed.tasks.settings import TrainSettings  # noqa: E402

MAX_SEQ_LENGTH = 256
SEED_BATCH = 32
# Dense bf16 peak FLOP/s; the first name found in the device name wins.
PEAK_BF16 = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("A100", 312e12)]
SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
}


def peak_flops(device: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by name; None for CPU or an unknown GPU."""
    return next((peak for name, peak in PEAK_BF16 if name in device), None)


def build_model(folder: Path, size: str, tokenizer_dir: str | None = None) -> str:
    """A randomly initialised BERT with the packaged MiniLM's tokenizer (or `tokenizer_dir`'s), saved as a SentenceTransformer folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **SIZES[size])
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    transformer = Transformer(str(folder / "bert"), max_seq_length=MAX_SEQ_LENGTH)
    model = SentenceTransformer(modules=[transformer, Pooling(config.hidden_size, "mean")], device="cpu")
    model.save(str(folder / "st"))
    return str(folder / "st")


def random_rows(tokenizer, n: int, seed: int) -> list[dict]:
    """n (query, positive, negative) rows of random whole words from the tokenizer's vocabulary."""
    rng = np.random.default_rng(seed)
    words = np.array(sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2))

    def text(low: int, high: int) -> str:
        return " ".join(words[rng.integers(0, len(words), rng.integers(low, high + 1))])

    return [{"anchor": text(6, 18), "positive": text(120, 230), "negative_1": text(120, 230)} for _ in range(n)]


def non_embedding_parameters(model) -> int:
    """Parameters every token multiplies through: not the embedding tables, not BERT's pooler (mean pooling skips it)."""
    return sum(
        p.numel() for name, p in model.named_parameters() if ".embeddings." not in name and ".pooler." not in name
    )


class StepClock(TrainerCallback):
    """Wall time at the end of each optimizer step (after the GPU finished it)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def measure(trainer, warmup: int, flops_per_token: float, peak: float | None) -> dict:
    """Train one epoch; throughput over the steps after `warmup`, from the tokens the collator really produced."""
    from domain_embed.tasks.training.batching import CountingCollator

    if not isinstance(trainer.data_collator, CountingCollator):
        trainer.data_collator = CountingCollator(trainer.data_collator)
    counted, clock = trainer.data_collator, StepClock()
    trainer.add_callback(clock)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    steps = len(clock.times)
    seconds = clock.times[-1] - clock.times[warmup - 1]
    real = sum(counted.real[warmup:steps])
    padded = sum(counted.padded[warmup:steps])
    pairs = sum(counted.examples[warmup:steps])
    tokens_per_s = real / seconds
    return {
        "batch_size": trainer.args.per_device_train_batch_size,
        "timed_steps": steps - warmup,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(pairs / seconds, 2),
        "real_tokens_per_s": round(tokens_per_s, 1),
        "padding_fraction": round(1 - real / padded, 4),
        "collate_ms_per_step": round(1000 * sum(counted.seconds[warmup:steps]) / (steps - warmup), 2),
        "mfu": round(flops_per_token * tokens_per_s / peak, 4) if peak else None,
    }


def ours(
    model_dir: str,
    rows: list[dict],
    batch_size: int,
    compile_: bool,
    out: Path,
    seed: int = 13,
    learning_rate: float = 5e-5,
):
    """Our trainer (domain_embed.tasks.training.trainer.build_trainer), checkpoints off so that only training is timed."""
    from domain_embed.tasks.training.loading import load_for_training
    from domain_embed.tasks.training.trainer import build_trainer

    settings = TrainSettings(
        batch_size=batch_size,
        max_seq_length=MAX_SEQ_LENGTH,
        compile=compile_,
        seed=seed,
        learning_rate=learning_rate,
        teacher=None,
        epochs=1,
    )
    model = load_for_training(model_dir, settings)
    return build_trainer(model, {"with_negatives": rows}, settings, str(out / "ours"), checkpoints=False)


def seed_defaults(
    model_dir: str, rows: list[dict], out: Path, seed: int = 42, logging_steps: int = 500, learning_rate: float = 5e-5
):
    """SentenceTransformerTrainer as the seed had it: bf16 when supported, tf32, batch 32, MNRL in MatryoshkaLoss, NO_DUPLICATES."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    from domain_embed.tasks.embedding.models import default_matryoshka_dims

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    model = SentenceTransformer(model_dir, device="cuda" if cuda else "cpu", local_files_only=True)
    loss = MatryoshkaLoss(
        model,
        MultipleNegativesRankingLoss(model),
        matryoshka_dims=default_matryoshka_dims(model.get_embedding_dimension()),
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "seed"),
        num_train_epochs=1,
        per_device_train_batch_size=SEED_BATCH,
        bf16=bf16,
        tf32=bf16,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        logging_steps=logging_steps,
        learning_rate=learning_rate,
    )
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), loss=loss)


def release() -> None:
    """Free the previous run's model and optimizer before the next one."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="Optimizer steps per run (default 40 on GPU, 10 on CPU)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=TrainSettings().batch_size, help="Batch size of our configuration"
    )
    parser.add_argument("--tiny", action="store_true", help="Hidden 128, 2 layers: for CPU")
    parser.add_argument("--compile", action="store_true", help="Our configuration with torch.compile")
    parser.add_argument(
        "--tokenizer", help="Tokenizer folder (default: the packaged MiniLM's); see benchmarks/device_wheels.sh"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    steps = args.steps or (40 if cuda else 10)
    warmup = max(1, steps // 5)
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = peak_flops(device) if cuda else None
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        out = Path(tmp)
        model_dir = build_model(out, "tiny" if args.tiny else "base", args.tokenizer)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        seed_trainer = seed_defaults(model_dir, random_rows(tokenizer, steps * SEED_BATCH, seed=1), out)
        params = non_embedding_parameters(seed_trainer.model)
        seed_result = measure(seed_trainer, warmup, 6 * params, peak)
        del seed_trainer
        release()
        ours_trainer = ours(
            model_dir, random_rows(tokenizer, steps * args.batch_size, seed=2), args.batch_size, args.compile, out
        )
        ours_result = measure(ours_trainer, warmup, 6 * params, peak)
    record = {
        "benchmark": "train_throughput",
        "device": device,
        "model": "tiny BERT (hidden 128, 2 layers)" if args.tiny else "bge-base-sized BERT (hidden 768, 12 layers)",
        "non_embedding_params": params,
        "max_seq_length": MAX_SEQ_LENGTH,
        "steps": steps,
        "warmup_steps": warmup,
        "peak_bf16_flops": peak,
        "compile": args.compile,
        "ours": ours_result,
        "seed_defaults": seed_result,
        "speedup_real_tokens_per_s": round(ours_result["real_tokens_per_s"] / seed_result["real_tokens_per_s"], 3),
        "torch": torch.__version__,
    }
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
