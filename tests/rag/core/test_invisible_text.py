"""Invisible and bidirectional characters (issue 14, item 11): a question of only zero-width or
format characters is empty — refused before retrieval or any model runs — and bidi controls
are found by name (the API refuses upload names holding them: tests/api/test_hardening.py)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from rag.core.errors import QueryError
from rag.core.textguard import INVISIBLE_RANGES, bidi_controls, is_blank
from rag.core.types import Query, StreamEvent
from rag.query.pipeline import QueryPipeline, default_stages
from rag.query.stages import QueryState
from tests.rag.conftest import KnowledgeBase

INVISIBLE_QUESTIONS = [
    "\u200b",  # ZERO WIDTH SPACE
    "\u200b\u200c\u200d\u2060",  # ZWSP, ZWNJ, ZWJ, WORD JOINER
    " \ufeff\t\u00ad ",  # BOM, SOFT HYPHEN among whitespace
    "\u202e\u2066\u2069",  # bidi controls
    "\u3164\u2800\ufe0f",  # HANGUL FILLER, BRAILLE BLANK, a variation selector
    "\U000e0041\U000e007f",  # tag characters
]


class Spy:
    """The first stage: records whether the pipeline got as far as running anything."""

    name = "spy"

    def __init__(self) -> None:
        self.ran = 0

    def warm_up(self) -> None:
        return None

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        self.ran += 1
        yield from ()


@pytest.mark.parametrize("text", INVISIBLE_QUESTIONS, ids=ascii)
def test_invisible_text_is_blank(text: str) -> None:
    assert is_blank(text)


@pytest.mark.parametrize("text", ["a", "\u200bx\u200b", "é", "日本", "😀", "\u0627", "1"])
def test_visible_text_is_not_blank(text: str) -> None:
    assert not is_blank(text)


def test_every_control_format_and_space_character_counts_as_invisible() -> None:
    missing = [
        f"U+{cp:04X}"
        for cp in range(0x110000)
        if unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zs", "Zl", "Zp")
        and not any(lo <= cp <= hi for lo, hi in INVISIBLE_RANGES)
    ]
    assert missing == []


def test_bidi_controls_are_named() -> None:
    assert bidi_controls("invoice\u202efdp.md") == ["U+202E RIGHT-TO-LEFT OVERRIDE"]
    assert bidi_controls("a\u2066b\u2069c\u2066") == [
        "U+2066 LEFT-TO-RIGHT ISOLATE",
        "U+2069 POP DIRECTIONAL ISOLATE",
    ]
    assert bidi_controls("plain name.md") == []
    assert bidi_controls("\u05e9\u05dc\u05d5\u05dd.md") == []  # Hebrew itself is fine


@pytest.mark.parametrize("question", INVISIBLE_QUESTIONS, ids=ascii)
def test_an_invisible_question_is_refused_before_any_stage_runs(
    kb: KnowledgeBase, kb_settings: Any, question: str
) -> None:
    settings = kb_settings(generation={"chain": ["extractive"]})
    spy = Spy()
    pipeline = QueryPipeline(kb.index, settings, stages=[spy, *default_stages(kb.index, settings)])
    with pytest.raises(QueryError, match="empty"):
        pipeline.run(Query(question))
    with pytest.raises(QueryError, match="invisible characters"):
        list(pipeline.stream(Query(question)))
    assert spy.ran == 0, "retrieval (or anything else) ran for a blank question"
    pipeline.run(Query("\u200bWhen was the Eiffel Tower built?\u200b"))
    assert spy.ran == 1
