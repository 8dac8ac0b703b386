"""The text normaliser's modes: how much of a difference each one ignores."""

from __future__ import annotations

from domain_embed.tasks.core.text import normalize


def test_each_mode_ignores_more_than_the_one_before():
    text = "  Straße,\tﬁne  PLAN. "
    assert normalize(text, "whitespace") == "Straße, ﬁne PLAN."
    assert normalize(text, "lowercase") == "straße, ﬁne plan."
    assert normalize(text, "words") == normalize("strasse fine plan") == "strasse fine plan"
