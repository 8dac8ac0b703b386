"""FAQ pages and reference manuals in HTML (the R FAQ and R-intro, the SQLite FAQ and its pages): sections by heading."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.faq.common import FaqPage, Reference, link_sections, strip_number
from benchmarks.faq.debian import Section, clean

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
