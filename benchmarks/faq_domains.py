"""The multi-domain real-question benchmark: FAQs that ship in Debian packages, one domain each.

Each domain's queries are its FAQ's own questions (written by people, not by this project); a question's relevant
passages are its answer (cut into passages of a few hundred words, all relevant). The corpus adds sections of other
documentation of the same software as distractors. The training documents are that corpus as a user would give it:
the answers without their questions (titles of other questions scrubbed from them), the distractor documents as
they ship or as extracted text. A query whose text still occurs in a training document is dropped, with the reason.

    python -m benchmarks.faq_domains --out DIR [--domains perl r ...]

writes DIR/docs/<domain>/ (training documents) and DIR/<domain>/beir-{train,dev,test}/ (BEIR layout) per domain;
whole FAQ sections go to one split (split_by_section).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import html as entities
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import debian_faq
from benchmarks.debian_faq import Benchmark, Section, clean, leaked_queries, normalize

PERL_POD_GLOB = "/usr/share/perl/5.*/pod"
PERL_LIB_GLOBS = ("/usr/share/perl/5.*", "/usr/share/perl5")  # where the further FAQs may lie (newest first)
PERL_MORE_FAQS = ("pod/perlunifaq.pod", "Net/libnetFAQ.pod", "ExtUtils/MakeMaker/FAQ.pod")  # relative to those
R_MANUALS = (Path("/usr/share/R/doc/manual"), Path("/usr/share/doc/r-doc-html/manual"))
SQLITE_DIR = Path("/usr/share/doc/sqlite3")
GIT_DIR = Path("/usr/share/doc/git-doc")
ZSH_DIR = Path("/usr/share/doc/zsh-common")
SED_FAQ = Path("/usr/share/doc/sed/sedfaq.txt.gz")
SED_INFO = Path("/usr/share/info/sed.info.gz")

PERL_REFERENCE = ("perlsyn", "perldata", "perlop", "perlsub", "perlvar", "perlre")
R_REFERENCE = ("R-intro.html",)
SQLITE_REFERENCE = (
    "datatype3",
    "lockingv3",
    "wal",
    "foreignkeys",
    "lang_transaction",
    "queryplanner",
    "isolation",
    "atomiccommit",
    "autoinc",
    "quirks",
    "whentouse",
    "limits",
)
GIT_REFERENCE = (
    "git-commit",
    "git-rebase",
    "git-push",
    "git-merge",
    "git-reset",
    "git-stash",
    "git-fetch",
    "gitignore",
)
ZSH_REFERENCE = (
    "Shell-Grammar",
    "Redirection",
    "Expansion",
    "Prompt-Expansion",
    "Functions",
    "Files",
    "Conditional-Expressions",
    "Arithmetic-Evaluation",
    "Jobs-_0026-Signals",
    "Invocation",
)
SED_INFO_SKIPPED = ("Top", "GNU Free Documentation License", "Concept Index", "Command and Option Index")

PACKAGES: dict[str, tuple[str, ...]] = {
    "debian": debian_faq.PACKAGES,
    "perl": ("perl-doc",),
    "r": ("r-doc-html",),
    "sqlite": ("sqlite3-doc",),
    "git": ("git-doc",),
    "zsh": ("zsh-common", "zsh-doc"),
    "sed": ("sed",),
}
PROBES: dict[str, tuple[str, ...]] = {  # files whose absence means the domain's packages are missing
    "debian": (str(debian_faq.FAQ_DIR / "index.en.html"), str(debian_faq.REFERENCE_DIR / "index.en.html")),
    "perl": (f"{PERL_POD_GLOB}/perlfaq4.pod", f"{PERL_POD_GLOB}/perlop.pod"),
    "r": ("/usr/share/R/doc/manual/R-FAQ.html",),
    "sqlite": (str(SQLITE_DIR / "faq.html"),),
    "git": (str(GIT_DIR / "gitfaq.txt"),),
    "zsh": (str(ZSH_DIR / "FAQ.gz"), str(ZSH_DIR / "html" / "Expansion.html")),
    "sed": (str(SED_FAQ),),
}
SHARES = {"train": 0.2, "dev": 0.2, "test": 0.6}
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

SKIP_TAGS = {"script", "style", "form", "head", "title", "noscript"}
SKIP_CLASSES = {
    "header",
    "nav-panel",
    "contents",
    "shortcontents",
    "section-toc",
    "contents-heading",
    "mini-toc",
    "nosearch",
    "fancy_toc",
    "menu",
}
BLOCK_TAGS = {
    "p",
    "div",
    "pre",
    "li",
    "dt",
    "dd",
    "tr",
    "table",
    "blockquote",
    "ul",
    "ol",
    "dl",
    "br",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
}


class HtmlWalker:
    """Text of an HTML tree in document order, cut at headings of the given tags (navigation and tables of
    contents skipped)."""

    def __init__(self, levels: tuple[str, ...]):
        self.levels = levels
        self.found: list[tuple[int, str, str, list[str]]] = [(0, "", "", [])]  # level, anchor, title, text pieces

    def emit(self, text: str | None) -> None:
        """Append text to the current section."""
        if text:
            self.found[-1][3].append(text)

    def walk(self, node) -> None:
        """Visit node and its descendants (not its tail)."""
        classes = set((node.get("class") or "").split()) if isinstance(node.tag, str) else set()
        if not isinstance(node.tag, str) or node.tag in SKIP_TAGS or classes & SKIP_CLASSES:
            return
        if node.tag in self.levels:
            anchor = node.get("id") or (node.getparent().get("id") if node.getparent() is not None else "") or ""
            self.found.append((self.levels.index(node.tag) + 1, anchor, " ".join(node.text_content().split()), []))
            return
        self.emit(node.text)
        for child in node:
            self.walk(child)
            self.emit(child.tail)
        if node.tag in BLOCK_TAGS:
            self.emit("\n\n")


def node_text(node) -> str:
    """An element's text, paragraphs kept."""
    walker = HtmlWalker(())
    walker.walk(node)
    return clean("".join(walker.found[0][3]))


