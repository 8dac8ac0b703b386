"""The real-question benchmark: Debian FAQ question headings over the FAQ's answers and the Debian Reference.

Queries are the FAQ's own question headings (written by people, not by this project). A question's relevant
passage is its answer (and the answers of its sub-questions); the corpus adds every section of the Debian
Reference as distractors. The training documents are that corpus as a user would give it: answers without
their headings, reference pages as they ship. Nothing of a query may appear in a training document.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
REFERENCE_DIR = Path("/usr/share/debian-reference")
PACKAGES = ("debian-faq", "debian-reference-en")
HEADINGS = ("h1", "h2", "h3", "h4", "h5")
NUMBERING = re.compile(r"^\s*(?:[A-Z]|\d+)(?:\.\d+)*\.\s*")


@dataclass
class Section:
    """One section of a DocBook HTML page: its heading and its own text (sub-sections excluded)."""

    sid: str
    title: str
    text: str
    parent: str | None
    children: list[str] = field(default_factory=list)


def ensure_packages() -> None:
    """Install the two Debian packages when their files are missing (the benchmark runs as root in CI)."""
    if (FAQ_DIR / "index.en.html").is_file() and (REFERENCE_DIR / "index.en.html").is_file():
        return
    if shutil.which("apt-get") is None:
        raise SystemExit("debian-faq and debian-reference-en are needed: install them with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, stdout=subprocess.DEVNULL)


def clean(text: str) -> str:
    """Whitespace collapsed to single spaces (paragraph breaks kept as blank lines)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _heading(section) -> str:
    titlepage = section.find("div[@class='titlepage']")
    if titlepage is None:
        return ""
    for tag in HEADINGS:
        found = titlepage.find(f".//{tag}")
        if found is not None:
            return " ".join(found.text_content().split())
    return ""


def _own_text(section) -> str:
    """The section's text without its title page and sub-sections; cross-references lose their quoted titles."""
    import copy

    node = copy.deepcopy(section)
    for child in list(node):
        if child.tag == "div" and child.get("class") in ("titlepage", "section", "toc"):
            node.remove(child)
    for xref in node.iter("a"):
        if xref.get("class") == "xref":  # 'Section 12.1, “What other documentation exists…”' quotes a question
            label = xref.text_content().split(",")[0].split("“")[0].strip()
            for sub in list(xref):
                xref.remove(sub)
            xref.text = label
    for block in node.iter("p", "li", "tr", "pre", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "table"):
        block.tail = "\n\n" + (block.tail or "")
    return clean(node.text_content())


def page_sections(path: Path, prefix: str) -> list[Section]:
    """Every div.section of a page, in document order, with its parent section."""
    from lxml import html

    tree = html.parse(str(path))
    sections: list[Section] = []
    by_node: dict = {}
    for node in tree.iter("div"):
        if node.get("class") != "section":
            continue
        anchor = node.find(".//div[@class='titlepage']//a[@id]")
        sid = f"{prefix}:{anchor.get('id') if anchor is not None else len(sections)}"
        parent = next((by_node[a] for a in node.iterancestors() if a in by_node), None)
        section = Section(sid=sid, title=_heading(node), text=_own_text(node), parent=parent)
        by_node[node] = sid
        sections.append(section)
    index = {s.sid: s for s in sections}
    for s in sections:
        if s.parent:
            index[s.parent].children.append(s.sid)
    return sections


def is_question(title: str) -> bool:
    """A FAQ heading that asks something."""
    return "?" in title


def question_text(title: str) -> str:
    """The heading without its section number ('1.2. What is…' -> 'What is…')."""
    return NUMBERING.sub("", title).strip()


