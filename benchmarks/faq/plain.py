"""FAQs and manuals in plain text: git's asciidoc gitfaq and man pages, the zsh FAQ, the sed FAQ and sed's info manual."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from benchmarks.faq.common import SED_GROUP, ZSH_TAIL, FaqPage, Reference, asks, link_sections
from benchmarks.faq.debian import Section, clean


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
