"""Flow build-embedder: documents in, tuned model + index + before/after report out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger

from domain_embed.flows.config import PipelineConfig
from domain_embed.flows.train import publish_training_report, train_embedder
from domain_embed.flows.prepare import Stopwatch, prepare_corpus
from domain_embed.tasks.discover import DocFile, DocsNotFound, discover_documents
from domain_embed.tasks.embed import model_dimension, model_fingerprint, resolve_model
from domain_embed.tasks.beir import beir_fingerprint, load_beir
from domain_embed.tasks.evaluate import EvalReport, evaluate_beir_task, evaluate_task
from domain_embed.flows.folder_config import choose_config, save_folder_config
from domain_embed.tasks.generate import GenerationResult, generate_task
from domain_embed.tasks.llm_endpoint import LLMEndpoint, resolve_api_key
from domain_embed.tasks.llm_errors import LLMError
from domain_embed.tasks.llm_host import shared_embedded_server
from domain_embed.tasks.local_llm import EmbeddedLLMError, embedded_model
from domain_embed.tasks.lifeline import die_with_worker
from domain_embed.tasks.mine import mine_task
from domain_embed.tasks.publish import publish_task, write_run_report
from domain_embed.tasks.preflight import check_output_folder, check_store, store_need
from domain_embed.tasks.promote import Promotion, compared_models, corpus_changed, decide, promote, read_current, record_run
from domain_embed.tasks.run_report import build_report
from domain_embed.tasks.settings import EMBEDDED_LLMS, LLMSettings
from domain_embed.tasks.split import SplitResult, split_task
from domain_embed.tasks.store import Ref, RunStore
from domain_embed.tasks.supervision import supervise_task
from domain_embed.tasks.train import TrainResult, read_train_result, run_key
from domain_embed.tasks.trainer import matryoshka_dims


FLOW_EXCEPTION_PREFIX = "Flow run encountered an exception:"


def check_config(config: PipelineConfig) -> tuple[list[DocFile], str, str, int]:
    """Fail before any cost, with one clear line: LLM and its key (first: no file is read), docs folder, base model, dims,
    the output folder and the run store (writable, with room for the run).

    Returns the documents found (hashed once, reused by the parse stage), the model folder, its hash and dimension.
    """
    if config.llm.model not in EMBEDDED_LLMS:
        check_llm(config.llm)
    else:
        check_embedded(config.llm.model)
    docs = discover_documents(config.docs_dir, config.parse.extensions, config.parse.max_file_mb)
    if not any(not d.skipped for d in docs):
        raise DocsNotFound(
            f"no supported document in {config.docs_dir} ({len(docs)} files; supported: {', '.join(config.parse.extensions)})"
        )
    model_dir = resolve_model(config.base_model)
    dim = model_dimension(model_dir)
    matryoshka_dims(dim, config.train.matryoshka_dims)
    if config.eval_dataset:
        load_beir(config.eval_dataset)
    check_output_folder(config.out_dir)
    check_store(config.store_url, store_need(docs, model_dir))
    return docs, model_dir, model_fingerprint(model_dir), dim


def check_embedded(model: str) -> None:
    """An embedded model's packages are installed; a ValueError saying how to install them otherwise."""
    try:
        embedded_model(model).gguf()
    except EmbeddedLLMError as exc:
        raise ValueError(str(exc)) from None


def check_llm(llm: LLMSettings) -> None:
    """The LLM model string names a provider litellm knows, and its key (variable, block or the provider's) resolves."""
    import litellm

    try:
        litellm.get_llm_provider(llm.model, api_base=llm.api_base)
    except Exception as exc:
        raise ValueError(f"unknown LLM '{llm.model}': litellm cannot tell its provider ({type(exc).__name__})") from None
    try:
        key = resolve_api_key(llm)
    except LLMError as exc:
        raise ValueError(str(exc)) from None
    if key is None and not llm.api_base:  # a hosted model: litellm reads the provider's variable, which must be set
        check_provider_key(llm.model)