def normalize(text: str) -> str:
    """Case-folded words, for the leak check."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def split_of(query_id: str) -> str:
    """'dev' (recipe choices are judged here) or 'test' (the reported figures): a stable hash, 40 / 60."""
    return "dev" if int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) % 5 < 2 else "test"


@dataclass
class Benchmark:
    """The built benchmark: passages, queries with relevant passages, and training documents."""

    passages: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    relevant: dict[str, list[str]]
    documents: dict[str, str]  # relative file name -> content
    dropped_queries: dict[str, str] = field(default_factory=dict)  # id -> why the query is not used
    sections: dict[str, str] = field(default_factory=dict)  # query id -> the FAQ section it belongs to (split unit)


def build(faq_dir: Path = FAQ_DIR, reference_dir: Path | None = REFERENCE_DIR) -> Benchmark:
    """Queries, passages and training documents from the installed packages' HTML."""
    passages: dict[str, tuple[str, str]] = {}
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    documents: dict[str, str] = {}
    units: dict[str, str] = {}
    for page in sorted(faq_dir.glob("*.en.html")):
        chapter = page.name.removesuffix(".en.html")
        sections = page_sections(page, f"faq-{chapter}")
        index = {s.sid: s for s in sections}
        answers = []
        for s in sections:
            if s.text:
                passages[s.sid] = ("", s.text)
                answers.append(s.text)
        for s in sections:
            if not is_question(s.title):
                continue
            family = [s.sid]
            for sid in family:
                family.extend(index[sid].children)
            judged = [sid for sid in family if sid in passages]
            if judged:
                qid = s.sid
                queries[qid] = question_text(s.title)
                relevant[qid] = judged
                units[qid] = _top_section(index, s.sid)
        if answers:
            documents[f"faq/{chapter}.md"] = "\n\n".join(answers) + "\n"
    for page in sorted(reference_dir.glob("*.en.html")) if reference_dir else []:
        chapter = page.name.removesuffix(".en.html")
        sections = page_sections(page, f"ref-{chapter}")
        for s in sections:
            if s.text:
                passages[s.sid] = (question_text(s.title), s.text)
        if sections:
            documents[f"reference/{page.name}"] = page.read_text(encoding="utf-8", errors="replace")
    benchmark = Benchmark(passages=passages, queries=queries, relevant=relevant, documents=documents, sections=units)
    for qid in leaked_queries(queries, documents):  # the reference links a few FAQ questions by their title
        benchmark.dropped_queries[qid] = "its text occurs in a shipped reference page"
        del queries[qid], relevant[qid], units[qid]
    return benchmark


def _top_section(index: dict[str, Section], sid: str) -> str:
    """The id of the chapter's top-level section that holds sid (a question and its sub-questions share it)."""
    while index[sid].parent:
        sid = index[sid].parent
    return sid


def leaked_queries(queries: dict[str, str], documents: dict[str, str]) -> list[str]:
    """Ids of queries whose text (case-folded words) occurs in any training document."""
    from lxml import html

    bodies = []
    for name, content in documents.items():
        text = html.fromstring(content.encode()).text_content() if name.endswith(".html") else content
        bodies.append(normalize(text))
    return [qid for qid, q in queries.items() if any(normalize(q) in body for body in bodies)]


def write(benchmark: Benchmark, out: Path) -> dict:
    """Write beir-dev/, beir-test/ (BEIR layout, same corpus) and docs/ under out; returns counts."""
    leaks = leaked_queries(benchmark.queries, benchmark.documents)
    if leaks:
        raise AssertionError(
            f"{len(leaks)} queries appear in training documents, e.g. {benchmark.queries[leaks[0]]!r}"
        )
    docs = out / "docs"
    shutil.rmtree(docs, ignore_errors=True)
    for name, content in benchmark.documents.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(content, encoding="utf-8")
    corpus = "".join(
        json.dumps({"_id": pid, "title": title, "text": text}, ensure_ascii=False) + "\n"
        for pid, (title, text) in benchmark.passages.items()
    )
    counts = {
        "passages": len(benchmark.passages),
        "documents": len(benchmark.documents),
        "queries_dropped": len(benchmark.dropped_queries),
    }
    for split in ("dev", "test"):
        folder = out / f"beir-{split}"
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8")
        ids = [qid for qid in benchmark.queries if split_of(qid) == split]
        (folder / "queries.jsonl").write_text(
            "".join(json.dumps({"_id": q, "text": benchmark.queries[q]}, ensure_ascii=False) + "\n" for q in ids),
            encoding="utf-8",
        )
        rows = [f"{q}\t{pid}\t1\n" for q in ids for pid in benchmark.relevant[q]]
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows), encoding="utf-8")
        counts[f"{split}_queries"] = len(ids)
    return counts
