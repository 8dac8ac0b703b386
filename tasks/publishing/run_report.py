"""The run report: counts in / kept / dropped per stage, timings, LLM cost, training and the before/after table."""

from __future__ import annotations

from collections import Counter

from ..core.reports import markdown_table
from ..embedding.models import model_source
from ..training.trainer import describe_loss
from .model_card import source_note
from .report_tables import evaluation_section


def _stage(name: str, items: str, n_in: int, kept: int, dropped: dict[str, int], seconds: float | None) -> dict:
    return {"stage": name, "items": items, "in": n_in, "kept": kept, "dropped": dict(dropped), "seconds": seconds}


def training_recipe(settings, dims: list[int]) -> dict:
    """How the model was trained, in the words and numbers a model card gives."""
    return {
        "loss": describe_loss(settings, dims),
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "schedule": f"AdamW, warm-up {settings.warmup_ratio:.0%} of the steps then cosine decay",
        "teacher": settings.teacher,
        "seed": settings.seed,
        "attention_dropout": settings.attention_dropout,  # None: the base model's own
        "rotation": "principal axes of the corpus's embeddings" if settings.rotate else None,
    }


def build_report(
    *,
    config,
    docs,
    parse_rows,
    chunked,
    corpus,
    generation,
    split,
    supervised,
    mined,
    trained,
    evaluations,
    index_meta,
    timings,
    dim,
    promotion,
    new_documents: bool,
) -> dict:
    """Everything a user needs to trust the run, as plain JSON-able data."""
    # a 'no chunk' document was parsed: its pieces are counted in the chunk stage's drops
    parse_dropped = Counter(r["status"] for r in parse_rows if r["status"].startswith(("skipped", "error")))
    chunk_dropped: Counter = Counter()
    for doc in chunked:
        chunk_dropped.update(doc.dropped)
    chunk_dropped.update(corpus.dropped)
    gen = generation.stats.model_dump()
    mine_stats = {
        **mined.stats.model_dump(mode="json"),
        "index": mined.index.model_dump(mode="json") if mined.index else None,
    }
    stages = [
        _stage("parse", "files", len(docs), len(chunked), parse_dropped, timings.get("parse")),
        _stage(
            "chunk",
            "chunks",
            corpus.chunks + sum(chunk_dropped.values()),
            corpus.chunks,
            chunk_dropped,
            timings.get("chunk"),
        ),
        _stage(
            "generate",
            "questions",
            gen.get("questions_raw", 0),
            gen.get("questions_kept", 0),
            gen.get("dropped", {}),
            timings.get("generate"),
        ),
        _stage(
            "split",
            "pairs",
            split.train.count + split.val.count + split.eval.count + sum(split.dropped.values()),
            split.train.count + split.val.count + split.eval.count,
            split.dropped,
            timings.get("split"),
        ),
        _stage(
            "mine",
            "train pairs",
            supervised.pairs.count,
            mined.tuples.count + mined.pairs_without_negatives.count,
            {
                k: v
                for k, v in {
                    "no negative found (kept as pair)": mined.pairs_without_negatives.count,
                    "pair names no corpus chunk": mined.stats.pairs_missing_chunk,
                }.items()
                if v
            },
            timings.get("mine"),
        ),
        _stage("train", "examples", trained.examples, trained.examples, {}, timings.get("train")),
        _stage("evaluate", "eval queries", split.eval.count, split.eval.count, {}, timings.get("evaluate")),
        _stage("publish", "chunks indexed", corpus.chunks, index_meta["vectors"], {}, timings.get("publish")),
    ]
    return {
        "base_model": config.base_model,
        "base_model_source": model_source(config.base_model),
        "llm": config.llm.model,
        "dimension": dim,
        "matryoshka_dims": trained.dims,
        "new_documents": new_documents,
        "promotion": promotion.model_dump(mode="json", exclude={"previous"}),
        "documents": {
            "found": len(docs),
            "parsed": len(chunked),
            "train": len(split.train_docs),
            "validation": len(split.val_docs),
            "eval": len(split.eval_docs),
        },
        "training_pairs_by_source": supervised.sources,
        "recipe": training_recipe(config.train, trained.dims),
        "stages": stages,
        "timings_s": timings,
        "llm_usage": {
            k: gen.get(k) for k in ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")
        },
        "chunks_failed": gen.get("chunks_failed", []),
        "mining": mine_stats,
        "training": {**trained.model_dump(exclude={"model", "cached"}), "model_sha": trained.model_sha},
        "training_cached": trained.cached,
        "evaluation": {
            label: report.model_dump(mode="json", exclude={"ref"}) for label, report in evaluations.items()
        },
        "index": index_meta,
        "files": parse_rows,
        "store": {
            "corpus": corpus.ref.uri,
            "train_pairs": split.train.uri,
            "eval_pairs": split.eval.uri,
            "tuples": mined.tuples.uri,
            "model": trained.model.uri,
        },
    }


def what_ran(report: dict) -> str:
    """What this run paid for and what it reused, stated only from its own counts: documents, LLM calls, training."""
    usage = report["llm_usage"]
    calls, hits = usage.get("llm_calls") or 0, usage.get("cache_hits") or 0
    llm = (
        f"{calls} LLM calls ({hits} chunks answered from cache)"
        if calls
        else f"no LLM call ({hits} chunks answered from cache)"
    )
    training = (
        "training served from cache"
        if report.get("training_cached")
        else f"trained {report['training']['steps']} steps"
    )
    documents = "**Same documents as the last run**: " if not report["new_documents"] else "This run: "
    return f"{documents}{llm}; {training}.\n"


def render_markdown(report: dict) -> str:
    """report.md: headline table first, then stages, cost and training."""
    parts = [
        f"# domain-embed report\n\nBase model `{report['base_model']}`"
        f"{source_note(report.get('base_model_source'))}, LLM `{report['llm']}`, "
        f"Matryoshka dims {report['matryoshka_dims']}.\n"
    ]
    parts.append(what_ran(report))
    parts.append(f"**Promotion:** {report['promotion']['reason']}.\n")
    if report.get("config_source"):
        parts.append(f"Configuration: {report['config_source']}.\n")
    docs = report["documents"]
    parts.append(
        f"Documents: {docs['found']} found, {docs['parsed']} parsed, {docs['train']} for training, {docs['eval']} held out for eval.\n"
    )
    if not report["evaluation"]:
        parts.append("**No evaluation**: the corpus has a single document, so nothing was held out.\n")
    for label, results in report["evaluation"].items():
        parts.append(evaluation_section(label, results))
    stage_rows = [
        {
            "stage": s["stage"],
            "items": s["items"],
            "in": s["in"],
            "kept": s["kept"],
            "dropped (reason: count)": "; ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "-",
            "seconds": s["seconds"],
        }
        for s in report["stages"]
    ]
    parts.append("## Stages\n\n" + markdown_table(stage_rows))
    usage = report["llm_usage"]
    parts.append("## LLM usage\n\n" + markdown_table([{k: v for k, v in usage.items()}]))
    if report["chunks_failed"]:
        parts.append(
            "Chunks with no questions (retried on the next run):\n\n" + markdown_table(report["chunks_failed"][:50])
        )
    training = report["training"]
    parts.append(
        f"## Training\n\n{training['steps']} steps on {training['examples']} examples, {training['device']}, "
        f"{training['seconds']:.1f} s ({training['samples_per_second']:.1f} samples/s).\n"
    )
    skipped = [f for f in report["files"] if f["status"] != "ok"]
    if skipped:
        parts.append("## Files not used\n\n" + markdown_table(skipped, ["file", "type", "status"]))
    return "\n".join(parts)
