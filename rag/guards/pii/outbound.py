"""Pseudonymised model requests: what a backend is sent, and what comes back.

:func:`pseudonymising` wraps a generator: each request's messages (question, passages, chat
history: everything rendered into them) go out with consistent per-request placeholders
(``<PERSON_1>``, ``<EMAIL_ADDRESS_2>``), and the text streamed back is restored (or redacted)
before anyone downstream — verification, the fallback chain, the user — sees it, a placeholder
split across streamed pieces included.

Passages detected at ingest carry their values in the chunk payload (``pii``: the detector
fingerprint and ``[type, value]`` pairs, :func:`chunk_pii`); the Generate stage hands them
over in ``request.extra["pii_stored"]`` (chunk id -> that entry), so a query analyses only
the rest of the prompt: its question and history. A passage without a current entry (indexed
before, or under other pii settings) is analysed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rag.contracts import GenerationRequest, Generator, close_quietly
from rag.core.pii_settings import PiiSettings
from rag.core.tokens import TokenCounter
from rag.core.types import Usage
from rag.guards.pii.engine import Detector, detector_for
from rag.guards.pii.mentions import names_mentioned
from rag.guards.pii.policy import Pseudonymiser
from rag.guards.pii.sweep import sweep_values

__all__ = [
    "PseudonymisingGenerator",
    "chunk_pii",
    "document_pii",
    "pseudonymise_request",
    "pseudonymising",
]


def chunk_pii(detector: Detector, text: str) -> dict[str, Any]:
    """The payload entry stored with a chunk: what was found in it, by which detector."""
    spans = detector.detect(text)
    return {
        "fp": detector.fingerprint,
        "values": [[s.type, text[s.start : s.end]] for s in spans],
    }


def document_pii(
    detector: Detector, texts: list[str], each: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """:func:`chunk_pii` for each chunk of one document, and then the document's names shared:
    a chunk that mentions a person by a part of the name alone ("James") found whole in
    another chunk ("James O'Neill", the CV's header) stores that whole name too, so the part
    gets the person's placeholder when this chunk is retrieved without the other. ``each``
    runs before each chunk's detection (ingestion's work budget)."""
    entries = []
    for text in texts:
        if each is not None:
            each()
        entries.append(chunk_pii(detector, text))
    names = list(
        dict.fromkeys(
            v for e in entries for t, v in e["values"] if t == "PERSON" and len(v.split()) > 1
        )
    )
    if not names:
        return entries
    for entry, text in zip(entries, texts, strict=True):
        own = {v.casefold() for t, v in entry["values"] if t == "PERSON"}
        others = [n for n in names if n.casefold() not in own]
        entry["values"] += [["PERSON", n] for n in names_mentioned(text, others)]
    return entries


def _stored(entry: Any, fingerprint: str) -> list[tuple[str, str]] | None:
    if not isinstance(entry, Mapping) or entry.get("fp") != fingerprint:
        return None
    values = entry.get("values")
    if not isinstance(values, list):
        return None
    return [(str(v[0]), str(v[1])) for v in values if isinstance(v, list | tuple) and len(v) == 2]


def pseudonymise_request(
    request: GenerationRequest, detector: Detector, answers: str = "restore"
) -> tuple[GenerationRequest, Pseudonymiser]:
    """``request`` with its messages and question pseudonymised, and the mapping back."""
    p = Pseudonymiser(detector, answers)
    stored: Mapping[str, Any] = request.extra.get("pii_stored") or {}
    passages = []
    for passage in request.context.passages:
        entries = [_stored(stored.get(cid), detector.fingerprint) for cid in passage.chunk_ids]
        if passage.chunk_ids and all(e is not None for e in entries):
            for e in entries:
                p.add(e or [])
        else:
            p.note(passage.text)
        if passage.text:
            passages.append(passage.text)
    # The question's spans remembered by text (an LRU, like the lines below): a question asked
    # again and not served by the answer cache (it is off, the answer was an abstention, or
    # another tenant or filter asked) skips the spaCy pass, ~2-4 ms here.
    p.note(request.question, detector.detect_cached(request.question))
    # What is left of each message once the passages and the question are taken out: chat
    # history, passage headers, the prompt's own words. Analysed line by line, each line's
    # result remembered (they repeat across requests); then every known value is replaced
    # everywhere.
    for m in request.messages:
        rest = m.get("content") or ""
        for text in [*passages, request.question]:
            if text:
                rest = rest.replace(text, "\n")
        for line in rest.splitlines():
            if any(c.isalnum() for c in line):
                p.note(line, detector.detect_cached(line))
    # Then the recall-first check (rag.guards.pii.sweep) over every line that will be sent,
    # each line's result remembered: what it flags gets a placeholder too.
    for m in request.messages:
        for line in (m.get("content") or "").splitlines():
            if any(c.isdigit() or c.isupper() for c in line):
                p.add(sweep_values(line))
    p.add(sweep_values(request.question))
    messages = [{**m, "content": p.replace_known(m.get("content") or "")} for m in request.messages]
    out = dataclasses.replace(
        request,
        messages=messages,
        question=p.replace_known(request.question),
        extra={k: v for k, v in request.extra.items() if k != "pii_stored"},
    )
    return out, p


class PseudonymisingGenerator(Generator):
    """A backend that only ever sees pseudonymised text; its answers are restored."""

    def __init__(self, inner: Generator, settings: PiiSettings):
        self.inner = inner
        self.settings = settings
        self.detector = detector_for(settings)
        self.last: Pseudonymiser | None = None  # the latest request's mapping (tests)

    def __getattr__(self, name: str) -> Any:  # retries, url, settings of the inner backend
        return getattr(self.inner, name)

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    @property
    def tokens(self) -> TokenCounter:
        return self.inner.tokens

    @property
    def special_tokens(self) -> frozenset[str]:
        return self.inner.special_tokens

    def health(self) -> str:
        return self.inner.health()

    def warm_up(self) -> None:
        self.detector.warm_up()
        self.inner.warm_up()

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "pii": self.settings.answers}

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        sent, p = pseudonymise_request(request, self.detector, self.settings.answers)
        self.last = p
        back = p.stream()
        inner = self.inner.stream(sent)
        try:
            for item in inner:
                if isinstance(item, str):
                    text = back.feed(item)
                    if text:
                        yield text
                else:
                    tail = back.flush()
                    if tail:
                        yield tail
                    yield item
            tail = back.flush()
            if tail:
                yield tail
        finally:
            close_quietly(inner)


def pseudonymising(generator: Generator, settings: PiiSettings | None) -> Generator:
    """``generator`` behind pseudonyms when the policy says so: always for a backend that sends
    text out of the process (``openai``), for in-process ones with ``pii.scrub_in_process``."""
    if settings is None or not settings.enabled:
        return generator
    if generator.name != "openai" and not settings.scrub_in_process:
        return generator
    cls = type(
        f"Pseudonymising{type(generator).__name__}",
        (PseudonymisingGenerator,),
        {"name": generator.name, "uses_llm": generator.uses_llm},
    )
    wrapped: Generator = cls(generator, settings)
    return wrapped
