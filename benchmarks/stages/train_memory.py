"""Training memory: peak RSS and seconds per step of the project's trainer (domain_embed.tasks.training) on
all-MiniLM-L6-v2, per variant, each in its own process so that each peak is its own.

Rows: (query, positive, negative), passages of --words words drawn from the demo corpus's vocabulary (the query is a
passage's first 12 words), as the default recipe trains (batch 32, one mined negative, bf16 where the CPU has it). Variants:
`default` (the model's own attention dropout, the default until train.attention_dropout 0); `attention-dropout-0`;
`checkpointing` (train.gradient_checkpointing) and `cached-mnrl-8` (train.cached_mnrl_mini_batch 8), both with the shipped
attention dropout 0. Each variant runs under each of --allocators (DOMAIN_EMBED_ALLOCATOR: `system` is glibc's malloc,
`auto` the tcmalloc that runs preload where found). Prints one JSON line: per variant and allocator peak_rss_mb (the
process's, model and data included), before_training_mb, s_per_step (after the first step), the final loss (the same
under every allocator) and the allocator that was loaded.

    python -m benchmarks.stages.train_memory [--steps 6] [--variants default,attention-dropout-0] [--allocators system,auto]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

from benchmarks.tiny import parse_args  # noqa: E402
from domain_embed.tasks.core.allocator import ALLOCATOR_ENV, allocator_in_use, preload_allocator  # noqa: E402
from domain_embed.tasks.core.progress import peak_rss_mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = {
    "default": {"attention_dropout": None},
    "attention-dropout-0": {"attention_dropout": 0.0},
    "checkpointing": {"gradient_checkpointing": True},
    "cached-mnrl-8": {"cached_mnrl_mini_batch": 8},
}


def passages(count: int, words: int) -> list[str]:
    """`count` distinct passages of `words` words drawn (seeded) from the demo corpus's vocabulary: memory and speed
    depend on the lengths, and the no-duplicates batches need every text distinct."""
    files = sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in (".md", ".txt"))
    vocabulary = sorted({w for p in files for w in p.read_text(errors="replace").split()})
    rng = random.Random(13)
    return [" ".join(rng.choices(vocabulary, k=words)) for _ in range(count)]


def one(variant: str, steps: int, batch: int, words: int) -> dict:
    """Train `steps` steps of one variant in this process; its peak RSS and seconds per step after the first."""
    from transformers import TrainerCallback

    from domain_embed.tasks.embedding.models import resolve_model
    from domain_embed.tasks.settings import TrainSettings
    from domain_embed.tasks.training.loading import load_for_training
    from domain_embed.tasks.training.trainer import build_trainer

    texts = passages(batch * (steps + 1), words)
    rows = [
        {"anchor": " ".join(t.split()[:12]), "positive": t, "negative": texts[(i + 7) % len(texts)]}
        for i, t in enumerate(texts)
    ]
    settings = TrainSettings(batch_size=batch, evaluations=0, **VARIANTS[variant])
    model = load_for_training(resolve_model("all-MiniLM-L6-v2"), settings)
    before = peak_rss_mb()
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(model, {"with_negatives": rows}, settings, out, [Clock()], checkpoints=False)
        trainer.args.max_steps = steps
        output = trainer.train()
    timed = marks[-1] - marks[0] if len(marks) > 1 else float("nan")
    return {
        "peak_rss_mb": peak_rss_mb(),
        "before_training_mb": before,
        "s_per_step": round(timed / max(1, len(marks) - 1), 2),
        "loss": round(output.training_loss, 6),
        "allocator": allocator_in_use(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--words", type=int, default=150, help="Words per passage (about 200 tokens at 150)")
    parser.add_argument("--allocators", default="system,auto", help="DOMAIN_EMBED_ALLOCATOR values to run each under")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run a single variant in this process
    args = parse_args(parser, {"variants": "default", "steps": 2, "batch_size": 4, "words": 30}, argv)
    if args.one:
        preload_allocator()
        print(json.dumps(one(args.one, args.steps, args.batch_size, args.words)))
        return
    results: dict[str, dict] = {}
    for variant in args.variants.split(","):
        command = [sys.executable, "-m", "benchmarks.stages.train_memory", "--one", variant]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--words", str(args.words)]
        for allocator in args.allocators.split(","):
            env = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, ALLOCATOR_ENV: allocator}
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            results.setdefault(variant, {})[allocator] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"variants": results, "steps": args.steps, "batch_size": args.batch_size, "words": args.words}))


if __name__ == "__main__":
    main()