def html_sections(path: Path, prefix: str, levels: tuple[str, ...] = ("h1", "h2", "h3", "h4")) -> list[Section]:
    """The page's sections cut at the heading tags in levels (outermost first), with their parents."""
    from lxml import html

    walker = HtmlWalker(levels)
    walker.walk(html.parse(str(path)).getroot())
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    used: set[str] = set()
    for i, (level, anchor, title, pieces) in enumerate(walker.found[1:]):
        sid = f"{prefix}:{anchor}" if anchor and f"{prefix}:{anchor}" not in used else f"{prefix}:{i}"
        used.add(sid)
        while stack and stack[-1][0] >= level:
            stack.pop()
        sections.append(
            Section(sid=sid, title=title, text=clean("".join(pieces)), parent=stack[-1][1] if stack else None)
        )
        stack.append((level, sid))
    return link_sections(sections)


def html_reference(path: Path, prefix: str, levels: tuple[str, ...] = ("h1", "h2", "h3", "h4")) -> Reference:
    """A shipped HTML page as a distractor: the file as it ships, its sections as passages."""
    content = path.read_text(encoding="utf-8", errors="replace")
    return Reference(f"reference/{path.name}", content, html_sections(path, prefix, levels))


def root_title(index: dict[str, Section], sid: str) -> str:
    """The title of the outermost section holding sid."""
    while index[sid].parent:
        sid = index[sid].parent
    return strip_number(index[sid].title)


def r_faq(path: Path) -> FaqPage:
    """The R FAQ (texinfo HTML): section headings that ask are questions, split by chapter."""
    sections = html_sections(path, "r-faq", ("h2", "h3", "h4"))
    index = {s.sid: s for s in sections}
    questions = [s.sid for s in sections if "?" in s.title]
    return FaqPage("faq/R-FAQ.txt", sections, questions, {sid: root_title(index, sid) for sid in questions})


def sqlite_faq(path: Path) -> FaqPage:
    """The SQLite FAQ: '<a name=qN>' then the question in a paragraph, then the answer; split by blocks of 5."""
    from lxml import html

    sections = []
    for anchor in html.parse(str(path)).getroot().iter("a"):
        number = re.fullmatch(r"q(\d+)", anchor.get("name") or "")
        question = anchor.getnext()
        answer = question.getnext() if question is not None else None
        if number and answer is not None:
            title = strip_number(question.text_content())
            sections.append(Section(f"sqlite-faq:q{number.group(1)}", title, node_text(answer), None))
    units = {}
    for s in sections:
        first = (int(s.sid.rsplit("q", 1)[1]) - 1) // 5 * 5 + 1
        units[s.sid] = f"questions {first}-{first + 4}"
    return FaqPage("faq/faq.txt", sections, [s.sid for s in sections], units)


