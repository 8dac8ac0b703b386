"""Settings of the stages: one pydantic model per stage, read by the stage modules, and PipelineConfig, which assembles
them into everything a build-embedder run needs (also the run form in the Prefect UI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EMBEDDED_LLM = "embedded"
EMBEDDED_LARGE_LLM = "embedded-large"
EMBEDDED_LLMS = (EMBEDDED_LLM, EMBEDDED_LARGE_LLM)


class Settings(BaseModel):
    """A settings group: an unknown field is an error naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ParseSettings(Settings):
    """How documents are found and parsed."""

    strategy: Literal["fast", "auto", "hi_res"] = Field("fast", description="unstructured partition strategy")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are reported and not read")
    max_inflated_mb: float = Field(
        200.0, gt=0, description="Zip-based documents (.docx) that would inflate past this are reported and not parsed"
    )
    extensions: list[str] = Field(
        [".pdf", ".html", ".htm", ".md", ".markdown", ".docx", ".txt", ".text", ".rst"],
        description="File extensions that are parsed; others are reported as unsupported",
    )


class ChunkSettings(Settings):
    """Token-aware chunking with the base model's tokenizer."""

    chunk_tokens: int = Field(200, ge=16, description="Chunk size in base-model tokens (kept under max_seq_length)")
    overlap_tokens: int = Field(24, ge=0, description="Token overlap between neighbouring chunks")
    min_tokens: int = Field(24, ge=1, description="Chunks shorter than this are dropped as too short")


class LLMSettings(Settings):
    """The question-generating LLM, called through litellm."""

    model: str = Field(
        EMBEDDED_LLM,
        description="'embedded' (SmolLM2-135M, a local GGUF model served on 127.0.0.1), 'embedded-large' "
        "(Qwen2.5-Coder-1.5B, the large-llm extra) or any litellm model string, e.g. gpt-4o-mini, ollama/llama3.1",
    )
    api_base: str | None = Field(None, description="Override the provider's endpoint")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key")
    api_key_secret_block: str | None = Field(None, description="Prefect Secret block holding the API key")
    chunk_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Fraction of chunks sent to the LLM (a stable hash sample: adding documents never "
        "changes which earlier chunks are picked); the rest stay in the corpus as retrieval distractors",
    )
    prompt_style: Literal["auto", "json", "single"] = Field(
        "auto",
        description="'json': n questions per call as JSON; 'single': one plain question per call (small local "
        "models follow it far better); 'auto': single for both embedded models, json otherwise",
    )
    questions_per_chunk: int = Field(2, ge=1, le=10, description="Questions kept per chunk")
    few_shot: int = Field(
        0,
        ge=0,
        le=16,
        description="Worked examples in the prompt, taken from the corpus: section headings people wrote "
        "over the start of their section (0: the json prompt shows one fixed example, the single one none; off by "
        "default: both embedded generators then wrote titles, not questions)",
    )
    candidates_per_chunk: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Questions asked for per chunk; the training documents keep the questions_per_chunk "
        "best by the round-trip rank, held-out documents the first ones (empty: questions_per_chunk)",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="LLM sampling temperature (higher: more varied questions)")
    max_tokens: int = Field(256, ge=16, description="Completion token cap per call (one-question prompts cap at 64)")
    requests_per_minute: float = Field(500, gt=0, description="Client-side request rate limit")
    tokens_per_minute: float = Field(200_000, gt=0, description="Client-side token rate limit (prompt + completion)")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight at once")
    max_cost_usd: float | None = Field(
        None, ge=0, description="Refuse to start a run whose plan (`domain-embed plan`) costs more than this in USD"
    )
    timeout_s: float = Field(60, gt=0, description="Per-request timeout")
    max_attempts: int = Field(6, ge=1, description="Attempts per request on transient faults")
    concurrency_limit: str | None = Field(None, description="Prefect global concurrency limit of this provider's runs")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry wait; doubles each attempt, with jitter")
    max_backoff_s: float = Field(60, gt=0, description="Longest wait between attempts, Retry-After included")
    max_consecutive_failures: int = Field(
        10,
        ge=1,
        description="Stop generating when this many requests in a row get no answer (connection error, timeout, "
        "5xx; after one, requests go one at a time, 2 s apart at most, until one is answered; requests already in flight "
        "when it failed count once) or this many chunks in a row are rejected",
    )


