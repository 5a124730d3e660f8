"""What each sink gets: scrubbed text (traces, logs, reports, errors) or per-request
pseudonyms (model servers), and answers restored or redacted.

- :class:`Scrubber` — ``scrub(text)`` replaces every detected value by its type, ``<PERSON>``.
  Always on while ``pii.enabled``; cheap to construct (the engine loads on first use or in
  ``warm_up()``). :func:`scrubber_for` gives the process's one for a configuration.
- :class:`Pseudonymiser` — one per request: the same value always gets the same placeholder
  (``<PERSON_1>``, ``<EMAIL_ADDRESS_2>``); :meth:`Pseudonymiser.restore` maps them back,
  :meth:`Pseudonymiser.redact` leaves ``[PERSON]``; :class:`StreamRestorer` does either over
  streamed pieces, holding back a placeholder split across pieces until it is whole.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rag.core.pii_settings import PiiSettings
from rag.guards.pii.engine import Detector, Span, detector_for
from rag.guards.pii.mentions import NAMED_AFTER, name_parts, street_parts
from rag.guards.pii.sweep import sweep
from rag.guards.pii.text import is_english

if TYPE_CHECKING:
    from rag.core.config import Settings

__all__ = [
    "PLACEHOLDER",
    "Pseudonymiser",
    "Scrubber",
    "StreamRestorer",
    "scrub_values",
    "scrubber_for",
]

# <PERSON_1>, and the forms a model writes it back in: < PERSON_1 >, <person_1>, [PERSON_1].
PLACEHOLDER = re.compile(r"[<\[]\s*([A-Za-z][A-Za-z_]*?)_(\d{1,4})\s*[>\]]")
_BARE = re.compile(r"\b([A-Z][A-Z_]*?)_(\d{1,4})\b")
# Longest a placeholder can be while it is still being streamed in.
_MAX_PENDING = 48
_PARTIAL = re.compile(r"[<\[]\s*[A-Za-z_]*\d{0,4}\s*$")


_NEXT_NAME_WORD = re.compile(r"[ \t]+([^\W\d_][\w'’\-]+)")
_PREV_NAME_WORD = re.compile(r"(?<![\w\-])([^\W\d_][\w'’\-]+)[ \t]+$")


def _same_case(a: str, b: str) -> bool:
    return a[:1].isupper() == b[:1].isupper()


def _key(value: str) -> str:
    return " ".join(value.split()).casefold()


class Scrubber:
    """PII out of free text for every sink that writes or exports: ``<PERSON>``, ``<EMAIL_ADDRESS>``."""

    def __init__(self, settings: PiiSettings | None = None):
        self.settings = settings or PiiSettings()
        self._detector: Detector | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = detector_for(self.settings)
        return self._detector

    def warm_up(self) -> None:
        if self.enabled:
            self.detector.warm_up()

    def detect(self, text: str) -> list[Span]:
        if not self.enabled or not text:
            return []
        return self.detector.detect(text)

    def scrub(self, text: str) -> str:
        """``text`` with each detected value replaced by ``<TYPE>``; unchanged when disabled."""
        if not self.enabled or not text or not text.strip():
            return text
        spans = self.detector.detect(text)
        # What leaves (traces, reports, logs, errors) also passes the recall-first check.
        spans = [*spans, *sweep(text, spans)]
        return replace_spans(text, spans, lambda s: f"<{s.type}>")

    def scrub_many(self, texts: list[str]) -> list[str]:
        """:meth:`scrub` of each text, detected in one batch (see ``Detector.detect_many``)."""
        if not self.enabled:
            return list(texts)
        found = self.detector.detect_many(texts)
        return [
            replace_spans(text, [*spans, *sweep(text, spans)], lambda s: f"<{s.type}>")
            if text and text.strip()
            else text
            for text, spans in zip(texts, found, strict=True)
        ]

    def scrub_value(self, value: Any) -> Any:
        """Strings in ``value`` (nested dicts, lists, tuples) scrubbed; other values as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_value(v) for v in value)
        return value

    def scrub_fields(self, value: Any, keys: frozenset[str]) -> Any:
        """``value`` with the strings under the given dict keys scrubbed, at any depth (a
        report's questions, answers and errors; its ids and metric names are left alone)."""
        if not self.enabled:
            return value
        if isinstance(value, dict):
            return {
                k: self.scrub_value(v) if k in keys else self.scrub_fields(v, keys)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_fields(v, keys) for v in value)
        return value

    def pseudonymiser(self) -> Pseudonymiser:
        return Pseudonymiser(self.detector if self.enabled else None, self.settings.answers)


def replace_spans(text: str, spans: Iterable[Span], label: Any) -> str:
    out: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        out.append(text[pos : s.start])
        out.append(label(s))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