def check_provider_key(model: str) -> None:
    """The provider's key variable (e.g. OPENAI_API_KEY for gpt-4o-mini) is set; a ValueError naming it otherwise."""
    import litellm

    found = litellm.validate_environment(model=model)
    missing = [name for name in found.get("missing_keys") or [] if "KEY" in name]
    if not found.get("keys_in_environment") and missing:
        raise ValueError(f"no API key for {model}: set {' or '.join(missing)} (or name the variable that holds it with --api-key-env)")


@contextlib.contextmanager
def llm_endpoint(config: PipelineConfig) -> Iterator[LLMEndpoint]:
    """The endpoint litellm calls: the embedded local server, or the configured provider."""
    if config.llm.model in EMBEDDED_LLMS:
        with shared_embedded_server(config.llm.model) as endpoint:
            yield endpoint
    else:
        yield LLMEndpoint.from_settings(config.llm)


def llm_settings(config: PipelineConfig) -> LLMSettings:
    """The LLM settings of the run; the embedded server has one slot, so it is asked one request at a time
    (its prompt cache then serves the second question of a chunk without re-reading the chunk)."""
    if config.llm.model in EMBEDDED_LLMS:
        return config.llm.model_copy(update={"max_concurrency": 1})
    return config.llm


def run_training(
    config: PipelineConfig, tuples: Ref, pairs: Ref, store_url: str, validation: Optional[Ref] = None, corpus: Optional[Ref] = None
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
    config: PipelineConfig, tuples: Ref, pairs: Ref, store_url: str, validation: Optional[Ref], corpus: Optional[Ref]
) -> TrainResult:
    """Run train.deployment as a linked sub-flow on its work pool; its reason is raised if it does not complete.

    A deployment run may execute on another machine with other result storage: its TrainResult is read
    back from the run store, under the run's content key, rather than from Prefect's persisted result.
    """
    from prefect.deployments import run_deployment

    settings = config.train.model_copy(update={"deployment": None})
    flow_run = run_deployment(
        name=config.train.deployment,
        parameters={"tuples": tuples, "pairs": pairs, "base_model": config.base_model, "settings": settings, "store_url": store_url,
                    "validation": validation, "corpus": corpus},
        as_subflow=True,
    )
    if not flow_run.state or not flow_run.state.is_completed():
        raise RuntimeError(sub_flow_failure(config.train.deployment, flow_run.state))
    key = run_key(tuples, pairs, model_fingerprint(resolve_model(config.base_model)), settings, validation, corpus)
    return read_train_result(RunStore(store_url), key)


def sub_flow_failure(deployment: str, state: Optional[State]) -> str:
    """Why a deployment's run did not complete, with the child's own reason, e.g. '... ended Failed: ValueError: ...'."""
    if state is None:
        return f"training deployment {deployment} ended without state"
    reason = (state.message or "").removeprefix(FLOW_EXCEPTION_PREFIX).strip()
    return f"training deployment {deployment} ended {state.name}" + (f": {reason}" if reason else "")


def generate_questions(config: PipelineConfig, corpus: Ref, store_url: str, embeddings: Optional[Ref] = None) -> GenerationResult:
    """Questions for the corpus from the run's LLM; a result reused from the task cache reports no LLM use of its own.

    embeddings: the corpus embeddings under the base model, for the round-trip filter."""
    with llm_endpoint(config) as endpoint:
        future = generate_task.submit(corpus, llm_settings(config), config.filter, config.base_model, store_url, endpoint, embeddings)
        generation = future.result()
    if future.state.name == "Cached":  # the stats describe the run that paid; this one paid nothing
        generation.stats = generation.stats.as_reused()
    return generation


