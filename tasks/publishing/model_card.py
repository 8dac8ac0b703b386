"""The published model's card: domain-embed's evaluation tables, training data and recipe in OUT/model/README.md."""

from __future__ import annotations

from pathlib import Path

from ..core.reports import markdown_table
from ..llm.local import EMBEDDED_MODELS
from .report_tables import evaluation_tables, evaluation_title

START = "<!-- domain-embed: start -->"
END = "<!-- domain-embed: end -->"
SOURCES = {
    "llm": "questions written by the LLM",
    "heading": "section headings",
    "ict": "inverse cloze: one sentence as the query for the rest of its chunk",
}


def recipe_rows(report: dict) -> list[dict]:
    """The recipe as (setting, value) rows: loss, steps, batch size, learning rate, schedule, teacher, rotation, checkpoint."""
    training, recipe = report["training"], report.get("recipe", {})
    best = training.get("best_step")
    rows = [
        ("loss", recipe.get("loss", "-")),
        ("steps", f"{training['steps']} ({training['epochs']:.2f} epochs over {training['examples']} examples)"),
        ("batch size", recipe.get("batch_size", "-")),
        ("learning rate", recipe.get("learning_rate", "-")),
        ("schedule", recipe.get("schedule", "-")),
        ("teacher", recipe.get("teacher") or "none"),
        ("output rotation", recipe.get("rotation") or "none"),
        ("checkpoint kept", f"step {best}, best validation NDCG@10" if best is not None else "the last"),
        ("device", training.get("device", "-")),
    ]
    return [
        {"setting": name, "value": str(value)} for name, value in rows
    ]  # str: the table would print 3e-05 as 0.0000


def generator_line(llm: str) -> str:
    """Which model wrote the questions: an embedded model with its name and license, else the litellm model string."""
    if llm in EMBEDDED_MODELS:
        model = EMBEDDED_MODELS[llm]
        return (
            f"Questions written by {model.title} (`llm.model` {llm}, license {model.license}), served on this machine."
        )
    return f"Questions written by `{llm}` through litellm."


def source_note(source: dict | None) -> str:
    """The base model's Hub revision and files' fingerprint, in parentheses; empty when the report has none."""
    if not source:
        return ""
    revision = f"Hugging Face revision `{source['revision']}`, " if source.get("revision") else ""
    return f" ({revision}files' fingerprint `{source['fingerprint'][:16]}`)"


def card_section(report: dict) -> str:
    """The markdown block domain-embed adds to the card, between START and END markers."""
    promotion = report["promotion"]
    held = "the model tuned by this run" if promotion["promoted"] else "not this run's tuned model"
    parts = [
        START,
        "## Fine-tuned by domain-embed\n",
        f"Base model `{report['base_model']}`{source_note(report.get('base_model_source'))}, Matryoshka dims "
        f"{report['matryoshka_dims']}. This folder holds {held}: {promotion['reason']}.\n",
    ]
    for label, evaluation in report["evaluation"].items():
        parts.append(f"### Evaluation on the {evaluation_title(label)}\n\n{evaluation_tables(evaluation, label)}")
    if not report["evaluation"]:
        parts.append("No evaluation: the corpus had a single document, so nothing was held out.\n")
    docs, sources = report["documents"], report.get("training_pairs_by_source", {})
    by_source = (
        "; ".join(f"{source} ({SOURCES.get(source, source)}): {count}" for source, count in sources.items()) or "-"
    )
    parts.append(
        f"### Training data\n\n{report['training']['examples']} training examples from {docs['train']} documents "
        f"({docs['validation']} more chose the checkpoint, {docs['eval']} were held out for evaluation). "
        f"Pairs by source: {by_source}. {generator_line(report.get('llm', '-'))}\n"
    )
    parts.append(f"### Recipe\n\n{markdown_table(recipe_rows(report))}")
    parts.append(END)
    return "\n".join(parts) + "\n"


def write_model_card(model_dir: Path, report: dict) -> Path:
    """Put card_section into MODEL/README.md after the card's title and intro (replacing an earlier one)."""
    readme = Path(model_dir) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    section = card_section(report)
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        body = text.find("\n---\n", 4) + 5 if text.startswith("---\n") else 0
        heading = text.find("\n## ", body)
        at = heading + 1 if heading >= 0 else len(text)
        before = text[:at].rstrip("\n") + "\n\n" if text[:at].strip() else ""
        text = f"{before}{section}\n{text[at:]}".rstrip("\n") + "\n"
    readme.write_text(text, encoding="utf-8")
    return readme