class Pseudonymiser:
    """Consistent placeholders for one request, and the way back."""

    def __init__(self, detector: Detector | None, answers: str = "restore"):
        self.detector = detector
        self.answers = answers
        self._by_value: dict[str, str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._types: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._aliases: dict[
            str, str
        ] = {}  # a part of a value (first name, street) -> its placeholder
        self._exact: dict[str, bool] = {}  # aliases matched only as written (English words)
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        # Types whose placeholders a model may invent (<PERSON_7>): shown as [PERSON].
        self._entities = frozenset(detector.settings.entities) if detector else frozenset()

    @property
    def mapping(self) -> dict[str, str]:
        """placeholder -> original value."""
        return dict(self._by_placeholder)

    def placeholder(self, entity: str, value: str) -> str:
        key = _key(value)
        with self._lock:
            ph = self._by_value.get(key) or self._aliases.get(key)
            if ph is None:
                ph = self._part_of(entity, value)
                if ph is not None:
                    self._aliases[key] = ph
                    return ph
                n = self._counts.get(entity, 0) + 1
                self._counts[entity] = n
                ph = f"<{entity}_{n}>"
                self._by_value[key] = ph
                self._by_placeholder[ph] = value
                self._types[ph] = entity
                self._alias_parts(entity, value, ph)
                self._pattern = None
            return ph

    def _part_of(self, entity: str, value: str) -> str | None:
        """The placeholder of a known value this one is part of: "Aino" of "Aino Virtanen",
        a street line of a known address (mentions propagate)."""
        if entity == "PERSON":
            parts = {p.casefold() for p in name_parts(value)}
            if not parts:
                return None
            for ph, known in self._by_placeholder.items():
                if self._types.get(ph) == "PERSON" and parts <= {
                    p.casefold() for p in name_parts(known)
                }:
                    return ph
        elif entity == "STREET_ADDRESS":
            k = _key(value)
            for ph, known in self._by_placeholder.items():
                if self._types.get(ph) == "STREET_ADDRESS" and k in _key(known):
                    return ph
        return None

    def _alias_parts(self, entity: str, value: str, ph: str) -> None:
        """Parts of a new value that stand for it alone, replaced wherever they occur."""
        if entity == "PERSON" and len(value.split()) > 1:
            for part in name_parts(value):
                k = _key(part)
                if k not in self._by_value and k not in self._aliases:
                    self._aliases[k] = ph
                    # An English word ("Grace", "Will") only as written; others in any case.
                    self._exact[k] = is_english(part)
        elif entity == "STREET_ADDRESS":
            for piece in street_parts(value):
                k = _key(piece)
                if k != _key(value) and k not in self._by_value:
                    self._aliases.setdefault(k, ph)

    def add(self, values: Iterable[tuple[str, str]]) -> None:
        """Known (type, value) pairs, e.g. found in a chunk at ingest: replaced wherever they occur."""
        for entity, value in values:
            if value.strip():
                self.placeholder(entity, value)

    def note(self, text: str, spans: list[Span] | None = None) -> None:
        """Give the values in ``text`` (``spans``, or detected now) their placeholders."""
        if self.detector is None or not text:
            return
        if spans is None:
            spans = self.detector.detect(text)
        for s in spans:
            self.placeholder(s.type, text[s.start : s.end])

    def pseudonymise(self, text: str, spans: list[Span] | None = None) -> str:
        """``text`` with detected values (``spans``, or detected now) and every value known to
        this request replaced by their placeholders."""
        if self.detector is None or not text:
            return text
        self.note(text, spans)
        return self.replace_known(text)

    def replace_known(self, text: str) -> str:
        if not self._by_placeholder:
            return text
        pattern = self._pattern
        if pattern is None:
            values = [*self._by_placeholder.values(), *self._aliases_as_written()]
            alternatives = []
            for v in sorted(set(values), key=len, reverse=True):
                body = r"\s+".join(re.escape(w) for w in v.split())
                exact = self._exact.get(_key(v), False)
                alternatives.append(
                    (r"(?<!\w)" + body + r"(?!\w)")
                    if exact
                    else (r"(?i:(?<!\w)" + body + r"(?!\w))")
                )
            pattern = self._pattern = re.compile("|".join(alternatives))

        out: list[str] = []
        pos = 0
        for m in pattern.finditer(text):
            if m.start() < pos:
                continue
            k = _key(m.group(0))
            ph = self._by_value.get(k)
            end = m.end()
            if ph is None:
                ph = self._aliases.get(k)
                if ph is not None and NAMED_AFTER.match(text, end):
                    continue  # "Eiffel Tower" while "Gustave Eiffel" is known: a thing's name
                # A part followed by another name word ("molly bryant" after "Molly Jones"):
                # another person of that first name: the whole of it gets its own placeholder.
                nxt = _NEXT_NAME_WORD.match(text, end)
                if (
                    ph is not None
                    and nxt
                    and _same_case(m.group(0), nxt.group(1))
                    and not is_english(nxt.group(1))
                ):
                    end = nxt.end(1)
                    ph = self.placeholder(self._types.get(ph, "PERSON"), text[m.start() : end])
            begin = m.start()
            if ph is not None and k not in self._by_value:
                # ... or a name word before it ("Karin Lie" when only some "Lie" is known).
                prev = _PREV_NAME_WORD.search(text, pos, begin)
                if (
                    prev
                    and prev.group(1)[:1].isupper()
                    and _same_case(m.group(0), prev.group(1))
                    and not is_english(prev.group(1))
                ):
                    begin = prev.start(1)
                    ph = self.placeholder(self._types.get(ph, "PERSON"), text[begin:end])
            out.append(text[pos:begin])
            out.append(ph or m.group(0))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _aliases_as_written(self) -> list[str]:
        # Aliases are keyed casefolded; an exact one must be matched capitalised as in names.
        return [k if not self._exact.get(k) else k[:1].upper() + k[1:] for k in self._aliases]

    def sweep(self, text: str) -> str:
        """``text`` (already pseudonymised) through the recall-first check: what it flags
        gets a placeholder too, so it never leaves and still comes back in the answer."""
        found = sweep(text)
        if not found:
            return text
        for s in found:
            self.placeholder(s.type, text[s.start : s.end])
        return replace_spans(
            text,
            found,
            lambda s: (
                self._by_value.get(_key(text[s.start : s.end]))
                or self._aliases.get(_key(text[s.start : s.end]))
                or f"<{s.type}>"
            ),
        )

    def messages(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Chat messages (question, passages, history) pseudonymised: detected once each."""
        spans = [
            self.detector.detect(m.get("content") or "") if self.detector else [] for m in messages
        ]
        for m, found in zip(messages, spans, strict=True):
            for s in found:
                self.placeholder(s.type, (m.get("content") or "")[s.start : s.end])
        return [
            {**m, "content": self.sweep(self.replace_known(m.get("content") or ""))}
            for m in messages
        ]

    def _back(self, m: re.Match[str], bare: bool = False) -> str:
        entity = m.group(1).upper()
        ph = f"<{entity}_{m.group(2)}>"
        value = self._by_placeholder.get(ph)
        if value is None and (bare or entity not in self._entities):
            return m.group(0)  # an ordinary identifier such as SEV_2 or [ref_1] stays
        if self.answers == "redact" or value is None:
            return f"[{self._types.get(ph, m.group(1).upper())}]"
        return value

    def restore(self, text: str) -> str:
        """Placeholders back to their values (``answers: restore``) or to ``[TYPE]`` (redact);
        one the request never issued becomes ``[TYPE]``: a user never sees a placeholder."""
        text = PLACEHOLDER.sub(self._back, text)
        if self._by_placeholder:
            text = _BARE.sub(lambda m: self._back(m, bare=True), text)
        return text

    def stream(self) -> StreamRestorer:
        return StreamRestorer(self)


class StreamRestorer:
    """``feed(piece)`` returns the text that can be shown; a trailing fragment that may be the
    start of a placeholder is held until it completes (or proves not to be one)."""

    def __init__(self, pseudonymiser: Pseudonymiser):
        self.p = pseudonymiser
        self._pending = ""

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        self._pending = ""
        cut = _hold_from(text)
        if cut is not None:
            text, self._pending = text[:cut], text[cut:]
        return self.p.restore(text)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self.p.restore(text)


def _hold_from(text: str) -> int | None:
    """Where an unfinished placeholder (or a bare ``PERSON_`` at the end) starts, if any."""
    tail = text[-_MAX_PENDING:]
    offset = len(text) - len(tail)
    m = _PARTIAL.search(tail)
    if m:
        return offset + m.start()
    # A bare PERSON_1 may still grow (PERSON_12): hold a trailing upper-case word.
    m = re.search(r"[A-Z][A-Z_]*_?\d*$", tail)
    if m and ("_" in m.group(0) or len(m.group(0)) >= 3):
        return offset + m.start()
    return None


_scrubbers: dict[str, Scrubber] = {}
_scrubbers_lock = threading.Lock()


def scrubber_for(settings: Settings | PiiSettings | None) -> Scrubber:
    """The process's scrubber for ``settings.pii`` (or a :class:`PiiSettings`; None = defaults).

    Cheap: nothing loads until the first ``scrub`` or ``warm_up()``.
    """
    pii = PiiSettings() if settings is None else getattr(settings, "pii", settings)
    assert isinstance(pii, PiiSettings)
    key = pii.model_dump_json()
    with _scrubbers_lock:
        s = _scrubbers.get(key)
        if s is None:
            s = _scrubbers[key] = Scrubber(pii.model_copy(deep=True))
        return s


def scrub_values(text: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``text`` with the given (type, value) pairs, and the parts of them that stand alone (a
    first name, a street line), replaced by ``<TYPE>``. No detection: known values only."""
    p = Pseudonymiser(None)
    p.add(pairs)
    if not p.mapping:
        return text
    issued = p._types
    out = p.replace_known(text)
    return PLACEHOLDER.sub(
        lambda m: f"<{issued[m.group(0)]}>" if m.group(0) in issued else m.group(0), out
    )