# --- POD (perlfaq) ---

POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}
POD_CODE = re.compile(r"([A-Z])(<+)")


def pod_inline(text: str) -> str:
    """POD formatting codes rendered as plain text (links as their text, or '"section" in page')."""
    rendered, _ = _pod_span(text, 0, None)
    return rendered


def _pod_span(text: str, i: int, end: re.Pattern | None) -> tuple[str, int]:
    out = []
    while i < len(text):
        if end is not None and (closing := end.match(text, i)):
            return "".join(out), closing.end()
        code = POD_CODE.match(text, i)
        if code is None:
            out.append(text[i])
            i += 1
            continue
        brackets = len(code.group(2))
        multi = brackets > 1 and code.end() < len(text) and text[code.end()].isspace()
        closer = re.compile(r"\s+" + ">" * brackets) if multi else re.compile(">")
        inner, i = _pod_span(text, code.end() + (1 if multi else 0), closer)
        if not multi and brackets > 1:
            inner = "<" * (brackets - 1) + inner
        out.append(_pod_code(code.group(1), inner.strip() if multi else inner))
    return "".join(out), i


def _pod_code(letter: str, inner: str) -> str:
    if letter in "XZ":
        return ""
    if letter == "E":
        if inner.isdigit() or inner.startswith("0x"):
            return chr(int(inner, 0))
        return POD_ENTITIES.get(inner) or entities.unescape(f"&{inner};")
    if letter == "L":
        return pod_link(inner)
    return inner


def pod_link(inner: str) -> str:
    """L<...> as pod2text writes it: the text when given, else '"section" in page', or the page."""
    if "|" in inner:
        return inner.split("|", 1)[0]
    if re.match(r"\w+://", inner):
        return inner
    page, _, section = inner.partition("/")
    section = section.strip('"')
    if not section:
        return page
    return f'"{section}" in {page}' if page else f'"{section}"'


def pod_blocks(text: str, items: bool = False) -> list[tuple[str, str]]:
    """(kind, text) per POD paragraph: kind is head1..head4 or 'text' (ordinary, verbatim and item paragraphs); with
    items, a named (not bulleted or numbered) =item of an outermost =over list is kind 'item' (its title)."""
    blocks: list[tuple[str, str]] = []
    skipping, depth = False, 0
    for paragraph in re.split(r"\n(?:[ \t]*\n)+", text):
        if not paragraph.strip():
            continue
        command = re.match(r"=(\w+)\s*(.*)", paragraph, re.S)
        if command:
            name, rest = command.group(1), command.group(2).strip()
            skipping = (skipping or name == "begin") and name != "end"
            depth = depth + (name == "over") - (name == "back" and depth > 0)
            if name in ("head1", "head2", "head3", "head4"):
                blocks.append((name, " ".join(pod_inline(rest).split())))
            elif name == "item" and items and depth == 1 and not re.match(r"[*\d]", rest) and not skipping:
                blocks.append(("item", " ".join(pod_inline(rest).split())))
            elif name == "item" and rest.strip("*0123456789. ") and not skipping:
                blocks.append(("text", pod_inline(rest)))
        elif not skipping:
            verbatim = paragraph[0] in " \t"
            blocks.append(("text", paragraph if verbatim else pod_inline(paragraph)))
    return blocks


def pod_sections(text: str, prefix: str, items: bool = False) -> list[Section]:
    """Sections at =head1 and =head2 (=head2 under its =head1) and, with items, at the named =item entries of an
    outermost list (under the heading before them); =head3/4 titles stay in the text."""
    sections: list[Section] = []
    head1 = heading = None
    for kind, content in pod_blocks(text, items):
        if kind in ("head1", "head2", "item"):
            parent = {"head1": None, "head2": head1, "item": heading}[kind]
            sections.append(Section(f"{prefix}:{len(sections)}", content, "", parent))
            head1 = sections[-1].sid if kind == "head1" else head1
            heading = sections[-1].sid if kind != "item" else heading
        elif sections:
            sections[-1].text += content + "\n\n"
    for s in sections:
        s.text = clean(s.text)
    return link_sections(sections)


