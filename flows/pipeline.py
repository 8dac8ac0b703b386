"""Flow build-embedder: documents in, tuned model + index + before/after report out."""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger

from ..tasks.checks import check_config
from ..tasks.core import Ref, RunStore, Stopwatch, die_with_worker
from ..tasks.core.allocator import allocator_in_use
from ..tasks.embedding import model_fingerprint, resolve_model
from ..tasks.evaluation import EvalReport, beir_fingerprint, evaluate_beir_task, evaluate_task
from ..tasks.llm import llm_endpoint, run_settings
from ..tasks.mining import mine_task
from ..tasks.plan import check_cost
from ..tasks.publishing import (
    build_report,
    choose_config,
    compared_models,
    corpus_changed,
    promote_task,
    publish_task,
    read_current,
    record_run_task,
    save_folder_config_task,
    write_run_report_task,
)
from ..tasks.questions import GenerationResult, SplitResult, generate_task, split_task, supervise_task
from ..tasks.settings import PipelineConfig
from ..tasks.training import TrainResult, publish_training_report, read_train_result, run_key
from .prepare import prepare_corpus
from .train import train_embedder

FLOW_EXCEPTION_PREFIX = "Flow run encountered an exception:"


def run_training(
    config: PipelineConfig,
    tuples: Ref,
    pairs: Ref,
    store_url: str,
    validation: Ref | None = None,
    corpus: Ref | None = None,
) -> TrainResult:
    """Train in-process, or as the configured deployment; either way a sub-flow run whose training report is
    also published on this (the parent) run, so the parent's Artifacts tab shows it."""
    if config.train.deployment:
        result = train_as_deployment(config, tuples, pairs, store_url, validation, corpus)
    else:
        result = train_embedder(tuples, pairs, config.base_model, config.train, store_url, validation, corpus)
    publish_training_report(result)
    return result


def train_as_deployment(
    config: PipelineConfig, tuples: Ref, pairs: Ref, store_url: str, validation: Ref | None, corpus: Ref | None
) -> TrainResult:
    """Run train.deployment as a linked sub-flow on its work pool; its reason is raised if it does not complete.

    A deployment run may execute on another machine with other result storage: its TrainResult is read
    back from the run store, under the run's content key, rather than from Prefect's persisted result.
    """
    from prefect.deployments import run_deployment

    settings = config.train.model_copy(update={"deployment": None})
    flow_run = run_deployment(
        name=config.train.deployment,
        parameters={
            "tuples": tuples,
            "pairs": pairs,
            "base_model": config.base_model,
            "settings": settings,
            "store_url": store_url,
            "validation": validation,
            "corpus": corpus,
        },
        as_subflow=True,
    )
    if not flow_run.state or not flow_run.state.is_completed():
        raise RuntimeError(sub_flow_failure(config.train.deployment, flow_run.state))
    key = run_key(tuples, pairs, model_fingerprint(resolve_model(config.base_model)), settings, validation, corpus)
    return read_train_result(RunStore(store_url), key)


def sub_flow_failure(deployment: str, state: State | None) -> str:
    """Why a deployment's run did not complete, with the child's own reason, e.g. '... ended Failed: ValueError: ...'."""
    if state is None:
        return f"training deployment {deployment} ended without state"
    reason = (state.message or "").removeprefix(FLOW_EXCEPTION_PREFIX).strip()
    return f"training deployment {deployment} ended {state.name}" + (f": {reason}" if reason else "")


def generate_questions(
    config: PipelineConfig, corpus: Ref, store_url: str, embeddings: Ref | None = None, backend: str = "torch"
) -> GenerationResult:
    """Questions for the corpus from the run's LLM; a result reused from the task cache reports no LLM use of its own.

    embeddings: the corpus embeddings under the base model, for the round-trip filter; backend: embed.backend resolved."""
    with llm_endpoint(config.llm) as endpoint:
        future = generate_task.submit(
            corpus,
            run_settings(config.llm),
            config.filter,
            config.base_model,
            store_url,
            endpoint,
            embeddings,
            backend,
        )
        generation = future.result()
    if future.state.name == "Cached":  # the stats describe the run that paid; this one paid nothing
        generation.stats = generation.stats.as_reused()
    return generation


