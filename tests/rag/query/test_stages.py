"""The query path's seams, used from outside the library as a user would: a stage, an output
filter and a tracer plugged in without editing rag/; and the stream-is-the-answer contract."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rag.core.types import CitationsEvent, DoneEvent, Query, ResetEvent, StreamEvent, TokenEvent
from rag.query.pipeline import QueryPipeline, default_stages
from rag.query.stages import OutputFilter, QueryState, Stage
from rag.query.tracing import Span, Tracer
from tests.rag.chat_server import ChatServer, Fault
from tests.rag.conftest import KnowledgeBase

EXTRACTIVE = {"chain": ["extractive"]}


class DropSource:
    """An added stage: removes one document from what was retrieved."""

    name = "drop-source"

    def __init__(self, source: str):
        self.source = source
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        state.hits = [h for h in state.hits if h.payload.get("source") != self.source]
        state.extras["dropped_by"] = self.name
        yield from ()


class MaskYears:
    """An output filter: what redaction will look like."""

    name = "mask-years"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def warm_up(self) -> None:
        return None

    def run(self, text: str, state: QueryState) -> str:
        self.seen.append(text)
        return re.sub(r"\b1[89]\d\d\b", "<YEAR>", text)


class Recorder:
    """A tracer: the spans, nested as they were entered, with the attributes set on them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @contextmanager
    def request(self, state: QueryState) -> Iterator[Span]:
        self.events.append(("start", "query"))
        yield Span("query")
        self.events.append(("end", "query"))

    @contextmanager
    def span(self, name: str, state: QueryState) -> Iterator[Span]:
        self.events.append(("start", name))
        try:
            yield Span(name)
        finally:
            self.events.append(("end", name))


def test_the_plugins_satisfy_the_protocols() -> None:
    assert isinstance(DropSource("x"), Stage)
    assert isinstance(MaskYears(), OutputFilter)
    assert isinstance(Recorder(), Tracer)


def test_a_stage_added_from_outside_runs_in_its_place(kb: KnowledgeBase, kb_settings: Any) -> None:
    settings = kb_settings(generation=EXTRACTIVE)
    question = "When was the Eiffel Tower built?"
    plain = QueryPipeline(kb.index, settings).run(Query(question))
    assert plain.citations[0].source == "eiffel.md"

    stages = default_stages(kb.index, settings)
    added = DropSource("eiffel.md")
    at = [s.name for s in stages].index("retrieve") + 1
    stages.insert(at, added)  # after retrieve, before rerank
    pipeline = QueryPipeline(kb.index, settings, stages=stages)
    names = [s.name for s in pipeline.stages]
    assert names[at - 1 : at + 2] == ["retrieve", "drop-source", "rerank"]
    pipeline.warm_up()
    assert added.warmed
    answer = pipeline.run(Query(question))
    assert all(c.source != "eiffel.md" for c in answer.citations)
    assert "drop-source" in answer.timings_ms, "the runner timed the added stage"


def test_an_output_filter_sees_all_text_and_the_stream_stays_the_answer(
    kb: KnowledgeBase, kb_settings: Any
) -> None:
    mask = MaskYears()
    pipeline = QueryPipeline(kb.index, kb_settings(generation=EXTRACTIVE), output_filters=[mask])
    events = list(pipeline.stream(Query("When was the Eiffel Tower built?")))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    done = events[-1]
    assert isinstance(done, DoneEvent) and not done.answer.abstained
    assert "<YEAR>" in done.answer.answer and "1889" not in done.answer.answer
    assert "".join(tokens) == done.answer.answer
    assert all("1889" not in c.quote for c in done.answer.citations), "quotes are filtered too"
    assert any("1889" in t for t in mask.seen), "the filter saw the raw text"
    # Nothing retrieved: the abstention goes through the filter and the stream as well.
    none = list(pipeline.stream(Query("anything", filters={"source": "missing.md"})))
    assert [e.kind for e in none] == ["token", "citations", "done"]
    assert none[0].data() == none[-1].data()["answer"]


def test_a_tracer_added_from_outside_gets_one_span_per_stage(
    kb: KnowledgeBase, kb_settings: Any
) -> None:
    recorder = Recorder()
    pipeline = QueryPipeline(kb.index, kb_settings(generation=EXTRACTIVE), tracer=recorder)
    answer = pipeline.run(Query("When was the Eiffel Tower built?"))
    top_level: list[str] = []
    depth = 0
    for what, name in recorder.events:
        if what == "start":
            if depth == 1:
                top_level.append(name)
            depth += 1
        else:
            depth -= 1
    assert depth == 0
    assert top_level == [
        "condense",
        "prompt",
        "retrieve",
        "rerank",
        "pack",
        "generate",
        "answer",
    ]
    inside_generate = recorder.events[
        recorder.events.index(("start", "generate")) : recorder.events.index(("end", "generate"))
    ]
    assert ("start", "verify") in inside_generate, "sentences are verified while generating"
    # timings_ms comes from the built-in timing tracer, next to the added one.
    assert {"prompt", "retrieve", "rerank", "pack", "generate", "verify", "answer", "total"} <= set(
        answer.timings_ms
    )


