"""What every FAQ domain shares: pages of questions and answers, reference documents as distractors, passages of bounded length, and question titles scrubbed from the answers that quote them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from benchmarks.faq.debian import Benchmark, Section, clean, leaked_queries, normalize

WORD_LIMIT = 250  # words per passage at most (a longer answer becomes several passages, all relevant)
SCRUBBED = "another question"  # what a question title quoted in an answer becomes
NUMBER = re.compile(r"^\s*(?:\d+(?:\.\d+)*[.:]?|\(\d+\)|[A-Z](?:\.\d+)+\.?)\s+")
ZSH_TAIL = ("Acknowledgments:", "Copyright Information:")  # the FAQ's closing parts, after the last entry
SED_GROUP = re.compile(r"   [A-Z][A-Z ,]+[A-Z](?: \([a-z ]+\))?")  # 'CHANGING BLOCKS (consecutive lines)' in chapter 4
QUESTION_WORDS = {
    "how",
    "what",
    "why",
    "when",
    "where",
    "which",
    "who",
    "can",
    "could",
    "does",
    "do",
    "is",
    "are",
    "should",
    "shouldn't",
    "did",
    "will",
    "would",
}


@dataclass
class FaqPage:
    """One FAQ document: its sections in order, which of them are questions, the split unit of each question."""

    name: str  # training document file name, relative to the domain's docs folder
    sections: list[Section]
    questions: list[str]  # sids
    units: dict[str, str] = field(default_factory=dict)  # sid -> FAQ section (split unit)


@dataclass
class Reference:
    """A distractor document: its training file and its sections."""

    name: str
    content: str
    sections: list[Section]


def strip_number(title: str) -> str:
    """A heading without its number ('7.1 Why…', '3.1: Why…', '(1) How…' -> the question)."""
    return NUMBER.sub("", " ".join(title.split())).strip()


def asks(title: str) -> bool:
    """A heading that is a question: it has a question mark or opens with a question word."""
    words = title.split()
    return "?" in title or bool(words) and words[0].casefold() in QUESTION_WORDS


def link_sections(sections: list[Section]) -> list[Section]:
    """Fill each section's children from the parents."""
    index = {s.sid: s for s in sections}
    for s in sections:
        if s.parent:
            index[s.parent].children.append(s.sid)
    return sections


def family(index: dict[str, Section], sid: str) -> list[str]:
    """The section and all its descendants, in order."""
    found = [sid]
    for member in found:
        found.extend(index[member].children)
    return found


def chunks(text: str, limit: int = WORD_LIMIT) -> list[str]:
    """The text as passages of at most `limit` words: paragraphs grouped, an over-long paragraph cut by words."""
    pieces = []
    for paragraph in text.split("\n\n"):
        words = paragraph.split()
        pieces.extend(" ".join(words[i : i + limit]) for i in range(0, len(words), limit))
    groups: list[list[str]] = []
    size = limit
    for piece in pieces:
        words = len(piece.split())
        if size + words > limit:
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += words
    return ["\n\n".join(group) for group in groups]


def scrubber(titles: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces every occurrence of a title (its words, any punctuation between) in a text."""
    patterns = []
    for title in sorted(set(titles), key=len, reverse=True):
        words = normalize(title).split()
        if words:
            patterns.append(
                (" ".join(words), re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)\??", re.I))
            )

    def scrub(text: str) -> str:
        words = normalize(text)
        for plain, pattern in patterns:
            if plain in words:
                text = pattern.sub(SCRUBBED, text)
                words = normalize(text)
        return text

    return scrub


def add_passages(benchmark: Benchmark, sid: str, title: str, text: str) -> list[str]:
    """Add the text's passages under sid (sid#1, sid#2… when cut); returns their ids."""
    parts = chunks(text)
    ids = [sid] if len(parts) == 1 else [f"{sid}#{i}" for i in range(1, len(parts) + 1)]
    for pid, part in zip(ids, parts):
        benchmark.passages[pid] = (title, part)
    return ids


def add_page(benchmark: Benchmark, page: FaqPage, scrub: Callable[[str], str]) -> None:
    """The page's answers as passages and one training document; its questions as queries."""
    index = {s.sid: s for s in page.sections}
    ids: dict[str, list[str]] = {}
    texts = []
    for s in page.sections:
        text = clean(scrub(s.text))
        if text:
            ids[s.sid] = add_passages(benchmark, s.sid, "", text)
            texts.append(text)
    for sid in page.questions:
        judged = [pid for member in family(index, sid) for pid in ids.get(member, [])]
        if judged:
            benchmark.queries[sid] = strip_number(index[sid].title)
            benchmark.relevant[sid] = judged
            benchmark.sections[sid] = page.units.get(sid, sid)
    if texts:
        benchmark.documents[page.name] = "\n\n".join(texts) + "\n"


def assemble(pages: list[FaqPage], references: list[Reference]) -> Benchmark:
    """The benchmark from FAQ pages and distractor documents; leaked queries dropped with the document named."""
    scrub = scrubber(strip_number(s.title) for p in pages for s in p.sections if s.sid in p.questions)
    benchmark = Benchmark(passages={}, queries={}, relevant={}, documents={})
    for page in pages:
        add_page(benchmark, page, scrub)
    for ref in references:
        for s in ref.sections:
            if s.text:
                add_passages(benchmark, s.sid, strip_number(s.title), s.text)
        benchmark.documents[ref.name] = ref.content
    for name, content in benchmark.documents.items():
        for qid in leaked_queries(benchmark.queries, {name: content}):
            benchmark.dropped_queries[qid] = f"its text occurs in {name}"
            del benchmark.queries[qid], benchmark.relevant[qid], benchmark.sections[qid]
    return benchmark


# --- HTML (texinfo manuals, SQLite pages) ---