def evaluate_all(
    config: PipelineConfig, models: dict, shas: dict, split: SplitResult, corpus: Ref, dims: list[int], backend: str
) -> dict[str, EvalReport]:
    """The compared models on the synthetic eval split and on the user's own dataset, by label."""
    evaluations = {}
    if split.eval.count:
        evaluations["synthetic"] = evaluate_task(
            models, shas, split.eval, corpus, dims, config.store_url, label="synthetic", backend=backend
        )
    else:
        get_run_logger().warning("No eval split (a single document?): nothing to compare on")
    if config.eval_dataset:
        dataset_sha = beir_fingerprint(config.eval_dataset)
        user = evaluate_beir_task(
            models, shas, config.eval_dataset, dataset_sha, dims, config.store_url, split.train, corpus, backend
        )
        evaluations[user.label] = user
    return evaluations


def promote_and_publish(
    config: PipelineConfig,
    evaluations: dict[str, EvalReport],
    current,
    trained: TrainResult,
    models: dict[str, str],
    corpus,
    split: SplitResult,
    docs: list,
    backend: str,
) -> tuple:
    """Promote the tuned model if it beat the current one, then publish the winner (else the current or base model)
    with the corpus's index, each chunk named by its document's file (`docs`: the parsed documents)."""
    synthetic = evaluations.get("synthetic")
    promotion = promote_task(
        config.store_url,
        config.model_name,
        current,
        synthetic and synthetic.results,
        synthetic and synthetic.intervals,
        trained.model,
        trained.model_sha,
        corpus.ref.sha256,
        split.eval.sha256,
    )
    published = models["tuned"] if promotion.promoted else models.get("current", models["base"])
    names = {d.doc_id: d.rel_path for d in docs}
    return promotion, publish_task(published, corpus.ref, names, config.out_dir, config.store_url, backend)


@flow(name="build-embedder", log_prints=False)
def build_embedder(config: PipelineConfig, use_saved_config: bool = False) -> dict:
    """Parse, chunk, generate questions, split by document, mine negatives, train, evaluate, promote, publish.

    use_saved_config: run with the configuration last run (or saved) for config.docs_dir, as unattended runs do."""
    die_with_worker()
    clock = Stopwatch()
    config, source = choose_config(config, use_saved_config)
    get_run_logger().info("Configuration: %s; output folder %s", source, config.out_dir)
    docs, model_dir, model_sha, dim = check_config(config)
    check_cost(config, docs, model_dir)
    save_folder_config_task(config)
    store = config.store_url
    prepared = prepare_corpus(config, docs, model_dir, model_sha, store, clock)
    corpus, ok_docs = prepared.corpus, prepared.parsed.ok_docs
    with clock.stage("generate"):
        generation = generate_questions(config, corpus.ref, store, prepared.embeddings, prepared.backend)
    with clock.stage("split"):
        split = split_task(
            generation.pairs,
            config.split,
            store,
            config.filter.roundtrip_top_k,
            [d.doc_id for d in ok_docs],
            config.llm.questions_per_chunk,
        )
        supervised = supervise_task(split.train, corpus.ref, split.train_docs, config.supervision, store)
    with clock.stage("mine"):
        mined = mine_task(
            supervised.pairs, corpus.ref, config.base_model, config.mine, store, model_sha, prepared.backend
        )
    with clock.stage("train"):
        trained = run_training(config, mined.tuples, mined.pairs_without_negatives, store, split.val, corpus.ref)
    with clock.stage("evaluate"):
        current = read_current(RunStore(store), config.model_name)
        models, shas = compared_models(model_dir, model_sha, trained.model, trained.model_sha, current)
        evaluations = evaluate_all(config, models, shas, split, corpus.ref, trained.dims, prepared.backend)
    with clock.stage("publish"):
        promotion, index_meta = promote_and_publish(
            config, evaluations, current, trained, models, corpus, split, ok_docs, prepared.backend
        )
    report = build_report(
        config=config,
        docs=docs,
        parse_rows=prepared.parsed.rows,
        chunked=prepared.chunked,
        corpus=corpus,
        generation=generation,
        split=split,
        supervised=supervised,
        mined=mined,
        trained=trained,
        evaluations=evaluations,
        index_meta=index_meta,
        timings=clock.seconds,
        dim=dim,
        promotion=promotion,
        new_documents=corpus_changed(RunStore(store), config.model_name, corpus.ref.sha256),
    )
    report.update(out_dir=config.out_dir, config=config.model_dump(mode="json"), config_source=source)
    report.update(embed_backend=prepared.backend, peak_rss_mb=clock.peak_rss_mb, allocator=allocator_in_use())
    write_run_report_task(report, config.out_dir)
    record_run_task(store, config.model_name, corpus.ref.sha256)
    return report