QUESTION = "When was the Eiffel Tower built and when do backups run?"
BUILT = "The Eiffel Tower was built between 1887 and 1889 [1]."
# Each reply, and the answer verification makes of it when it streams to the end (None: the
# reply is refused and the next backend, extractive, answers; nothing of the reply is shown).
REPLIES = {
    # markers after the full stop, an invented passage number ([9]), an unsupported claim
    # between: dropped (generation.verify.unsupported: drop, the default)
    "marks": (
        "The Eiffel Tower was built between 1887 and 1889. [1] It was painted by Leonardo [9]. "
        "Backups run at 02:00 UTC [2].",
        f"{BUILT} Backups run at 02:00 UTC [2].",
    ),
    # an unsupported sentence first: held back, never shown, dropped
    "held": (f"Leonardo da Vinci designed it in 1503. {BUILT}", BUILT),
    # a heading-only sentence and a repeat, dropped
    "repeat": (f"Eiffel Tower. {BUILT} {BUILT}", BUILT),
    # nothing supported: refused, and nothing of it was shown
    "unsupported": ("The tower was painted by Leonardo da Vinci [1].", None),
    # no final full stop: the last sentence is released when the stream ends
    "open": (BUILT.removesuffix("."), BUILT.removesuffix(".")),
}


@pytest.mark.parametrize("case", REPLIES)
# None: streams to the end; 5: dies before a sentence is complete (nothing shown, no reset);
# 12: dies once a first sentence was shown (a reset withdraws it).
@pytest.mark.parametrize("drop_after", [None, 5, 12])
def test_the_stream_concatenated_is_the_answer(
    kb: KnowledgeBase,
    kb_settings: Any,
    chat_server: ChatServer,
    case: str,
    drop_after: int | None,
) -> None:
    reply, verified = REPLIES[case]
    words = len(reply.split())
    chat_server.reply = reply
    dies = drop_after is not None and drop_after < words
    if drop_after is not None:
        chat_server.faults.append(Fault(drop_after_tokens=drop_after))
    settings = kb_settings(
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": chat_server.base_url},
        }
    )
    pipeline = QueryPipeline(kb.index, settings)
    extractive = QueryPipeline(kb.index, kb_settings(generation=EXTRACTIVE)).run(QUESTION).answer
    events: list[StreamEvent] = []
    first_shown_at: int | None = None  # words the backend had sent when text was first shown
    for e in pipeline.stream(Query(QUESTION)):
        if isinstance(e, TokenEvent) and first_shown_at is None:
            first_shown_at = chat_server.sent_tokens
        events.append(e)
    shown: list[str] = []
    withdrawn: list[str] = []
    for e in events:
        if isinstance(e, ResetEvent):
            withdrawn, shown = withdrawn + shown, []
        elif isinstance(e, TokenEvent):
            shown.append(e.text)
    done = events[-1]
    assert isinstance(done, DoneEvent) and isinstance(events[-2], CitationsEvent)
    answer = done.answer
    assert "".join(shown) == answer.answer
    # What the answer is, decided here and not read off the stream.
    if dies or verified is None:
        assert answer.generator == "extractive" and answer.answer == extractive
        assert answer.degraded is dies
    else:
        assert answer.generator == "openai" and answer.answer == verified
    # A reset comes exactly when text had been shown (a supported first sentence complete
    # before the drop), and then what it withdrew was that sentence.
    resets = [e for e in events if isinstance(e, ResetEvent)]
    if case == "marks" and drop_after == 12:
        assert len(resets) == 1 and withdrawn == [BUILT]
    else:
        assert resets == [] and withdrawn == []
    # Nothing unsupported is ever shown: a refused reply never shows, a dropped sentence neither.
    assert not any("Leonardo" in e.text for e in events if isinstance(e, TokenEvent))
    if case == "held" and not dies:
        assert first_shown_at is not None and first_shown_at >= words - 1, first_shown_at


def test_a_marked_sentence_is_held_until_a_supported_one_follows(
    kb: KnowledgeBase, kb_settings: Any, chat_server: ChatServer
) -> None:
    """With ``generation.verify.unsupported: mark`` an unsupported sentence is shown, marked,
    but never first: it waits until a supported sentence answers (the default, drop, never
    shows it at all: test_the_stream_concatenated_is_the_answer)."""
    reply = f"Leonardo da Vinci designed it in 1503. {BUILT}"
    chat_server.reply = reply
    chat_server.token_delay = 0.05  # words arrive one by one, as from a model
    settings = kb_settings(
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": chat_server.base_url},
            "verify": {"unsupported": "mark"},
        }
    )
    first_shown_at: int | None = None
    events: list[StreamEvent] = []
    for e in QueryPipeline(kb.index, settings).stream(Query(QUESTION)):
        if isinstance(e, TokenEvent) and first_shown_at is None:
            first_shown_at = chat_server.sent_tokens
        events.append(e)
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.answer.generator == "openai"
    shown = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert shown == done.answer.answer
    assert "Leonardo" in shown and "[unverified]" in shown and BUILT in shown, shown
    # nothing was shown before the supported sentence had been written in full
    assert first_shown_at is not None and first_shown_at >= len(reply.split()) - 1, first_shown_at