def marked(title: str) -> bool:
    """A heading with a question mark."""
    return "?" in title


def perl_faq(
    path: Path, name: str | None = None, items: bool = False, question: Callable[[str], bool] = marked
) -> FaqPage:
    """A perl FAQ pod: =head2 headings (and, with items, named =item entries: ExtUtils::MakeMaker::FAQ) that are
    questions (perlfaqN: those with a question mark), split by their =head1 section ('perlfaq4: Data: Numbers'; the
    name alone under DESCRIPTION). name: of the training file, the ids and the units (default: the file's stem)."""
    name = name or path.stem
    sections = pod_sections(path.read_text(encoding="utf-8", errors="replace"), name, items)
    index = {s.sid: s for s in sections}
    questions = [s.sid for s in sections if s.parent and question(s.title)]
    heads = {sid: index[pod_head1(index, sid)].title for sid in questions}
    units = {sid: name if heads[sid] == "DESCRIPTION" else f"{name}: {heads[sid]}" for sid in questions}
    return FaqPage(f"faq/{name}.txt", sections, questions, units)


def pod_head1(index: dict[str, Section], sid: str) -> str:
    """The =head1 section holding sid."""
    while index[sid].parent:
        sid = index[sid].parent
    return sid


def pod_reference(path: Path) -> Reference:
    """A perl pod as a distractor: its text rendered, one passage per =head2 (or =head1 text)."""
    sections = pod_sections(path.read_text(encoding="utf-8", errors="replace"), f"perl-{path.stem}")
    content = "\n\n".join(f"{s.title}\n\n{s.text}" for s in sections) + "\n"
    return Reference(f"reference/{path.stem}.txt", content, sections)


# --- asciidoc (git) and plain text (zsh) ---


def asciidoc_parts(text: str) -> list[tuple[str, list[str]]]:
    """(heading, lines) per section of an asciidoc file; headings are lines underlined with -, ~ or = of their length."""
    lines = text.splitlines()
    parts: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(lines):
        line, under = lines[i], lines[i + 1] if i + 1 < len(lines) else ""
        if (
            re.fullmatch(r"-{3,}|~{3,}|={3,}", under)
            and line.strip()
            and line[0] not in "+[-/ \t"
            and abs(len(under) - len(line)) <= 2
        ):
            parts.append((line.strip(), []))
            i += 2
            continue
        parts[-1][1].append(line)
        i += 1
    return [p for p in parts if p[0] or any(x.strip() for x in p[1])]


def asciidoc_text(lines: list[str]) -> str:
    """Plain text of asciidoc lines: continuation marks, block delimiters and anchors dropped."""
    kept = ["" if re.fullmatch(r"\+|-{4,}|\.{4,}|\[\[.*\]\]|\[.*\]", line.strip()) else line.strip() for line in lines]
    return clean("\n".join(kept))


def git_faq(path: Path) -> FaqPage:
    """gitfaq.txt: '[[anchor]]' then 'Question?::' then the answer; split by asciidoc section."""
    sections, units = [], {}
    for heading, lines in asciidoc_parts(path.read_text(encoding="utf-8", errors="replace")):
        starts = [
            i
            for i in range(len(lines) - 1)
            if re.fullmatch(r"\[\[[\w-]+\]\]", lines[i].strip()) and lines[i + 1].rstrip().endswith("::")
        ]
        slug = re.sub(r"\W+", "-", heading.casefold()).strip("-") or "top"
        sections.append(
            Section(f"git-faq:{slug}", heading, asciidoc_text(lines[: starts[0] if starts else len(lines)]), None)
        )
        for start, stop in zip(starts, starts[1:] + [len(lines)]):
            sid = f"git-faq:{lines[start].strip()[2:-2]}"
            sections.append(
                Section(sid, lines[start + 1].rstrip()[:-2].strip(), asciidoc_text(lines[start + 2 : stop]), None)
            )
            units[sid] = heading
    return FaqPage("faq/gitfaq.txt", sections, list(units), units)


def git_reference(path: Path) -> Reference:
    """A git manual page (asciidoc as shipped) as a distractor, one passage per section."""
    content = path.read_text(encoding="utf-8", errors="replace")
    sections = [
        Section(f"{path.stem}:{i}", heading, asciidoc_text(lines), None)
        for i, (heading, lines) in enumerate(asciidoc_parts(content))
    ]
    return Reference(f"reference/{path.name}", content, sections)


