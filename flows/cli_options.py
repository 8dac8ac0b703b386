"""The run options shared by `run` and `config save`: the parser's options and the PipelineConfig they make."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

    from ..tasks.settings import PipelineConfig


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The docs folder and the settings options of `run` (and of `config save`)."""
    run.add_argument("docs", help="Folder of documents (PDF, HTML, Markdown, DOCX, TXT)")
    run.add_argument(
        "--out",
        help="Output folder: model/, index/, report.json, report.md (default: the docs folder's own, "
        "outputs/<folder name>-<hash of its path> beside the run store)",
    )
    run.add_argument("--config", help="JSON file with PipelineConfig fields (command-line options win)")
    run.add_argument("--store", help="Run store folder or fsspec URL (default ~/.cache/domain-embed/store)")
    run.add_argument(
        "--base-model",
        help="SentenceTransformer folder, packaged model name, or Hugging Face id ORG/NAME[@revision] "
        "(from the local Hugging Face cache; downloaded only with --online)",
    )
    run.add_argument(
        "--online",
        action="store_true",
        help="Allow the network: download a Hugging Face model missing from the local cache "
        "(DOMAIN_EMBED_ONLINE=1 does the same; the default is offline)",
    )
    run.add_argument("--llm", help="litellm model string, or 'embedded' for the local model")
    run.add_argument("--api-base", help="LLM endpoint override")
    run.add_argument("--api-key-env", help="Environment variable that holds the LLM API key")
    run.add_argument("--questions-per-chunk", type=int, help="Questions kept per chunk sent to the LLM (default 2)")
    run.add_argument("--chunk-fraction", type=float, help="Fraction of chunks sent to the LLM (stable sample)")
    run.add_argument("--rpm", type=float, help="LLM requests per minute limit")
    run.add_argument("--tpm", type=float, help="LLM tokens per minute limit")
    run.add_argument(
        "--max-cost",
        type=float,
        help="Refuse to start when the plan (domain-embed plan) costs more than this many USD of LLM calls",
    )
    run.add_argument(
        "--epochs",
        type=float,
        help="Passes over the training rows (default: train.min_steps to train.max_steps steps, 60)",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        help="Rows per optimizer step; each query's in-batch negatives are the others' passages (default 32)",
    )
    run.add_argument("--dims", help="Matryoshka dims, e.g. 384,256,128,64")
    run.add_argument("--eval-dataset", help="BEIR-layout folder of your own labelled queries")
    run.add_argument("--train-deployment", help="Train as this deployment, e.g. train-embedder/gpu")
    run.add_argument(
        "--embed-backend",
        choices=("auto", "torch", "onnx"),
        help="Inference backend outside training (default auto: the faster of the two on this CPU, timed once; "
        "PyTorch, untimed, for a corpus under 1,000 chunks)",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """A PipelineConfig from --config plus command-line overrides; invalid settings raise one ValueError line."""
    from pydantic import ValidationError

    from ..tasks.settings import PipelineConfig

    data = read_config_file(args.config) if args.config else {}
    data.update({"docs_dir": args.docs, "out_dir": args.out})
    overrides = {
        ("store_url",): ("--store", args.store),
        ("base_model",): ("--base-model", args.base_model),
        ("eval_dataset",): ("--eval-dataset", args.eval_dataset),
        ("llm", "model"): ("--llm", args.llm),
        ("llm", "api_base"): ("--api-base", args.api_base),
        ("llm", "api_key_env"): ("--api-key-env", args.api_key_env),
        ("llm", "questions_per_chunk"): ("--questions-per-chunk", args.questions_per_chunk),
        ("llm", "chunk_fraction"): ("--chunk-fraction", args.chunk_fraction),
        ("llm", "requests_per_minute"): ("--rpm", args.rpm),
        ("llm", "tokens_per_minute"): ("--tpm", args.tpm),
        ("llm", "max_cost_usd"): ("--max-cost", args.max_cost),
        ("train", "epochs"): ("--epochs", args.epochs),
        ("train", "batch_size"): ("--batch-size", args.batch_size),
        ("train", "matryoshka_dims"): ("--dims", [int(d) for d in args.dims.split(",")] if args.dims else None),
        ("train", "deployment"): ("--train-deployment", args.train_deployment),
        ("embed", "backend"): ("--embed-backend", args.embed_backend),
    }
    given = {path: option for path, (option, value) in overrides.items() if value is not None}
    for path, (_, value) in overrides.items():
        if value is None:
            continue
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(settings_error(exc, given, args.config)) from None


def read_config_file(path: str) -> dict:
    """The JSON object of a --config file; a malformed one is a ValueError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of PipelineConfig fields, found {type(data).__name__}")
    return data


def settings_error(exc: ValidationError, options: dict[tuple, str], config_file: str | None) -> str:
    """Every invalid setting of a pydantic ValidationError on one line: where it came from, the field, the rule."""
    parts = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        field = ".".join(loc)
        if loc in options:
            where = f"{options[loc]} ({field})"
        else:
            where = f"{config_file}: {field}" if config_file else field
        if error["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown setting (not a field of {type_name(loc)})")
        else:
            parts.append(f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {error['input']!r}")
    return "invalid settings: " + "; ".join(parts)


def type_name(loc: tuple[str, ...]) -> str:
    """The settings model a field path belongs to, e.g. ('train', 'x') -> 'TrainSettings'."""
    from ..tasks.settings import PipelineConfig

    model = PipelineConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            break
        model = field.annotation
    return model.__name__
