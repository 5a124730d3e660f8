"""Mentions propagate: once a value is found in a text, its parts and repeats there are too.

"Aino Virtanen ... everyone calls me Aino ... aino said": the full name is detected, so "Aino"
and "aino" are PERSON as well; "Mannerheimintie 62, 00100 Helsinki ... the parcel for
Mannerheimintie 62": the street line repeated alone is STREET_ADDRESS. A name written into an
e-mail address ("aino.virtanen@...") marks that name where the text spells it out.
:class:`rag.guards.pii.policy.Pseudonymiser` gives a part the placeholder of its whole value.

No Presidio import: plain :mod:`re` over the text and the spans already found.
"""

from __future__ import annotations

import re

from rag.guards.pii.spans import Span
from rag.guards.pii.text import LO, STOP, UP, ascii_fold, is_english, word_list

__all__ = ["NAMED_AFTER", "name_parts", "names_mentioned", "propagate", "street_parts"]

_PARTICLES = frozenset(
    word_list("van von de der den da di du le la bin al del della dos das do ter ten y e")
)
_SPLIT = re.compile(r"[\s\-]+")
_WORD = re.compile(rf"[{UP}{LO}][{UP}{LO}'’]*")


def name_parts(value: str) -> list[str]:
    """The words of a name that identify it alone: not particles, titles or one letter."""
    parts = []
    for w in _SPLIT.split(value):
        w = w.strip(".,'’()")
        if len(w) < 2 or w.casefold() in _PARTICLES or w.casefold() in STOP:
            continue
        if w.casefold().rstrip(".") in {"mr", "mrs", "ms", "dr", "prof", "miss", "mx"}:
            continue
        parts.append(w)
    return parts


def street_parts(value: str) -> list[str]:
    """The lines (or comma-separated pieces) of an address that hold its street: a piece
    with a house number and a word of at least four letters."""
    pieces = [p.strip() for p in re.split(r"[\n,|·•]", value)]
    return [
        p
        for p in pieces
        if len(p) >= 6 and any(c.isdigit() for c in p) and re.search(r"[^\W\d_]{4}", p)
    ]


def _pattern(value: str, case_insensitive: bool) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w) for w in value.split())
    return re.compile(rf"(?<![\w@.]){body}(?![\w@]|\.\w)", re.IGNORECASE if case_insensitive else 0)


# A surname repeated before one of these is the name of a thing, not of the person (a
# building, a prize, a law): "Gustave Eiffel" found does not make "Eiffel Tower" a person.
# Street words stay out: a street named like the person is an address, scrubbed either way.
NAMED_AFTER = re.compile(
    r"[ \t]+(?:Tower|Bridge|Prize|Award|Medal|Building|Cent(?:er|re)|Hall|Museum|University|"
    r"College|Institute|Foundation|Park|Stadium|Airport|Station|Hospital|Library|Gallery|"
    r"Theat(?:er|re)|Company|Corporation|Law|Effect|Equation|Theorem|Principle|Syndrome|"
    r"Disease|Scale|Constant|Index|Test)\b"
)


def propagate(
    text: str, spans: list[Span], allow: set[str] | frozenset[str] = frozenset()
) -> list[Span]:
    """``spans`` plus every other place in ``text`` where a found name, a part of it, or an
    address's street line appears (same type, the score of the value it repeats)."""
    if not spans:
        return spans
    taken = [(s.start, s.end) for s in spans]
    added: list[Span] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    def mark(
        kind: str, value: str, score: float, case_insensitive: bool, part: bool = False
    ) -> None:
        if value.casefold() in allow:
            return
        for m in _pattern(value, case_insensitive).finditer(text):
            if part and NAMED_AFTER.match(text, m.end()):
                continue  # "Eiffel Tower", "Nobel Prize": a thing named after someone
            if free(m.start(), m.end()):
                taken.append((m.start(), m.end()))
                added.append(Span(kind, m.start(), m.end(), score))

    names = [s for s in spans if s.type == "PERSON"]
    for s in names:
        value = text[s.start : s.end]
        mark("PERSON", value, s.score, True)
        parts = name_parts(value)
        if len(parts) < 2 and len(value.split()) < 2:
            continue
        for part in parts:
            # An English word ("Grace", "Will") repeats only capitalised, others in any case.
            mark("PERSON", part, s.score, not is_english(part), part=True)
    for s in spans:
        if s.type == "STREET_ADDRESS":
            for piece in street_parts(text[s.start : s.end]):
                mark("STREET_ADDRESS", piece, s.score, True)
    # A name spelled out in an e-mail address: "aino.virtanen@..." marks "Aino Virtanen".
    if any(s.type == "EMAIL_ADDRESS" for s in spans):
        for s in spans:
            if s.type != "EMAIL_ADDRESS":
                continue
            local = text[s.start : s.end].split("@", 1)[0]
            for token in re.split(r"[._\-+\d]+", local):
                if len(token) < 3 or is_english(token):
                    continue
                for m in _WORD.finditer(text):
                    word = m.group(0)
                    if ascii_fold(word).casefold() != token.casefold():
                        continue
                    a, b = m.start(), m.end()
                    nxt = re.match(rf"[ \t]+([{UP}][{LO}]+(?:-[{UP}][{LO}]+)?)", text[b:])
                    if nxt and not is_english(nxt.group(1)):
                        b += nxt.end()
                    if free(a, b):
                        taken.append((a, b))
                        added.append(Span("PERSON", a, b, 0.6))
    if not added:
        return spans
    return sorted([*spans, *added], key=lambda s: s.start)


def names_mentioned(text: str, names: list[str]) -> list[str]:
    """The full ``names`` (found elsewhere in the same document) that ``text`` mentions by a
    part alone: "James" in one chunk of a CV whose header said "James O'Neill". A part that is
    an English word counts only capitalised ("Frank", not "frank"), others in any case; a
    part before "Tower", "Prize", ... names a thing, not the person."""
    out = []
    for name in names:
        for part in name_parts(name):
            english = is_english(part)
            if any(
                not NAMED_AFTER.match(text, m.end())
                for m in _pattern(part, not english).finditer(text)
            ):
                out.append(name)
                break
    return out