def read_text(path: Path) -> str:
    """A text file, gunzipped when its name ends in .gz."""
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", errors="replace")


def zsh_faq(path: Path) -> FaqPage:
    """The zsh FAQ: 'N.M: Title' entries under 'Chapter N: Title' (after the contents); entries that ask are questions."""
    text = read_text(path)
    body = text.split("--- End of Contents ---", 1)[-1]
    sections: list[Section] = []
    units, chapter = {}, ""
    for line in body.splitlines():
        if heading := re.match(r"Chapter \d+:\s+(.*)", line):
            chapter = heading.group(1).strip()
        elif entry := re.match(r"(\d+\.\d+):\s+(.*)", line):
            sections.append(Section(f"zsh-faq:{entry.group(1)}", entry.group(2).strip(), "", None))
            units[sections[-1].sid] = chapter
        elif line in ZSH_TAIL:
            sections.append(
                Section(f"zsh-faq:{line.casefold().strip(':').replace(' ', '-')}", line.strip(":"), "", None)
            )
        elif sections:
            sections[-1].text += line + "\n"
    for s in sections:
        s.text = clean(s.text)
    questions = [s.sid for s in sections if s.sid in units and asks(s.title)]
    return FaqPage("faq/FAQ.txt", sections, questions, {sid: units[sid] for sid in questions})


def sed_faq(path: Path) -> FaqPage:
    """The sed FAQ: 'N.M. Title' entries (a title may run on to the next lines) under 'N. CHAPTER' headings, after the
    contents; 'N.M.K.' entries sit under 'N.M.'; entries that ask are questions, split by chapter."""
    body = re.split(r"^-{20,}$", read_text(path), maxsplit=1, flags=re.M)[-1]
    sections: list[Section] = []
    units, chapter, titling = {}, "", False
    for line in body.splitlines():
        if heading := re.fullmatch(r"(\d+)\.\s+([A-Z][^a-z]*)", line):
            chapter, titling = heading.group(2).strip(), False
        elif entry := re.match(r"(\d+(?:\.\d+)+)\.\s+(.*)", line):
            number = entry.group(1)
            parent = f"sed-faq:{number.rsplit('.', 1)[0]}"
            sections.append(
                Section(f"sed-faq:{number}", entry.group(2).strip(), "", parent if parent in units else None)
            )
            units[sections[-1].sid], titling = chapter, True
        elif titling and line.strip():
            sections[-1].title += " " + line.strip()
        elif re.fullmatch(r"-{20,}|\[end-of-file\]", line) or SED_GROUP.fullmatch(line):
            titling = False
        elif sections:
            sections[-1].text += line + "\n"
            titling = False
    for s in sections:
        s.text = clean(s.text)
    questions = [s.sid for s in sections if asks(s.title)]
    return FaqPage("faq/sedfaq.txt", link_sections(sections), questions, {sid: units[sid] for sid in questions})


def info_reference(path: Path, prefix: str, skipped: Iterable[str] = ()) -> Reference:
    """An info manual as a distractor: one section per node (menus, the named nodes and the tag table left out), its
    text rendered (title and text per node) as the training document."""
    sections = []
    for node in read_text(path).split("\x1f")[1:]:
        header = re.match(r"\n?File: [^,]+,\s+Node: ([^,\n]+)[^\n]*\n", node)
        if header is None or header.group(1).strip() in skipped:
            continue
        lines = node[header.end() :].split("\n* Menu:", 1)[0].strip("\n").splitlines()
        titled = len(lines) > 1 and re.fullmatch(r"[*=.-]{3,}", lines[1].strip()) is not None
        title = lines[0].strip() if titled else header.group(1).strip()
        slug = re.sub(r"\W+", "-", header.group(1).strip()).strip("-")
        sections.append(Section(f"{prefix}:{slug}", title, clean("\n".join(lines[2:] if titled else lines)), None))
    content = "\n\n".join(f"{s.title}\n\n{s.text}" for s in sections) + "\n"
    return Reference(f"reference/{path.name.removesuffix('.gz')}.txt", content, sections)


# --- the domains ---


