"""The train task: one training run per content key on a store, in this process or on data-parallel ranks, with its
training-report artifact."""

from __future__ import annotations

from prefect import task
from prefect.logging import get_run_logger

from ..core.caching import code_and_inputs
from ..core.claims import exclusive
from ..core.faults import retry_if_transient
from ..core.objects import Ref
from ..core.reports import markdown_table, png_line_chart, publish_markdown
from ..core.store import RunStore
from ..embedding.models import resolve_model
from ..settings import TrainSettings
from .ddp import DistributedJob, requested_processes, train_distributed
from .fit import (
    TrainResult,
    read_train_result,
    result_saved_since,
    run_key,
    save_train_result,
    train_model,
    validation_set,
)


def training_markdown(result: TrainResult) -> str:
    """The training-report: loss curve, throughput, device."""
    chart = png_line_chart(
        {"loss": [(float(step), loss) for step, loss in result.loss_curve]}, "training loss per step"
    )
    facts = [
        {"what": "device", "value": result.device},
        {"what": "data-parallel processes", "value": result.processes},
        {
            "what": "CUDA_VISIBLE_DEVICES",
            "value": result.cuda_visible_devices if result.cuda_visible_devices is not None else "unset",
        },
        {"what": "examples", "value": result.examples},
        {"what": "steps", "value": result.steps},
        {"what": "epochs", "value": result.epochs},
        {"what": "samples / second", "value": round(result.samples_per_second, 2)},
        {
            "what": "real tokens / second",
            "value": round(result.tokens_per_second, 1) if result.tokens_per_second else "n/a",
        },
        {
            "what": "padding share",
            "value": f"{result.padding_fraction:.1%}" if result.padding_fraction is not None else "n/a",
        },
        {"what": "wall time (s)", "value": round(result.seconds, 1)},
        {
            "what": "peak GPU memory (MB)",
            "value": round(result.peak_memory_mb, 1) if result.peak_memory_mb else "n/a (CPU)",
        },
        {"what": "matryoshka dims", "value": ", ".join(map(str, result.dims))},
        {"what": "resumed from checkpoint", "value": result.resumed_from or "no"},
        {"what": "teacher", "value": result.teacher or "none (MNRL)"},
        {
            "what": "validation NDCG@10 (step: score)",
            "value": ", ".join(f"{s}: {v:.4f}" for s, v in result.validation_curve) or "no validation split",
        },
        {"what": "checkpoint kept", "value": f"step {result.best_step}" if result.best_step else "last"},
    ]
    first, last = (result.loss_curve[0][1], result.loss_curve[-1][1]) if result.loss_curve else (None, None)
    summary = f"Loss went from {first:.4f} to {last:.4f}.\n\n" if first is not None else ""
    return f"# Training\n\n{summary}{chart}\n\n{markdown_table(facts)}"


def publish_training_report(result: TrainResult) -> None:
    """The `training-report` artifact on the current run: the training task's, and the parent pipeline run's."""
    publish_markdown("training-report", training_markdown(result), "Fine-tuning: loss curve, throughput, device")


TRAIN_LEASE_S = 600.0  # a training claim lapses this long after its holder stopped renewing it (another machine died)


def train_here(
    tuples: Ref,
    pairs: Ref,
    base_model: str,
    settings: TrainSettings,
    store: RunStore,
    key: str,
    validation: Ref | None,
    corpus: Ref | None,
) -> TrainResult:
    """Train in this process, or on settings.processes data-parallel ranks."""
    processes = requested_processes(settings)
    if processes > 1:
        get_run_logger().info("Data-parallel training on %d processes", processes)
        job = DistributedJob(
            tuples=tuples,
            pairs=pairs,
            base_model_dir=resolve_model(base_model),
            settings=settings,
            store_url=store.url,
            run_key=key,
            validation=validation,
            corpus=corpus,
        )
        return train_distributed(job, processes, echo=get_run_logger().info)
    return train_model(
        tuples,
        pairs,
        resolve_model(base_model),
        settings,
        store,
        key,
        validation=validation_set(validation, corpus, settings.validation_pool, settings.seed),
        corpus=corpus,
    )


@task(
    name="train",
    cache_policy=code_and_inputs(exclude=("base_model",)),
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
    persist_result=True,
)
def train_task(
    tuples: Ref,
    pairs: Ref,
    base_model: str,
    base_model_sha: str,
    settings: TrainSettings,
    store_url: str,
    validation: Ref | None = None,
    corpus: Ref | None = None,
) -> TrainResult:
    """Train in this process, or on settings.processes data-parallel ranks; a retry after a crash resumes from the last
    checkpoint of the same content key."""
    logger = get_run_logger()
    key, store = run_key(tuples, pairs, base_model_sha, settings, validation, corpus), RunStore(store_url)
    logger.info(
        "Training %s on %d tuples and %d pairs (run %s, teacher %s)",
        base_model,
        tuples.count,
        pairs.count,
        key,
        settings.teacher,
    )
    # one process at a time trains a run key on a store; a run that waited on another takes its model
    with exclusive(store, "train", key, TRAIN_LEASE_S, lambda since: result_saved_since(store, key, since)) as mine:
        if mine:
            result = train_here(tuples, pairs, base_model, settings, store, key, validation, corpus)
            save_train_result(store, key, result)
    if not mine:
        logger.info("Trained meanwhile by another run on this store (run %s): its model is this run's", key)
        result = read_train_result(store, key)
    if result.resumed_from:
        logger.info("Resumed from %s", result.resumed_from)
    logger.info(
        "Trained %d steps in %.1f s on %s (%.1f samples/s, %.0f real tokens/s, %.1f%% padding)",
        result.steps,
        result.seconds,
        result.device,
        result.samples_per_second,
        result.tokens_per_second or 0,
        100 * (result.padding_fraction or 0),
    )
    publish_training_report(result)
    return result
