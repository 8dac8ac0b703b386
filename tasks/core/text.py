"""The one text normaliser for "same text" checks; its mode says how much of a difference is ignored."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

WORDS = re.compile(r"\w+")
Mode = Literal["whitespace", "lowercase", "words"]


def normalize(text: str, mode: Mode = "words") -> str:
    """'whitespace': runs of whitespace as one space, ends stripped; 'lowercase': that, lower-cased;
    'words': NFKC, case-folded, punctuation dropped, words joined by one space."""
    if mode == "whitespace":
        return " ".join(text.split())
    if mode == "lowercase":
        return " ".join(text.lower().split())
    return " ".join(WORDS.findall(unicodedata.normalize("NFKC", text).casefold()))
