"""Flow build-embedder: documents in, tuned model + index + before/after report out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

from prefect import flow
from prefect.artifacts import create_link_artifact
from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger

from domain_embed.flows.config import PipelineConfig
from domain_embed.flows.train import publish_training_report, train_embedder
from domain_embed.flows.prepare import Stopwatch, prepare_corpus
from domain_embed.tasks.discover import DocFile, DocsNotFound, discover_documents
from domain_embed.tasks.embed import model_dimension, model_fingerprint, resolve_model
from domain_embed.tasks.beir import beir_fingerprint, load_beir
from domain_embed.tasks.evaluate import evaluate_beir_task, evaluate_task
from domain_embed.flows.folder_config import choose_config, save_folder_config
from domain_embed.tasks.generate import generate_task
from domain_embed.tasks.llm import LLMEndpoint, LLMError, resolve_api_key
from domain_embed.tasks.llm_host import shared_embedded_server
from domain_embed.tasks.lifeline import die_with_worker
from domain_embed.tasks.mine import mine_task
from domain_embed.tasks.model_card import write_model_card
from domain_embed.tasks.model_ref import local_model
from domain_embed.tasks.publish import copy_model, write_index, write_reports
from domain_embed.tasks.promote import corpus_changed, current_model, decide, read_current, record_run, write_current
from domain_embed.tasks.reports import publish_markdown, publish_table
from domain_embed.tasks.run_report import build_report, render_markdown
from domain_embed.tasks.settings import EMBEDDED_LLM, LLMSettings
from domain_embed.tasks.split import split_pairs
from domain_embed.tasks.store import Ref, RunStore
from domain_embed.tasks.supervision import supervise_task
from domain_embed.tasks.train import TrainResult, read_train_result, run_key
from domain_embed.tasks.trainer import matryoshka_dims


FLOW_EXCEPTION_PREFIX = "Flow run encountered an exception:"


def check_config(config: PipelineConfig) -> tuple[list[DocFile], str, str, int]:
    """Fail before any cost, with one clear line: LLM and its key (first: no file is read), docs folder, base model, dims.

    Returns the documents found (hashed once, reused by the parse stage), the model folder, its hash and dimension.
    """
    if config.llm.model != EMBEDDED_LLM:
        check_llm(config.llm)
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
    return docs, model_dir, model_fingerprint(model_dir), dim


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
    if config.llm.model == EMBEDDED_LLM:
        with shared_embedded_server() as endpoint:
            yield endpoint
    else:
        yield LLMEndpoint.from_settings(config.llm)


def llm_settings(config: PipelineConfig) -> LLMSettings:
    """The LLM settings of the run; the embedded server has one slot, so it is asked one request at a time
    (its prompt cache then serves the second question of a chunk without re-reading the chunk)."""
    if config.llm.model == EMBEDDED_LLM:
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
    store = RunStore(config.store_url)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = prepare_corpus(config, docs, model_dir, model_sha, store.url, clock)
    parsed, chunked, corpus = prepared.parsed, prepared.chunked, prepared.corpus
    ok_docs, parse_rows = parsed.ok_docs, parsed.rows
    names = {d.sha256[:16]: d.rel_path for d in ok_docs}

    with clock.stage("generate"):
        with llm_endpoint(config) as endpoint:
            future = generate_task.submit(corpus.ref, llm_settings(config), config.filter, config.base_model, store.url, endpoint)
            generation = future.result()
        if future.state.name == "Cached":  # the stats describe the run that paid; this one paid nothing
            generation.stats = generation.stats.model_copy(update=dict(
                llm_calls=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, cache_hits=generation.stats.chunks_asked))  # fmt: skip

    with clock.stage("split"):
        split = split_pairs(generation.pairs, config.split, store, config.filter.roundtrip_top_k,
                            doc_ids=[d.sha256[:16] for d in ok_docs], per_chunk=config.llm.questions_per_chunk)  # fmt: skip
        logger.info("Split by document: %d train pairs (%d docs), %d validation pairs (%d docs), %d eval pairs (%d docs)",
                    split.train.count, len(split.train_docs), split.val.count, len(split.val_docs), split.eval.count,
                    len(split.eval_docs))  # fmt: skip
        split_rows = [{"set": name, "documents": len(docs), "pairs": ref.count, "dropped": ""}
                      for name, docs, ref in (("train", split.train_docs, split.train), ("validation", split.val_docs, split.val),
                                              ("eval", split.eval_docs, split.eval))]  # fmt: skip
        split_rows += [{"set": "dropped", "documents": "", "pairs": n, "dropped": why} for why, n in split.dropped.items()]
        publish_table("split-report", split_rows, "Pairs per side of the by-document split, and training pairs dropped")  # fmt: skip
        supervised = supervise_task(split.train, corpus.ref, split.train_docs, config.supervision, store.url)

    with clock.stage("mine"):
        mined = mine_task(supervised.pairs, corpus.ref, config.base_model, config.mine, store.url, model_sha=model_sha)

    with clock.stage("train"):
        trained = run_training(config, mined.tuples, mined.pairs_without_negatives, store.url, split.val, corpus.ref)

    with clock.stage("evaluate"):
        dims = trained.dims
        current = read_current(store, config.model_name)
        current_ref = current_model(current)
        models = {"base": model_dir, "tuned": local_model(trained.model)}
        shas = {"base": model_sha, "tuned": trained.model_sha}
        if current_ref and current_ref.sha256 != trained.model_sha:
            models["current"], shas["current"] = local_model(current_ref), current_ref.sha256
        evaluations = {}
        if split.eval.count:
            evaluations["synthetic"] = evaluate_task(models, shas, split.eval, corpus.ref, dims, store.url, label="synthetic")
        else:
            logger.warning("No eval split (a single document?): nothing to compare on")
        if config.eval_dataset:
            user = evaluate_beir_task(
                models, shas, config.eval_dataset, beir_fingerprint(config.eval_dataset), dims, store.url, split.train, corpus.ref
            )
            evaluations[user.label] = user
        synthetic = evaluations.get("synthetic")
        promotion = decide(current, synthetic.results if synthetic else None, synthetic.intervals if synthetic else None)
        logger.info("Promotion: %s", promotion.reason)

    with clock.stage("publish"):
        published = models["tuned"] if promotion.promoted else models.get("current", model_dir)
        if promotion.promoted:
            write_current(store, config.model_name, {
                "model": trained.model.model_dump(), "model_sha": trained.model_sha, "corpus_sha": corpus.ref.sha256,
                "eval_pairs_sha": split.eval.sha256, "ndcg@10": promotion.tuned_ndcg,
            })  # fmt: skip
        copy_model(published, out_dir)
        index_meta = write_index(published, corpus.ref, names, out_dir)
    report = build_report(
        config=config, docs=docs, parse_rows=parse_rows, chunked=chunked, corpus=corpus, generation=generation,
        split=split, supervised=supervised, mined=mined, trained=trained, evaluations=evaluations, index_meta=index_meta,
        timings=clock.seconds, dim=dim, promotion=promotion,
        new_documents=corpus_changed(store, config.model_name, corpus.ref.sha256),
    )  # fmt: skip
    report.update(out_dir=str(out_dir), config=config.model_dump(mode="json"), config_source=source)
    markdown = render_markdown(report)
    write_reports(out_dir, report, markdown)
    write_model_card(out_dir / "model", report)
    record_run(store, config.model_name, corpus.ref.sha256)
    publish_markdown("build-report", markdown, "The run's report: before/after table, NDCG@10 chart, stages, cost")
    with contextlib.suppress(Exception):
        create_link_artifact(key="tuned-model", link=(out_dir / "model").resolve().as_uri(), description="The published model folder")
    logger.info("Done: %s", out_dir / "report.md")
    return report