class FilterSettings(Settings):
    """Which generated questions are kept."""

    min_chars: int = Field(12, ge=1, description="Drop questions shorter than this many characters")
    max_chars: int = Field(300, ge=10, description="Drop questions longer than this many characters")
    max_copied_words: int = Field(12, ge=3, description="Drop questions copying this many consecutive chunk words")
    near_duplicate_jaccard: float = Field(0.8, gt=0, le=1, description="Word Jaccard marking questions as duplicates")
    roundtrip_top_k: int = Field(
        0,
        ge=0,
        description="Keep a question only if its chunk ranks in the base model's top k (0 = off; off by default: on the "
        "FAQ dev queries the 40% of questions it dropped were worth +0.022 NDCG@10)",
    )


class SplitSettings(Settings):
    """Train / validation / eval split by document."""

    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of documents held out for evaluation")
    val_fraction: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="Fraction of documents whose questions choose the best checkpoint (neither trained on "
        "nor evaluated); 0: keep the last checkpoint",
    )
    seed: int = Field(13, description="Seed of the document split's hash")


class SupervisionSettings(Settings):
    """Training pairs that cost no LLM call, taken from the training documents themselves."""

    headings: bool = Field(True, description="Section headings (human-written) as queries for their sections' text")
    inverse_cloze: bool = Field(True, description="One sentence of each chunk as a query for the rest of the chunk")
    seed: int = Field(13, description="Seed of the inverse-cloze sentence choice")


