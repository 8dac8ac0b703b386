"""Training pairs that need no LLM: human-written section headings over their sections, and inverse-cloze pairs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from ..core.caching import code_and_inputs
from ..core.objects import Ref, read_jsonl, sha256_bytes
from ..core.reports import publish_table
from ..core.store import RunStore
from ..settings import SupervisionSettings

NUMBERING = re.compile(r"^\s*(?:(?:chapter|section|appendix|part)\s+)?(?:[A-Z]|\d+)(?:\.\d+)*\.?\s+", re.I)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
GENERIC_HEADINGS = {
    "note",
    "notes",
    "tip",
    "tips",
    "warning",
    "caution",
    "important",
    "example",
    "examples",
    "see also",
    "table of contents",
    "contents",
    "introduction",
    "overview",
    "summary",
    "description",
    "synopsis",
    "options",
}
MIN_HEADING_WORDS = 2
ICT_WORDS = (6, 40)  # a cloze sentence has this many words
ICT_MIN_REST_WORDS = 30  # and leaves at least this many words of passage


def heading_query(section: str) -> str | None:
    """A section heading as a query: numbering dropped; None when too short, generic or not words."""
    title = " ".join(NUMBERING.sub("", section).split()).strip(" :.-")
    words = re.findall(r"[^\W\d_]{2,}", title)
    if len(words) < MIN_HEADING_WORDS or title.casefold() in GENERIC_HEADINGS or len(title) > 200:
        return None
    return title


def without(text: str, part: str) -> str:
    """text with every occurrence of part removed, whitespace tidied."""
    return re.sub(r"[ \t]+\n", "\n", text.replace(part, " ")).strip()


def heading_pairs(chunks: Iterable[dict]) -> list[dict]:
    """(heading, section text) rows: each chunk is a positive for the heading of its section, the heading cut out."""
    rows = []
    for chunk in chunks:
        section = chunk.get("section") or ""
        query = heading_query(section)
        if query is None:
            continue
        positive = without(without(chunk["text"], section), query)
        if len(positive.split()) >= ICT_MIN_REST_WORDS // 2:
            rows.append(
                {
                    "query": query,
                    "positive": positive,
                    "chunk_id": chunk["chunk_id"],
                    "doc_id": chunk["doc_id"],
                    "source": "heading",
                }
            )
    return rows


def ict_pairs(chunks: Iterable[dict], seed: int = 13) -> list[dict]:
    """Inverse cloze (Lee et al., 2019): one sentence of each chunk is the query, the rest of the chunk its positive.

    The sentence is picked by a stable hash of the chunk, so adding a document never changes other chunks' pairs.
    """
    rows = []
    for chunk in chunks:
        sentences = [
            s.strip() for s in SENTENCE.split(chunk["text"]) if ICT_WORDS[0] <= len(s.split()) <= ICT_WORDS[1]
        ]
        if not sentences:
            continue
        pick = sentences[int(sha256_bytes(f"{seed}:{chunk['chunk_id']}".encode())[:8], 16) % len(sentences)]
        rest = without(chunk["text"], pick)
        if len(rest.split()) >= ICT_MIN_REST_WORDS:
            rows.append(
                {
                    "query": pick,
                    "positive": rest,
                    "chunk_id": chunk["chunk_id"],
                    "doc_id": chunk["doc_id"],
                    "source": "ict",
                }
            )
    return rows


def supervised_pairs(chunks: list[dict], train_docs: set[str], settings: SupervisionSettings) -> list[dict]:
    """The LLM-free pairs of the training documents' chunks that the settings ask for."""
    mine = [c for c in chunks if c["doc_id"] in train_docs]
    rows = heading_pairs(mine) if settings.headings else []
    return rows + (ict_pairs(mine, settings.seed) if settings.inverse_cloze else [])


class SupervisionResult(BaseModel):
    """All training pairs (the LLM's and the LLM-free ones) and how many came from each source."""

    pairs: Ref
    sources: dict[str, int]


def add_supervision(
    llm_pairs: Ref, corpus: Ref, train_docs: list[str], settings: SupervisionSettings, store: RunStore
) -> SupervisionResult:
    """The LLM's training pairs plus the LLM-free pairs of the training documents, in one pair file."""
    llm_rows = [{**row, "source": "llm"} for row in read_jsonl(llm_pairs)]
    rows = llm_rows + supervised_pairs(read_jsonl(corpus), set(train_docs), settings)
    return SupervisionResult(
        pairs=store.put_jsonl("pairs-supervised", rows), sources=dict(Counter(r["source"] for r in rows))
    )


@task(name="supervise", cache_policy=code_and_inputs(), persist_result=True)
def supervise_task(
    llm_pairs: Ref, corpus: Ref, train_docs: list[str], settings: SupervisionSettings, store_url: str
) -> SupervisionResult:
    """Add heading and inverse-cloze pairs to the LLM's; publishes the training data mix."""
    result = add_supervision(llm_pairs, corpus, train_docs, settings, RunStore(store_url))
    get_run_logger().info("Training pairs by source: %s", result.sources)
    publish_table(
        "supervision-report",
        [{"source": k, "pairs": v} for k, v in result.sources.items()],
        "Training pairs by source: LLM questions, section headings, inverse-cloze sentences",
    )
    return result
