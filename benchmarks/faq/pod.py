"""Perl's FAQs and manual pages in POD: entries by =head2 (or =item), sections by =head1, links rendered as text."""

from __future__ import annotations

import html as entities
import re
from collections.abc import Callable
from pathlib import Path

from benchmarks.faq.common import FaqPage, Reference, link_sections
from benchmarks.faq.debian import Section, clean

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
