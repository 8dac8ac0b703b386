"""What a run checks before it pays, in one clear line each: the LLM and its key, the documents, the base model and
its dims, the user's dataset, the output folder and the run store."""

from __future__ import annotations

from .core.preflight import check_output_folder, check_store, store_need
from .embedding.models import model_dimension, model_fingerprint, resolve_model
from .evaluation.beir import load_beir
from .ingest.discover import DocFile, DocsNotFound, discover_documents
from .llm.endpoint import resolve_api_key
from .llm.errors import LLMError
from .llm.local import EmbeddedLLMError, embedded_model
from .settings import EMBEDDED_LLMS, LLMSettings, PipelineConfig
from .training.trainer import matryoshka_dims


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
    if config.train.teacher:
        resolve_model(config.train.teacher)
    dim = model_dimension(model_dir)
    matryoshka_dims(dim, config.train.matryoshka_dims)
    if config.eval_dataset:
        load_beir(config.eval_dataset)
    check_output_folder(config.out_dir)
    check_store(config.store_url, store_need([(d.ext, d.size) for d in docs if not d.skipped], model_dir))
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
        raise ValueError(
            f"unknown LLM '{llm.model}': litellm cannot tell its provider ({type(exc).__name__})"
        ) from None
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
        raise ValueError(
            f"no API key for {model}: set {' or '.join(missing)} (or name the variable that holds it with --api-key-env)"
        )
