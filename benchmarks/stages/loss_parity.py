"""Does our fast training configuration learn as well as SentenceTransformerTrainer's seed-style defaults?

Same small run for both: the benchmark BERT of train_throughput (--tiny on CPU), one epoch over the
same learnable rows (a query is words of its passage; the hard negative shares half its passage's
words), batch 32, one learning rate for both (5e-5 for base, 1e-3 for the randomly initialised
tiny model, which learns nothing in a few steps at 5e-5), several seeds each. Every --every steps, the MNRL loss of each
model on a fixed held-out set (its queries against all its positives and negatives, cosine x 20) is
recorded; the training loss curve too. Prints one JSON line: mean curves, final held-out losses per
seed, their difference and its noise (2 standard errors from the seed-to-seed spread).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.tiny import parse_args
from domain_embed.flows.env import set_offline_defaults

set_offline_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, TrainerCallback  # noqa: E402

from benchmarks.stages.train_throughput import SEED_BATCH, build_model, ours, release, seed_defaults  # noqa: E402

TINY = {"steps": 2, "seeds": 2, "every": 1, "heldout": 8, "size": "tiny"}  # --tiny: what CI runs


def learnable_rows(tokenizer, n: int, seed: int) -> list[dict]:
    """Rows whose query can be found: 6-18 words of its 120-230-word passage; the negative keeps half of those words."""
    rng = np.random.default_rng(seed)
    words = np.array(sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2))
    rows = []
    for _ in range(n):
        passage = words[rng.integers(0, len(words), rng.integers(120, 231))]
        query = rng.choice(passage, rng.integers(6, 19), replace=False)
        negative = np.where(rng.random(len(passage)) < 0.5, passage, words[rng.integers(0, len(words), len(passage))])
        rows.append({"anchor": " ".join(query), "positive": " ".join(passage), "negative_1": " ".join(negative)})
    return rows


def heldout_loss(model, rows: list[dict]) -> float:
    """MNRL of the model on all held-out rows at once: each query against every positive and negative."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        encode = lambda key: model.encode(
            [r[key] for r in rows], batch_size=64, convert_to_tensor=True, normalize_embeddings=True
        )  # noqa: E731
        scores = 20 * encode("anchor").float() @ torch.cat([encode("positive"), encode("negative_1")]).float().T
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(rows), device=scores.device)).item()
    model.train(was_training)
    return loss


class HeldOut(TrainerCallback):
    """Held-out loss at step 0 and every `every` steps."""

    def __init__(self, model, rows: list[dict], every: int) -> None:
        self.model, self.rows, self.every = model, rows, every
        self.curve: list[tuple[int, float]] = [(0, heldout_loss(model, rows))]

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.curve.append((state.global_step, heldout_loss(self.model, self.rows)))


def run(trainer, rows: list[dict], every: int) -> dict:
    """Train one epoch; the held-out curve and the training loss curve."""
    heldout = HeldOut(trainer.model, rows, every)
    trainer.add_callback(heldout)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    train_curve = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    return {"heldout": heldout.curve, "train": train_curve}


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Pointwise mean over seeds (curves share their steps)."""
    return [(points[0][0], round(statistics.fmean(v for _, v in points), 4)) for points in zip(*curves)]


def window_mean(curve: list[tuple[int, float]], fraction: float = 0.25) -> float:
    """Mean of the last `fraction` of a curve's points: a training loss with less batch noise."""
    tail = curve[-max(1, int(len(curve) * fraction)) :]
    return statistics.fmean(v for _, v in tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="Optimizer steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="Runs per configuration")
    parser.add_argument("--every", type=int, default=10, help="Held-out loss every N steps")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="Both configurations; default 5e-5 (base), 1e-3 (tiny)"
    )
    parser.add_argument(
        "--tokenizer", help="Tokenizer folder (default: the packaged MiniLM's); see benchmarks/device_wheels.sh"
    )
    parser.add_argument("--heldout", type=int, default=256, help="Held-out rows")
    parser.add_argument("--size", choices=["tiny", "base"], default=None, help="Default: base on GPU, tiny on CPU")
    args = parse_args(parser, TINY)
    size = args.size or ("base" if torch.cuda.is_available() else "tiny")
    learning_rate = args.learning_rate or (5e-5 if size == "base" else 1e-3)
    results: dict[str, list[dict]] = {"seed_defaults": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="loss-parity-") as tmp:
        out = Path(tmp)
        model_dir = build_model(out, size, args.tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        train_rows = learnable_rows(tokenizer, args.steps * SEED_BATCH, seed=11)
        heldout_rows = learnable_rows(tokenizer, args.heldout, seed=12)
        for seed in range(args.seeds):
            trainer = seed_defaults(
                model_dir, train_rows, out, seed=seed, logging_steps=1, learning_rate=learning_rate
            )
            results["seed_defaults"].append(run(trainer, heldout_rows, args.every))
            del trainer
            release()
            trainer = ours(
                model_dir, train_rows, SEED_BATCH, compile_=False, out=out, seed=seed, learning_rate=learning_rate
            )
            results["ours"].append(run(trainer, heldout_rows, args.every))
            del trainer
            release()
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "final_heldout_loss": [round(r["heldout"][-1][1], 4) for r in runs],
            "final_train_loss": [round(window_mean(r["train"]), 4) for r in runs],
            "heldout_curve": mean_curve([r["heldout"] for r in runs]),
            "train_curve_every": mean_curve([r["train"] for r in runs])[:: args.every],
        }
    a, b = summary["ours"]["final_heldout_loss"], summary["seed_defaults"]["final_heldout_loss"]
    difference = statistics.fmean(a) - statistics.fmean(b)
    noise = 2 * (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5 if args.seeds > 1 else None
    record = {
        "benchmark": "loss_parity",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "model": size,
        "steps": args.steps,
        "batch_size": SEED_BATCH,
        "learning_rate": learning_rate,
        "seeds": args.seeds,
        "start_heldout_loss": summary["ours"]["heldout_curve"][0][1],
        "ours": summary["ours"],
        "seed_defaults": summary["seed_defaults"],
        "heldout_difference": round(difference, 4),
        "noise_2se": round(noise, 4) if noise is not None else None,
        "within_noise": abs(difference) <= noise if noise is not None else None,
        "torch": torch.__version__,
    }
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