def evaluate_and_decide(
    config: PipelineConfig, current: Optional[dict], models: dict, shas: dict, split: SplitResult, corpus: Ref, dims: list[int],
    store_url: str,
) -> tuple[dict[str, EvalReport], Promotion]:  # fmt: skip
    """Evaluate the models on the synthetic eval split and on the user's dataset; promote on the synthetic one."""
    evaluations = {}
    if split.eval.count:
        evaluations["synthetic"] = evaluate_task(models, shas, split.eval, corpus, dims, store_url, label="synthetic")
    else:
        get_run_logger().warning("No eval split (a single document?): nothing to compare on")
    if config.eval_dataset:
        dataset, dataset_sha = config.eval_dataset, beir_fingerprint(config.eval_dataset)
        user = evaluate_beir_task(models, shas, dataset, dataset_sha, dims, store_url, split.train, corpus)
        evaluations[user.label] = user
    synthetic = evaluations.get("synthetic")
    promotion = decide(current, synthetic.results if synthetic else None, synthetic.intervals if synthetic else None)
    get_run_logger().info("Promotion: %s", promotion.reason)
    return evaluations, promotion


@flow(name="build-embedder", log_prints=False)
def build_embedder(config: PipelineConfig, use_saved_config: bool = False) -> dict:
    """Parse, chunk, generate questions, split by document, mine negatives, train, evaluate, publish.

    use_saved_config: run with the configuration last run (or saved) for config.docs_dir, as unattended runs do."""
    die_with_worker()
    logger = get_run_logger()
    clock = Stopwatch()
    config, source = choose_config(config, use_saved_config)
    logger.info("Configuration: %s; output folder %s", source, config.out_dir)
    docs, model_dir, model_sha, dim = check_config(config)
    logger.info("Saved as the configuration of %s: %s", config.docs_dir, save_folder_config(config))
    store, out_dir = RunStore(config.store_url), Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = prepare_corpus(config, docs, model_dir, model_sha, store.url, clock)
    corpus, ok_docs = prepared.corpus, prepared.parsed.ok_docs
    with clock.stage("generate"):
        generation = generate_questions(config, corpus.ref, store.url, prepared.embeddings)
    with clock.stage("split"):
        split = split_task(generation.pairs, config.split, store.url, config.filter.roundtrip_top_k,
                           [d.sha256[:16] for d in ok_docs], config.llm.questions_per_chunk)  # fmt: skip
        supervised = supervise_task(split.train, corpus.ref, split.train_docs, config.supervision, store.url)
    with clock.stage("mine"):
        mined = mine_task(supervised.pairs, corpus.ref, config.base_model, config.mine, store.url, model_sha=model_sha)
    with clock.stage("train"):
        trained = run_training(config, mined.tuples, mined.pairs_without_negatives, store.url, split.val, corpus.ref)
    with clock.stage("evaluate"):
        current = read_current(store, config.model_name)
        models, shas = compared_models(model_dir, model_sha, trained.model, trained.model_sha, current)
        evaluations, promotion = evaluate_and_decide(config, current, models, shas, split, corpus.ref, trained.dims, store.url)
    with clock.stage("publish"):
        if promotion.promoted:
            promote(store, config.model_name, trained.model, trained.model_sha, promotion, corpus.ref.sha256, split.eval.sha256)
        published = models["tuned"] if promotion.promoted else models.get("current", model_dir)
        index_meta = publish_task(published, corpus.ref, {d.sha256[:16]: d.rel_path for d in ok_docs}, str(out_dir))
    report = build_report(
        config=config, docs=docs, parse_rows=prepared.parsed.rows, chunked=prepared.chunked, corpus=corpus, generation=generation,
        split=split, supervised=supervised, mined=mined, trained=trained, evaluations=evaluations, index_meta=index_meta,
        timings=clock.seconds, dim=dim, promotion=promotion,
        new_documents=corpus_changed(store, config.model_name, corpus.ref.sha256),
    )  # fmt: skip
    report.update(out_dir=str(out_dir), config=config.model_dump(mode="json"), config_source=source)
    logger.info("Done: %s", write_run_report(report, out_dir))
    record_run(store, config.model_name, corpus.ref.sha256)
    return report
