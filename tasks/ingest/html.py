"""HTML at any depth: libxml2 (under unstructured) stops at 256 nested elements and drops what follows, so a deeper
document is read as plain text from a stream of tags instead."""

from __future__ import annotations

import re
from html.parser import HTMLParser

LIBXML_MAX_DEPTH = (
    255  # libxml2 (under lxml and unstructured) stops at the 256th nested element, dropping what follows
)
BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "li",
    "tr",
    "td",
    "th",
    "table",
    "section",
    "article",
    "pre",
    "blockquote",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "header",
    "footer",
    "main",
    "nav",
}


def html_too_deep(html: str) -> bool:
    """Whether libxml2 gives up on this HTML's nesting depth: it keeps the text before that point and silently drops the rest."""
    from lxml import etree

    parser = etree.HTMLParser(encoding="utf-8")
    etree.fromstring(html.encode("utf-8", "replace"), parser)
    return any("Excessive depth" in error.message for error in parser.error_log)


class _HTMLText(HTMLParser):
    """The text of an HTML document read as a stream of tags, never a tree: any depth; block tags end a paragraph."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_plain_text(html: str) -> str:
    """Paragraphs of an HTML document's text, whitespace collapsed, without building a tree."""
    reader = _HTMLText()
    reader.feed(html)
    reader.close()
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", "".join(reader.parts)))
    return "\n\n".join(p for p in paragraphs if p)


def partition_html_text(html: str) -> tuple[list, str | None]:
    """Elements of an HTML document, and a note when it is nested too deep for lxml and is read as plain text instead."""
    if html_too_deep(html):
        from unstructured.partition.text import partition_text

        note = f"HTML nested deeper than {LIBXML_MAX_DEPTH} levels: read as plain text (no headings)"
        return partition_text(text=html_plain_text(html)), note
    from unstructured.partition.html import partition_html

    return partition_html(text=html), None