def perl_pod_dir() -> Path:
    """The installed perl-doc pod folder (its version in the path)."""
    found = sorted(glob.glob(f"{PERL_POD_GLOB}/perlfaq4.pod"))
    if not found:
        raise FileNotFoundError(f"no perlfaq4.pod under {PERL_POD_GLOB}: install perl-doc")
    return Path(found[-1]).parent


def perl_more_faqs(lib_dirs: list[Path]) -> list[tuple[Path, str]]:
    """(path, name) of each further perl FAQ (PERL_MORE_FAQS) found, from the first of lib_dirs that holds it; the
    name is its path without suffix or 'pod/' ('perlunifaq', 'Net-libnetFAQ', 'ExtUtils-MakeMaker-FAQ')."""
    found = []
    for rel in PERL_MORE_FAQS:
        path = next((d / rel for d in lib_dirs if (d / rel).is_file()), None)
        if path:
            found.append((path, rel.removeprefix("pod/").removesuffix(".pod").replace("/", "-")))
    return found


def build_perl(pod_dir: Path | None = None, lib_dirs: list[Path] | None = None) -> Benchmark:
    """perlfaq1..9, perlunifaq, Net::libnetFAQ and ExtUtils::MakeMaker::FAQ questions over their answers and a few
    core pods. lib_dirs: where the further FAQs are looked for (default: the pod folder's parent, then
    PERL_LIB_GLOBS)."""
    pod_dir = pod_dir or perl_pod_dir()
    if lib_dirs is None:
        lib_dirs = [pod_dir.parent] + [
            Path(d) for g in PERL_LIB_GLOBS for d in sorted(glob.glob(g), reverse=True) if Path(d) != pod_dir.parent
        ]
    pages = [perl_faq(p) for p in sorted(pod_dir.glob("perlfaq[1-9].pod"))]
    pages += [perl_faq(path, name, items=True, question=asks) for path, name in perl_more_faqs(lib_dirs)]
    return assemble(
        pages, [pod_reference(pod_dir / f"{n}.pod") for n in PERL_REFERENCE if (pod_dir / f"{n}.pod").is_file()]
    )


def build_r(manual: Path | None = None) -> Benchmark:
    """The R FAQ's questions over its answers and the sections of An Introduction to R."""
    manual = manual or next((d for d in R_MANUALS if (d / "R-FAQ.html").is_file()), R_MANUALS[0])
    refs = [
        html_reference(manual / n, f"r-{n.removesuffix('.html')}", ("h2", "h3", "h4"))
        for n in R_REFERENCE
        if (manual / n).is_file()
    ]
    return assemble([r_faq(manual / "R-FAQ.html")], refs)


def build_sqlite(folder: Path = SQLITE_DIR) -> Benchmark:
    """The SQLite FAQ's questions over its answers and sections of a dozen SQLite documentation pages."""
    refs = [
        html_reference(folder / f"{n}.html", f"sqlite-{n}")
        for n in SQLITE_REFERENCE
        if (folder / f"{n}.html").is_file()
    ]
    return assemble([sqlite_faq(folder / "faq.html")], refs)


def build_git(folder: Path = GIT_DIR) -> Benchmark:
    """gitfaq's questions over its answers and the sections of a few git manual pages."""
    refs = [git_reference(folder / f"{n}.txt") for n in GIT_REFERENCE if (folder / f"{n}.txt").is_file()]
    return assemble([git_faq(folder / "gitfaq.txt")], refs)


def build_zsh(folder: Path = ZSH_DIR) -> Benchmark:
    """The zsh FAQ's questions over its answers and the sections of ten zsh manual pages."""
    html_dir = folder / "html"
    refs = [
        html_reference(html_dir / f"{n}.html", f"zsh-{n}") for n in ZSH_REFERENCE if (html_dir / f"{n}.html").is_file()
    ]
    return assemble([zsh_faq(folder / "FAQ.gz")], refs)


def build_sed(faq: Path = SED_FAQ, info: Path | None = SED_INFO) -> Benchmark:
    """The sed FAQ's questions over its answers and the nodes of the sed manual (info), when installed."""
    refs = [info_reference(info, "sed-info", SED_INFO_SKIPPED)] if info and info.is_file() else []
    return assemble([sed_faq(faq)], refs)


DOMAINS: dict[str, Callable[[], Benchmark]] = {
    "debian": debian_faq.build,
    "perl": build_perl,
    "r": build_r,
    "sqlite": build_sqlite,
    "git": build_git,
    "zsh": build_zsh,
    "sed": build_sed,
}


