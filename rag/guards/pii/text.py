"""Plain-text helpers the PII recognizers share: letter classes for any Latin script, and an
English word list read from the installed spaCy model (no download, no Presidio import).

Why a word list: spaCy small misses names that are not English ("Aino Virtanen", "Wojciech
Zieliński"). A capitalised word that is no English word ("Virtanen") is a strong hint of a
name; one that is ("Backup", "Laptops") is not. The list is the English lemmatizer's own
WordNet index of the model (~88k words), so nothing new is installed.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

__all__ = [
    "DETERMINERS",
    "LO",
    "UP",
    "ascii_fold",
    "company_word",
    "english_words",
    "is_english",
    "load_english_words",
    "word_list",
]

# Upper- and lower-case letters of the Latin scripts (Latin-1, Extended-A/B, Vietnamese).
_RANGES = [(0x41, 0x24F), (0x1E00, 0x1EFF)]
UP = "".join(chr(c) for a, b in _RANGES for c in range(a, b + 1) if chr(c).isupper())
LO = "".join(chr(c) for a, b in _RANGES for c in range(a, b + 1) if chr(c).islower())
UP = re.escape(UP).replace("-", r"\-")
LO = re.escape(LO).replace("-", r"\-")


def word_list(text: str) -> list[str]:
    """The whitespace-separated words of a word-list literal."""
    return text.split()


_lock = threading.Lock()
_words: frozenset[str] = frozenset()

# Function words and the words that open or close the sentences names sit in: never a name.
STOP = frozenset(
    word_list("""a about above after again against all am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each few for from further had hadn't has hasn't have haven't
    having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll
    i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
    not of off on once only or other ought our ours ourselves out over own same shan't she she'd
    she'll she's should shouldn't so some such than that that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those through to too under
    until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where
    where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
    you've your yours yourself yourselves also just still yet now please thanks thank hi hello hey
    dear ok okay yes yeah sure bye cheers regards best kind sorry re fw fwd cc bcc im ive id ill
    its thats dont cant wont didnt doesnt isnt call me mine us via per w/ etc""")
)


# Legal forms and words that make a name a company's ("Holm BA", "Sørensen Gruppen"): the
# long ones in any case, the short ones ("AS", "Oy", "Co") only as written here.
_COMPANY_LONG = frozenset(
    word_list("""gmbh kgaa mbh ltd. limited inc. llc llp plc corp. ltda eireli sarl s.a.s. s.p.a. s.r.l.
    s.r.o. v.o.s. groep gruppen group holding partners consulting solutions sønner söner figli
    hijos filhos fils brothers bros associates associati industries international services
    koninklijke""")
)
_COMPANY_SHORT = frozenset(
    word_list("""BA AS ASA AB Oy Oyj ry GmbH AG KG OHG GbR UG Ltd LLC LLP PLC plc Inc Corp Co co SA SAS
    SpA Srl BV NV VOF Kft Zrt Bt Nyrt ApS A/S I/S IVS e.V. e.K. S.A. B.V. N.V. Sp. S.C. a.s.
    k.s. Sons""")
)


def company_word(word: str) -> bool:
    w = word.strip(",;:()")
    return w in _COMPANY_SHORT or w.rstrip(".") in _COMPANY_SHORT or w.casefold() in _COMPANY_LONG


def load_english_words(nlp: object) -> frozenset[str]:
    """The English lemmatizer's word index of a loaded spaCy pipeline (once per process)."""
    global _words
    with _lock:
        if _words:
            return _words
        words: set[str] = set(STOP)
        try:
            lemmatizer = nlp.get_pipe("lemmatizer")  # type: ignore[attr-defined]
            lookups = lemmatizer.lookups
            for name in ("lemma_index", "lemma_exc"):
                if name not in lookups.tables:
                    continue
                for _, value in lookups.get_table(name).items():
                    if isinstance(value, dict):
                        words.update(k for k in value if isinstance(k, str))
                        for v in value.values():
                            words.update(x for x in v if isinstance(x, str))
                    elif isinstance(value, list | tuple):
                        words.update(x for x in value if isinstance(x, str))
        except Exception:  # noqa: BLE001 - no lemmatizer: the stop words alone
            pass
        _words = frozenset(w for w in words if w.isascii())
        is_english.cache_clear()
        return _words


def english_words() -> frozenset[str]:
    return _words


_CAMEL = re.compile(r"[A-Z][a-z]+")
_SUFFIXES = ("'s", "’s", "s", "es", "ed", "d", "ing", "ly", "er", "est", "ies", "ied")


@lru_cache(maxsize=65536)
def is_english(word: str) -> bool:
    """``word`` (any case) is an English word or a regular form of one; a CamelCase compound of
    English words counts too (``PermissionError``, ``FileNotFoundError``: code, not a name)."""
    w = word.casefold().strip(".,;:'’\"()")
    if not w:
        return True
    parts = _CAMEL.findall(word.strip(".,;:'’\"()"))
    if len(parts) > 1 and "".join(parts) == word.strip(".,;:'’\"()"):
        return all(is_english(p) for p in parts)
    words = _words
    if w in words or w in STOP:
        return True
    if not w.isascii():
        return False
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            base = w[: -len(suffix)]
            if base in words or base + "e" in words or base + "y" in words:
                return True
            if len(base) > 2 and base[-1] == base[-2] and base[:-1] in words:
                return True
    return False


def ascii_fold(text: str) -> str:
    text = text.replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O")
    text = text.replace("đ", "d").replace("Đ", "D").replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# Words before a capitalised word that make it a place or a thing, not a person ("the
# Kirstenbø warehouse", "in Raahe"): articles, possessives, demonstratives, place prepositions.
DETERMINERS = frozenset(
    [
        "the",
        "our",
        "your",
        "their",
        "its",
        "this",
        "that",
        "these",
        "those",
        "a",
        "an",
        "in",
        "at",
        "near",
    ]
)