class MineSettings(Settings):
    """Hard-negative mining with FAISS and the base model."""

    negatives_per_query: int = Field(1, ge=0, description="Hard negatives per (query, positive) pair")
    max_score_ratio: float = Field(
        0.95, gt=0, le=1, description="A negative must score below this fraction of the positive (TopK-PercPos)"
    )
    range_min: int = Field(0, ge=0, description="Skip this many top-ranked candidates")
    range_max: int = Field(50, ge=1, description="Consider candidates up to this rank")
    exclude_same_document: bool = Field(False, description="Never take a negative from the positive's document")
    exact_search_max: int = Field(200_000, ge=1, description="Exact index up to this many chunks, approximate above")
    seed: int = Field(13, description="Seed of the IVF training sample and of the recall-check query sample")
    near_duplicate_cosine: float = Field(
        0.98,
        gt=0,
        le=1,
        description="A candidate this close (cosine) to the positive chunk is a near-duplicate, never a negative",
    )
    approximate_index: Literal["hnsw", "ivf"] = Field("hnsw", description="Index used above exact_search_max chunks")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build-time beam width")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW search-time beam width (raised to range_max when lower)")
    ivf_nprobe: int = Field(32, ge=1, description="IVF lists visited per query (lists = 4 x sqrt(chunks))")
    recall_sample: int = Field(
        256, ge=1, description="Queries sampled to measure the index's recall@range_max against exact search"
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per embedding batch")


class TrainSettings(Settings):
    """Fine-tuning hyper-parameters."""

    epochs: float | None = Field(
        None,
        gt=0,
        description="Passes over the training rows; empty: from the data, enough for min_steps optimizer steps "
        "(at most max_epochs), so a few hundred pairs still train long enough to matter",
    )
    min_steps: int = Field(
        60,
        ge=1,
        description="With epochs empty: train at least this many optimizer steps (on the FAQ dev queries 60 steps did as well as 120)",
    )
    max_epochs: float = Field(8.0, gt=0, description="With epochs empty: never more passes than this over the rows")
    batch_size: int = Field(
        32, ge=2, description="Rows per optimizer step; each query's in-batch negatives are the others' passages"
    )
    learning_rate: float = Field(
        3e-5, gt=0, description="Peak learning rate (AdamW, cosine decay); low, to keep what the base model knows"
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps warming the learning rate up from 0")
    teacher: str | None = Field(
        None,
        description="A stronger embedder whose in-batch scores the model learns to match (score distillation over "
        "every pair of the batch), e.g. all-mpnet-base-v2; empty: plain MultipleNegativesRankingLoss. Off by default: on "
        "the Debian FAQ dev queries it did not lift NDCG@10 at full dimension and its embeddings cost ~18 CPU minutes",
    )
    distill_weight: float = Field(1.0, ge=0, description="Weight of the teacher's KL term against the ranking loss")
    rank_weight: float = Field(
        1.0,
        ge=0,
        description="With a teacher: weight of the ranking loss on the generated labels (0: learn from the teacher's scores alone)",
    )
    matryoshka_dims: list[int] | None = Field(None, description="Default: full dim halved down to 64")
    matryoshka_weights: list[float] | None = Field(
        None, description="Loss weight per Matryoshka dim (largest first); default 1 each"
    )
    cached_mnrl_mini_batch: int | None = Field(
        None,
        description="Use CachedMultipleNegativesRankingLoss with this mini-batch (no teacher): bigger batches than memory holds",
    )
    max_seq_length: int | None = Field(None, description="Tokens per text; default: the base model's")
    seed: int = Field(13, description="Seed of shuffling, sampling and initialisation")
    evaluations: int = Field(
        4,
        ge=0,
        description="Times the validation split is scored during training; the best checkpoint is kept (0: the last)",
    )
    validation_pool: int | None = Field(
        2000,
        ge=1,
        description="Chunks a validation pass ranks its queries among: their relevant chunks and a seeded sample of the "
        "rest (None: every chunk; each pass embeds the pool with the current weights)",
    )
    deployment: str | None = Field(
        None, description="Run training as this deployment (e.g. 'train-embedder/gpu'); in-process when empty"
    )
    processes: int = Field(
        1,
        ge=0,
        description="Data-parallel training processes on the training machine, one per GPU (DDP; in-batch "
        "negatives gathered across them; the global batch stays batch_size, rounded down to a multiple of the processes); "
        "0: one per visible GPU; 1: train in the task's own process",
    )
    rotate: bool = Field(
        True,
        description="After training, rotate the output space onto the principal axes of the corpus's embeddings (an "
        "orthogonal layer: full-dimension scores unchanged) so that truncated Matryoshka embeddings keep the directions "
        "along which the passages differ most",
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding)")
    bf16: bool | None = Field(None, description="bf16 autocast in training; empty: where the chip has bf16 natively")
    compile: bool = Field(
        False,
        description="torch.compile the transformer (dynamic shapes). Compiling costs about a minute up front, so it can "
        "only pay on a GPU for long runs; check with benchmarks/stages/train_throughput.py --compile. Leave off on CPU",
    )


class RunnerSettings(Settings):
    """Where the heavy stages (parse, chunk, corpus embedding) run, and in how many tasks."""

    address: str | None = Field(
        None,
        description="Dask scheduler address (e.g. tcp://scheduler:8786): parse, chunk and corpus embedding run "
        "on that cluster through prefect-dask's DaskTaskRunner; empty: threads in the flow's own process",
    )
    documents_per_task: int = Field(
        100,
        ge=1,
        description="Documents per parse or chunk task: larger batches cost less orchestration per document, "
        "smaller ones spread better over workers (each document is still cached on its own)",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="Tasks run at once in the flow's own process (no address): empty means one per CPU core. "
        "More threads than cores only contend for Python's GIL",
    )


class PipelineConfig(Settings):
    """Everything a build-embedder run needs."""

    docs_dir: str = Field(..., description="Folder of documents (PDF, HTML, Markdown, DOCX, TXT)")
    out_dir: str | None = Field(
        None,
        description="Where model/, index/, report.json and report.md are written; empty: the docs folder's own "
        "folder, outputs/<folder name>-<hash of its path> beside the run store, which no other folder's run writes to",
    )
    store_url: str | None = Field(
        None, description="Run store (folder or fsspec URL); default ~/.cache/domain-embed/store"
    )
    model_name: str = Field(
        "default", description="Name of this model line: the run store keeps one `current` (promoted) model per name"
    )
    base_model: str = Field(
        "all-MiniLM-L6-v2", description="Model folder, packaged model name, or Hugging Face id ORG/NAME[@revision]"
    )
    eval_dataset: str | None = Field(None, description="BEIR-layout folder of your own labelled queries")
    parse: ParseSettings = Field(ParseSettings(), description="How documents are found and parsed")
    chunk: ChunkSettings = Field(ChunkSettings(), description="How documents are cut into chunks")
    llm: LLMSettings = Field(LLMSettings(), description="The LLM that writes questions for the chunks")
    filter: FilterSettings = Field(FilterSettings(), description="Which generated questions are kept")
    split: SplitSettings = Field(SplitSettings(), description="Train / validation / eval split by document")
    supervision: SupervisionSettings = Field(SupervisionSettings(), description="Training pairs that cost no LLM call")
    mine: MineSettings = Field(MineSettings(), description="Hard-negative mining")
    train: TrainSettings = Field(TrainSettings(), description="Fine-tuning hyper-parameters")
    runner: RunnerSettings = Field(RunnerSettings(), description="Where the heavy stages run, and in how many tasks")
