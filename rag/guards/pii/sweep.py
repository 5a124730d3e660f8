"""The second, recall-first check on what leaves the process (issue 23): model requests,
Langfuse exports, eval reports, error messages.

The detector decides what is PII with precision in mind; what it misses must still not leave.
:func:`sweep` runs after it, over the same text, and flags more readily:

- e-mail addresses of any shape;
- a value after a context phrase: "my name is …", "call me …", "this is …", "lives at …",
  "address: …", "tel …", "fax …", "phone …";
- digit runs that look like a phone or card number (seven or more digits with the usual
  separators; dates, times, versions and IP-like dotted quads of a version are left alone);
- lines (or comma/bar-separated pieces of a line) that look like part of an address block:
  a unit line ("Apt. 12", "Suite 300", "c/o …"), a street with a house number and a street
  word, a postcode with its city.

Over-flagging costs little here: a model request carries placeholders that are restored in the
answer, a trace or a report reads ``<PHONE_NUMBER>``. Plain :mod:`re`; the address and phone
patterns are :mod:`rag.guards.pii.multilocale`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from rag.guards.pii.engine import Span
from rag.guards.pii.multilocale import _COMMON_AFTER_CUE, _luhn, address_pieces, find_phones
from rag.guards.pii.text import LO, STOP, UP

__all__ = ["sweep", "sweep_values"]

_PLACEHOLDER = re.compile(r"[<\[][A-Za-z_]+(?:_\d{1,4})?[>\]]")
_NAME_CUE = re.compile(
    r"(?i)\b(?:my name is|my name's|name is|i am|i'm|this is|call me|calls me|they call me|"
    r"name:|signed:?|regards,|cheers,|dear|hi|hello|hey|thanks,?|ask for|speak to|"
    r"spoke (?:with|to)|contact person:?)[ \t]+"
)
_ADDRESS_CUE = re.compile(
    r"(?i)\b(?:lives at|live at|living at|resides at|address(?: is)?:?|ship(?:ped)? to|"
    r"deliver(?:ed)? to|send (?:it|them) to|moved to|located at|home is at|stay(?:ing)? at)"
    r"[ \t]+"
)
_PHONE_CUE = re.compile(
    r"(?i)\b(?:tel|tél|telephone|phone|ph|mobile|mob|cell|fax|call me (?:on|at)|ring me on|"
    r"reach me (?:on|at)|whatsapp|sms|text me (?:on|at)|m|t|f|p)[.:]?[ \t]*"
)
# "call me back", "this is urgent": words after a cue that are no names.
_NOT_NAMES = _COMMON_AFTER_CUE | {"back", "later", "asap", "tomorrow", "anytime", "directly"}
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_NAME_WORD = re.compile(rf"[ \t]*([{UP}{LO}][{UP}{LO}'’\-]+)")
_DIGITS = re.compile(r"(?<![\w\-.])(?:\+|00)?\(?\d[\d \t().\-/]{5,24}\d(?![\w\-]|\.\d)")
_NOT_A_NUMBER = re.compile(
    r"^(?:\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?|\d{1,2}[./]\d{1,2}[./]\d{2,4}|"
    r"\d{1,3}(?:\.\d{1,3}){1,2})$"
)


@lru_cache(maxsize=8192)
def sweep_values(line: str) -> tuple[tuple[str, str], ...]:
    """The (type, value) pairs :func:`sweep` flags in one line, remembered: prompt lines and
    passages repeat from request to request."""
    return tuple((s.type, line[s.start : s.end]) for s in sweep(line))


def sweep(text: str, spans: Iterable[Span] | None = None) -> list[Span]:
    """Spans the recall-first check adds to ``spans`` (not overlapping them or placeholders)."""
    if not text or not any(c.isalnum() for c in text):
        return []
    taken = [(s.start, s.end) for s in spans or ()]
    taken += [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    found: list[Span] = []

    def add(kind: str, start: int, end: int) -> None:
        while start < end and text[start] in " \t,.;:'\"":
            start += 1
        while end > start and text[end - 1] in " \t,.;:'\"":
            end -= 1
        if end - start < 2 or not any(c.isalnum() for c in text[start:end]):
            return
        for a, b in taken:
            if start < b and end > a:
                # Only what is not covered yet: the pieces outside earlier spans.
                if start < a:
                    add(kind, start, a)
                if end > b:
                    add(kind, b, end)
                return
        taken.append((start, end))
        found.append(Span(kind, start, end, 0.5))

    for m in _NAME_CUE.finditer(text):
        pos, words = m.end(), 0
        start = end = pos
        while words < 3:
            w = _NAME_WORD.match(text, end)
            if not w or w.group(1).casefold() in STOP or w.group(1).casefold() in _NOT_NAMES:
                break
            if words == 0:
                start = w.start(1)
            end = w.end(1)
            words += 1
        if words:
            add("PERSON", start, end)
    for m in _EMAIL.finditer(text):
        add("EMAIL_ADDRESS", m.start(), m.end())
    for m in _ADDRESS_CUE.finditer(text):
        stop = re.search(r"[\n.;!?](?:\s|$)", text[m.end() : m.end() + 120])
        end = m.end() + (stop.start() if stop else min(120, len(text) - m.end()))
        add("STREET_ADDRESS", m.end(), end)
    for m in _PHONE_CUE.finditer(text):
        d = _DIGITS.match(text, m.end())
        if d and sum(c.isdigit() for c in d.group(0)) >= 5:
            add("PHONE_NUMBER", d.start(), d.end())
    for s, e, _ in find_phones(text):
        add("PHONE_NUMBER", s, e)
    for m in _DIGITS.finditer(text):
        raw = m.group(0).strip()
        digits = "".join(c for c in raw if c.isdigit())
        if len(digits) < 7 or _NOT_A_NUMBER.match(raw):
            continue
        card = 13 <= len(digits) <= 19 and _luhn(digits)
        add("CREDIT_CARD" if card else "PHONE_NUMBER", m.start(), m.start() + len(m.group(0)))
    # Address-like pieces: the whole line piece (between commas, bars, bullets) they sit in.
    for a, b, kind in address_pieces(text):
        if kind == "weak":
            continue
        lo = max(text.rfind(c, 0, a) for c in "\n,;|·•") + 1
        hi = min([i for i in (text.find(c, b) for c in "\n,;|·•") if i >= 0] or [len(text)])
        if hi - lo <= 90:
            add("STREET_ADDRESS", lo, hi)
        else:
            add("STREET_ADDRESS", a, b)
    return sorted(found, key=lambda s: s.start)