def ensure_packages(names: Iterable[str]) -> None:
    """Install (apt-get) the packages of the named domains whose files are missing."""
    missing = [pkg for name in names if not all(glob.glob(p) for p in PROBES[name]) for pkg in PACKAGES[name]]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"these Debian packages are needed: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def stable_hash(name: str) -> int:
    """A hash of a name that does not change between runs."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16)


def split_by_section(benchmark: Benchmark, shares: dict[str, float] = SHARES) -> dict[str, str]:
    """query id -> split. Whole sections go to one split; sections are taken largest first (ties in the order of a
    stable hash of their name) and each goes to the split currently furthest below its share of queries
    (deterministic, balanced: a chapter holding most of a FAQ's questions can only fit the largest share)."""
    members: dict[str, list[str]] = {}
    for qid in benchmark.queries:
        members.setdefault(benchmark.sections.get(qid, qid), []).append(qid)
    total, taken = len(benchmark.queries), dict.fromkeys(shares, 0)
    split: dict[str, str] = {}
    for name in sorted(members, key=lambda n: (-len(members[n]), stable_hash(n), n)):
        part = max(shares, key=lambda s: shares[s] * total - taken[s])
        taken[part] += len(members[name])
        split.update(dict.fromkeys(members[name], part))
    return split


def write_beir(folder: Path, corpus: str, benchmark: Benchmark, ids: list[str]) -> None:
    """One BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv for the given queries."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    rows = "".join(json.dumps({"_id": q, "text": benchmark.queries[q]}, ensure_ascii=False) + "\n" for q in ids)
    (folder / "queries.jsonl").write_text(rows, encoding="utf-8")
    qrels = "".join(f"{q}\t{pid}\t1\n" for q in ids for pid in benchmark.relevant[q])
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")


def write_domain(name: str, benchmark: Benchmark, split: dict[str, str], out: Path) -> dict:
    """Writes out/docs/<name>/... (training documents) and out/<name>/beir-{train,dev,test}/ (corpus.jsonl,
    queries.jsonl, qrels/test.tsv in BEIR layout; the same corpus in each); asserts no leak; returns counts
    {passages, documents, queries_dropped, train_queries, dev_queries, test_queries}."""
    leaks = leaked_queries(benchmark.queries, benchmark.documents)
    if leaks:
        raise AssertionError(
            f"{len(leaks)} queries appear in training documents, e.g. {benchmark.queries[leaks[0]]!r}"
        )
    unsplit = [q for q in benchmark.queries if split.get(q) not in SHARES]
    if unsplit:
        raise ValueError(f"{len(unsplit)} queries have no train/dev/test split, e.g. {unsplit[0]!r}")
    docs = out / "docs" / name
    shutil.rmtree(docs, ignore_errors=True)
    for rel, content in benchmark.documents.items():
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text(content, encoding="utf-8")
    corpus = "".join(
        json.dumps({"_id": pid, "title": t, "text": x}, ensure_ascii=False) + "\n"
        for pid, (t, x) in benchmark.passages.items()
    )
    counts = {
        "passages": len(benchmark.passages),
        "documents": len(benchmark.documents),
        "queries_dropped": len(benchmark.dropped_queries),
    }
    for part in SHARES:
        ids = [q for q in benchmark.queries if split[q] == part]
        write_beir(out / name / f"beir-{part}", corpus, benchmark, ids)
        counts[f"{part}_queries"] = len(ids)
    return counts


def build_all(names: list[str] | None, out: Path) -> dict[str, dict]:
    """Ensure the packages, then build, split and write each named domain (all when None); counts per domain."""
    names = list(names or DOMAINS)
    ensure_packages(names)
    counts = {}
    for name in names:
        benchmark = DOMAINS[name]()
        counts[name] = write_domain(name, benchmark, split_by_section(benchmark), out)
    return counts


def main() -> None:
    """Command line: build the domains into --out and print their counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Output folder")
    parser.add_argument("--domains", nargs="*", choices=list(DOMAINS), help="Domains to build (default: all)")
    args = parser.parse_args()
    print(json.dumps(build_all(args.domains, Path(args.out)), indent=1))


if __name__ == "__main__":
    main()
