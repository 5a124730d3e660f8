"""Values in a claim must be in the passage it cites: grounded, not weighed.

A claim's *values* — numbers with their units (days, hours, %, EUR, requests per minute),
clock times, dates, versions, code names, e-mail addresses, URLs, amounts and proper names —
are each looked up in the cited passage (:func:`ungrounded`). One the passage lacks, or states
differently, fails the claim, however well its other words match: "Backups are retained for
90 days" is not supported by "Backups are retained for 35 days".

Normalised before they are compared:

- numerals and number words: "two" = 2, "twenty-five" = 25, "1,200" = 1200, "1.5 million";
- units: singular, abbreviations ("hrs", "min", "%", "€"), "business/working day" a day;
  durations convert ("48 hours" = "two days", "two weeks" = "14 days"); a rate keeps its
  denominator ("60 requests per minute" is not "60 requests per hour");
- a range in the passage ("between 2 and 4 hours", "2–4 hours", "up to 200") holds the
  numbers inside it;
- clock times: "02:00" = "2 am" = "2:00 a.m.";
- names: case and a plural "s" ignored, every word of a multi-word name present; the passage's
  title and section headings count as part of it.

:func:`flipped` is the other hard check: a negation ("not", "never", "no longer", "without",
"cannot") or a polar word ("mandatory" / "optional", "at least" / "at most") that the claim
has and the passage sentence it restates does not, or the other way round.

No model, no embedding: a few regular expressions per sentence (microseconds), so it runs
on every sentence of every answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "Value",
    "bound",
    "comparable",
    "flipped",
    "grounded_in",
    "negated",
    "plain",
    "quantities",
    "spells",
    "strip_bounds",
    "ungrounded",
    "values",
]

_NUMBER_WORDS: dict[str, float] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "dozen": 12,
    "single": 1,  # "a single approving review" is "one approving review"
    "twice": 2,
    "thrice": 3,
    "double": 2,
    "half": 0.5,
}
_ORDINALS: dict[str, int] = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "twentieth": 20,
    "thirtieth": 30,
}
_SCALES = {"thousand": 1e3, "million": 1e6, "millions": 1e6, "billion": 1e9, "trillion": 1e12}
# Units: canonical name, and for durations the number of seconds (conversions).
_SECONDS = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "night": 86400.0,
    "week": 7 * 86400.0,
    "fortnight": 14 * 86400.0,
    "month": 30 * 86400.0,
    "quarter": 91 * 86400.0,
    "year": 365 * 86400.0,
    "decade": 3650 * 86400.0,
    "century": 36500 * 86400.0,
}
_UNIT_ALIASES: dict[str, str] = {
    "s": "second",
    "sec": "second",
    "secs": "second",
    "seconds": "second",
    "ms": "millisecond",
    "milliseconds": "millisecond",
    "min": "minute",
    "mins": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hours": "hour",
    "d": "day",
    "days": "day",
    "nights": "night",
    "weeks": "week",
    "wk": "week",
    "wks": "week",
    "fortnights": "fortnight",
    "months": "month",
    "mo": "month",
    "quarters": "quarter",
    "years": "year",
    "yr": "year",
    "yrs": "year",
    "decades": "decade",
    "centuries": "century",
    "%": "percent",
    "percent": "percent",
    "per cent": "percent",
    "percentage": "percent",
    "€": "eur",
    "eur": "eur",
    "euro": "eur",
    "euros": "eur",
    "$": "usd",
    "usd": "usd",
    "dollar": "usd",
    "dollars": "usd",
    "£": "gbp",
    "gbp": "gbp",
    "pound": "gbp",
    "pounds": "gbp",
    "chf": "chf",
    "gb": "gb",
    "mb": "mb",
    "tb": "tb",
    "kb": "kb",
    "gib": "gb",
    "mib": "mb",
    "req": "request",
    "reqs": "request",
}
# Words between a number and its unit that change nothing ("35 full days", "5 business days").
_UNIT_FILLERS = frozenset(
    """
    more full extra additional calendar business working consecutive whole straight
    further other paid
    """.split()  # noqa: SIM905 - a word list reads best as words
)
# Words after a number that are no unit ("one of", "2 and 4", "five times as").
_NOT_UNITS = frozenset(
    """
    of and or to a an the that which who whom whose is are was were be been being by for
    in on at as with from than per each every times it its this these those after before
    within until should must can could will would may might shall do does did has have
    had not also only more less about into over under out up down off if so but nor yet
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_RATE = re.compile(
    r"^\s*(?:per|a|an|each|every|/)\s*(second|sec|minute|min|hour|hr|day|week|month|quarter|year)s?\b",
    re.IGNORECASE,
)
# "every 90 days", "each 3 months": the number says how often
_EVERY_BEFORE = re.compile(r"\b(?:every|each)\s+$", re.IGNORECASE)
_NUMERAL = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_WORDS_RE = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_UNITS_RE = "one|two|three|four|five|six|seven|eight|nine"
_NUMBER = re.compile(
    rf"(?P<cur>[€$£]\s?)?(?P<num>{_NUMERAL}|(?:{_TENS})-(?:{_UNITS_RE})|(?<![\w-])(?:{_WORDS_RE})(?![\w-]))"
    r"(?:\s?(?P<scale>thousand|million|millions|billion|trillion|k\b))?",
    re.IGNORECASE,
)
_ORDINAL = re.compile(
    rf"\b(?P<ord>{'|'.join(_ORDINALS)}|\d+(?:st|nd|rd|th))\s+(?P<unit>"
    r"second|minute|hour|day|night|week|month|quarter|year|business day|working day)s?\b"
    r"|\b(?P<unit2>day|week|month|year|quarter|level|step|tier)\s+(?P<num2>\d+|"
    + _UNITS_RE
    + r"|ten)\b",
    re.IGNORECASE,
)
_CLOCK = re.compile(
    r"\b(?P<h>[01]?\d|2[0-3])(?::(?P<m>[0-5]\d))?\s*(?P<ampm>a\.?m\.?|p\.?m\.?)(?![\w])"
    r"|\b(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)\b"
    r"|\b(?P<word>noon|midnight)\b",
    re.IGNORECASE,
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
_MONTH_ABBR = {m[:3]: i for m, i in _MONTHS.items()}
_DAY_MONTH = re.compile(
    r"\b(?P<d1>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m1>[A-Z][a-z]+)\b"
    r"|\b(?P<m2>[A-Z][a-z]+)\s+(?P<d2>\d{1,2})(?:st|nd|rd|th)?\b(?![:.]\d)"
)
_RANGE_END = re.compile(
    rf"\s*(?P<sep>-|–|—|\bto\b|\band\b)\s*(?P<hi>{_NUMERAL}|{_WORDS_RE})\b", re.IGNORECASE
)
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\bhttps?://[^\s<>()\]]+|\bwww\.[^\s<>()\]]+", re.IGNORECASE)
_BACKTICK = re.compile(r"`([^`]+)`")
# Code names: dotted (sys.argv), called (zip()), snake_case, __dunder__, letters-and-digits
# tokens (sqlite3, SEV1, AES-256, eu-west-2), CamelCase, command-line options.
_CODE = re.compile(
    r"(?<![\w.])(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?"
    r"|[A-Za-z_]\w*\(\)"
    r"|_*[a-z]+_[a-z_0-9]+|__\w+__"
    r"|[A-Za-z]+(?:-[A-Za-z]+)*-?\d+[\w-]*"
    r"|[A-Z][a-z]+[A-Z]\w*"
    r"|\d+[A-Z][a-z]\w*"  # a product named with a leading digit: 1Password, 7Zip
    r"|--?[a-z][\w-]+)(?![\w])"
)
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|esp|viz)\.(?!\w)", re.IGNORECASE)
# A team, department or desk named by the word before it ("the platform team", "the legal
# department"): a name the passage must say, as a capitalised one ("the security team" is not
# "the platform team", though only one word differs).
_NAMED_GROUP = re.compile(
    r"\b(?P<name>[a-z][a-z-]+)\s+(?:team|teams|department|departments|desk|squad|office|wiki|"
    r"portal|helpdesk|handbook|dashboard)\b"
)
_NOT_GROUP_NAMES = frozenset(
    """
    a an the this that these those our your their its his her my same whole entire other
    another each every any some new own one which what whose right wrong relevant responsible
    respective appropriate affected on-call
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_VERSION = re.compile(r"(?<![\w.])v?\d+(?:\.\d+){1,3}(?![\w.]|\.\d)")
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’\-])*")  # letters, accented ones too
# Capitalised words that are not names: sentence openers and the like, seen capitalised
# mid-sentence after a colon or in a title-cased heading a model copies.
_COMMON_CAPS = frozenset(
    """
    i a an the this that these those it its they their there here he she we you your our
    my his her what when where which who why how if and or but so yes no not all any
    each every some after before during once while for from with by in on at to of as
    also note please see however
    """.split()  # noqa: SIM905 - a word list reads best as words
)
# Units written in capitals are the number's, not names of their own.
_NOT_NAMES = re.compile(r"\b(?:EUR|USD|GBP|CHF|GB|MB|TB|KB|GiB|MiB|AM|PM)\b")
_MONTH_OR_DAY = re.compile(
    r"^(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday)s?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Value:
    """One value of a text: ``kind`` is number, clock, date, code, email, url or name."""

    kind: str
    text: str  # as written
    number: float | None = None  # number, clock (minutes), date (month*100 + day)
    unit: str | None = None  # canonical unit of a number ("day", "eur", "percent", "request")
    rate: str | None = None  # "60 requests per minute": "minute"
    key: str = ""  # the normalised form of a non-number value
    high: float | None = None  # a range's upper end ("2–4 hours": number 2, high 4)
    tail: tuple[str, ...] = ()  # a number's next words ("120 parking spaces": parking, space)
    every: bool = False  # how often ("every 90 days"), not how long ("for 90 days")


def _singular(word: str) -> str:
    w = word.lower().strip("'’-")
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _canonical_unit(word: str) -> str:
    w = word.lower()
    if w in _UNIT_ALIASES:
        return _UNIT_ALIASES[w]
    return _singular(w)


def _to_number(text: str) -> float | None:
    t = text.lower().replace(",", "")
    if t in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[t])
    if "-" in t:
        tens, _, unit = t.partition("-")
        if tens in _NUMBER_WORDS and unit in _NUMBER_WORDS:
            return float(_NUMBER_WORDS[tens] + _NUMBER_WORDS[unit])
        return None
    try:
        return float(t)
    except ValueError:
        return None


_ONE_NOT_A_NUMBER = re.compile(
    r"^\s*(?:of|that|which|who|another|or|and|else|by|at|can|could|may|might|must|should|"
    r"will|would|is|was|has|had|does|did)\b|^\s*[,.;:!?)]|^\s*$",
    re.IGNORECASE,
)


def _unit_after(text: str, end: int) -> tuple[str | None, str | None, int, tuple[str, ...]]:
    """(unit, rate, end of the unit, the next few words) of the number ending at ``end``."""
    rest = text[end:]
    tail = tuple(_singular(w) for w in re.findall(r"[A-Za-z]+", rest[:40])[:4])
    m = re.match(r"\s*(%|per cent\b|percent\b)", rest, re.IGNORECASE)
    if m:
        return "percent", None, end + m.end(), tail
    words = list(re.finditer(r"[A-Za-z€$£]+", rest[:60]))
    unit = None
    unit_end = end
    if words and re.fullmatch(r"[\s-]*", rest[: words[0].start()]):
        i = 0
        while i < len(words) - 1 and words[i].group(0).lower() in _UNIT_FILLERS:
            if not re.fullmatch(r"[\s-]*", rest[words[i].end() : words[i + 1].start()]):
                break
            i += 1
        word = words[i].group(0)
        if word.lower() not in _NOT_UNITS and word.lower() not in _UNIT_FILLERS:
            unit = _canonical_unit(word)
            unit_end = end + words[i].end()
    rate = None
    r = _RATE.match(text[unit_end:])
    if r:
        rate = _canonical_unit(r.group(1))
    return unit, rate, unit_end, tail


# "for a week", "within an hour", "lasts a full month": one unit of time ("once a week" is a rate)
_ONE_UNIT = re.compile(
    r"\b(?:for|within|in|after|lasts?|lasting|takes?|taking|about|over|under|than|of|is|are|"
    r"was|were|be|been|around|roughly|approximately|nearly|almost|just|only|least|most|to)\s+"
    r"(?P<n>(?:a|an)(?:\s+full|\s+whole)?)\s+"
    r"(?P<unit>second|minute|hour|day|week|fortnight|month|quarter|year)\b",
    re.IGNORECASE,
)


# -- quantity expressions, said as numbers ---------------------------------------------------
# A model says a quantity in words a passage writes in digits ("a quarter of an hour" for 15
# minutes, "one hundred and twenty" for 120, "a fourteen-character password"): each class of
# such expression is rewritten to the number it means, in claims and passages alike, before
# the numbers are read. Fractions of a unit become decimals of it ("0.25 hour"), which the
# duration conversion then compares with any other unit.
_SMALL_NUMBER = (
    r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-](?:one|two|three|"
    r"four|five|six|seven|eight|nine))?|one|two|three|four|five|six|seven|eight|nine|ten|"
    r"eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
)
_TIME_UNIT = r"(?:second|minute|hour|day|night|week|month|year)"
_BIG_NUMBER = re.compile(
    rf"\b{_SMALL_NUMBER}\s+(?:hundred|thousand)(?:(?:\s+and)?\s+(?:{_SMALL_NUMBER}|hundred|"
    rf"thousand)\b)*",
    re.IGNORECASE,
)
_FREQUENCY_UNIT = {
    "nightly": "day",
    "daily": "day",
    "weekly": "week",
    "monthly": "month",
    "yearly": "year",
    "annually": "year",
    "annual": "year",
    "hourly": "hour",
    "night": "day",
}
_FRACTIONS = {"half": 0.5, "quarter": 0.25, "third": 1 / 3, "three quarters": 0.75}
_QUANTITY_PHRASES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), rewrite)
    for pattern, rewrite in (
        # "a quarter of an hour", "a half-day", "three quarters of an hour", "half a day"
        # ("the third day" is a position, read as one elsewhere)
        (
            rf"\b(?:a|one)\s+(?P<f>half|quarter|third)(?:\s+of\s+an?)?[\s-]+(?P<u>{_TIME_UNIT})\b"
            rf"|\b(?P<f2>three\s+quarters|half)\s+(?:of\s+)?an?\s+(?P<u2>{_TIME_UNIT})\b",
            lambda m: "{:.12g} {}s".format(
                _FRACTIONS[" ".join((m.group("f") or m.group("f2")).lower().split())],
                m.group("u") or m.group("u2"),
            ),
        ),
        # "an hour and a half", "a day and a half", "two and a half days", "1 and a half hours"
        (
            rf"\b(?:an?|one)\s+(?P<u>{_TIME_UNIT})\s+and\s+a\s+half\b",
            lambda m: f"1.5 {m.group('u')}s",
        ),
        (
            rf"\b(?P<n>{_SMALL_NUMBER}|\d+)\s+and\s+a\s+half\s+(?P<u>[a-z]+)",
            lambda m: f"{(_to_number(m.group('n').replace(' ', '-')) or 0) + 0.5:g} {m.group('u')}",
        ),
        # "a couple of days", "a pair of keys", "half a dozen", "a dozen"
        (r"\ba\s+(?:couple|pair)(?:\s+of)?\b", lambda m: "2"),
        (r"\bhalf\s+a\s+dozen\b", lambda m: "6"),
        (r"\ba\s+dozen\b", lambda m: "12"),
        # how often, one form: "every other week" is every 2 weeks; "nightly", "each night",
        # "once a day" are every 1 days; "quarterly" and "every quarter" every 3 months
        (rf"\bevery\s+other\s+(?P<u>{_TIME_UNIT})\b", lambda m: f"every 2 {m.group('u')}s"),
        (r"\bfortnightly\b|\bevery\s+fortnight\b", lambda m: "every 2 weeks"),
        (
            r"\bquarterly\b|\b(?:every|each|once\s+(?:a|per))\s+quarter\b",
            lambda m: "every 3 months",
        ),
        (
            r"\b(?:every|each|once\s+(?:a|an|per))\s+(?P<u>night|day|week|month|year|hour|minute)\b"
            r"|\b(?P<adj>nightly|daily|weekly|monthly|yearly|annually|annual|hourly)\b",
            lambda m: "every 1 {}s".format(
                _FREQUENCY_UNIT.get((m.group("adj") or m.group("u")).lower(), m.group("u"))
            ),
        ),
        # "req/s", "rps", "rpm": requests per second / minute
        (r"\b(?:req(?:uest)?s?\s*/\s*s(?:ec(?:ond)?)?|rps|qps)\b", lambda m: "requests per second"),
        (r"\b(?:req(?:uest)?s?\s*/\s*min(?:ute)?|rpm)\b", lambda m: "requests per minute"),
        (
            r"(?<=\d)\s*/\s*(?P<u>s|sec|min|h|hr|d|day|wk|week)\b",
            lambda m: " per " + _UNIT_ALIASES.get(m.group("u").lower(), m.group("u")),
        ),
    )
)
# A spelled-out number joined to its unit ("fourteen-character", "five-minute", "two-week"):
# the number in digits, as "14-character" is read ("one-" only with a unit of time:
# "one-off", "one-time" count nothing).
_HYPHENED_NUMBER = re.compile(
    rf"\b(?P<n>{_SMALL_NUMBER}(?<!\bone))-(?!(?:one|two|three|four|five|six|seven|eight|nine)\b)"
    rf"(?=[a-z])|\bone-(?={_TIME_UNIT}\b)",
    re.IGNORECASE,
)


def _big_number(m: re.Match[str]) -> str:
    total, current = 0.0, 0.0
    for word in re.findall(r"[a-z]+(?:-[a-z]+)?", m.group(0).lower()):
        if word == "and":
            continue
        if word == "hundred":
            current = (current or 1) * 100
        elif word == "thousand":
            total += (current or 1) * 1000
            current = 0
        else:
            current += _to_number(word) or 0
    return f"{total + current:g}"


@functools.lru_cache(maxsize=8192)
def quantities(text: str) -> str:
    """``text`` with its quantity expressions said as numbers ("within a quarter of an hour"
    -> "within 0.25 hours", "one hundred and twenty" -> "120", "a fourteen-character" -> "a
    14-character", "60 req/s" -> "60 requests per second"): what :func:`values` reads."""
    text = _BIG_NUMBER.sub(_big_number, text)
    for pattern, rewrite in _QUANTITY_PHRASES:
        text = pattern.sub(rewrite, text)
    return _HYPHENED_NUMBER.sub(
        lambda m: f"{_to_number((m.group('n') or 'one').replace(' ', '-')):g}-", text
    )


def _numbers(text: str) -> list[Value]:
    out: list[Value] = []
    taken: list[tuple[int, int]] = []

    def free(start: int) -> bool:
        return not any(a <= start < b for a, b in taken)

    for pattern in (_EMAIL, _URL):  # their digits are no numbers
        taken.extend(m.span() for m in pattern.finditer(text))
    for m in _CLOCK.finditer(text):
        if not free(m.start()):
            continue
        if m.group("word"):
            minutes = 720.0 if m.group("word").lower() == "noon" else 0.0
        elif m.group("h24") is not None:
            minutes = int(m.group("h24")) * 60.0 + int(m.group("m24"))
        else:
            hour = int(m.group("h")) % 12
            if m.group("ampm").lower().startswith("p"):
                hour += 12
            minutes = hour * 60.0 + int(m.group("m") or 0)
        out.append(Value("clock", m.group(0), number=minutes))
        taken.append(m.span())
    for m in _DATE_ISO.finditer(text):
        if free(m.start()):
            taken.append(m.span())
            out.append(Value("code", m.group(0), key=m.group(0)))
    for m in _DAY_MONTH.finditer(text):
        if not free(m.start()):
            continue
        month_word = (m.group("m1") or m.group("m2")).lower()
        month = _MONTHS.get(month_word) or _MONTH_ABBR.get(month_word)
        if month:
            day = int(m.group("d1") or m.group("d2"))
            out.append(Value("date", m.group(0), number=month * 100.0 + day))
            taken.append(m.span())
    for m in _ORDINAL.finditer(text):
        if not free(m.start()):
            continue
        if m.group("ord"):
            raw = m.group("ord").lower()
            n = _ORDINALS.get(raw)
            if n is None:
                n = int(re.sub(r"\D", "", raw))
            of = _canonical_unit(m.group("unit").split()[-1])
        else:
            n = int(_to_number(m.group("num2")) or 0)
            of = _canonical_unit(m.group("unit2"))
        # "the third day" and "day three" are one value: a position, kept apart from counts
        out.append(Value("number", m.group(0), number=float(n), unit=f"#{of}"))
        taken.append(m.span())
    for m in _VERSION.finditer(text):
        if not free(m.start()):
            continue
        before = text[max(0, m.start() - 16) : m.start()]
        # "v2", "1.2.3", "Python 3.11", "version 4.2", "TLS 1.2": a version, compared as written
        if (
            m.group(0).startswith("v")
            or m.group(0).count(".") > 1
            or re.search(r"(?:\b[A-Z][\w-]*|\bversion|\brelease)\s$", before)
        ):
            out.append(Value("code", m.group(0), key=m.group(0).lower().lstrip("v")))
            taken.append(m.span())
    for m in _NUMBER.finditer(text):
        start = m.start("num")
        if not free(start):
            continue
        raw = m.group("num")
        low = raw.lower()
        after = text[m.end("num") :]
        if raw[0].isdigit():
            # part of a code name ("SEV1", "eu-west-2", "AES-256", "sqlite3")
            if start > 0 and (text[start - 1].isalpha() or text[start - 1] in "-_"):
                continue
            glued = after[:1].isalpha() or after[:1] == "_"
            if glued and not re.match(r"(?:st|nd|rd|th|k|m|h|s|d|am|pm|ms)\b", after, re.I):
                continue
        elif low == "one" and (
            _ONE_NOT_A_NUMBER.match(after)
            or re.search(
                r"\b(?:no|any|each|every|the|this|that|which)\s+$", text[:start], re.IGNORECASE
            )
        ):
            continue  # "one of", "no one", "the one that": a pronoun, not a count
        elif low in ("half", "double"):
            continue  # "half of", "double-check": rarely the value a claim turns on
        elif low == "single" and not re.search(r"\b(?:a|one)\s+$", text[:start], re.IGNORECASE):
            continue  # "a single review" counts one; "single sign-on", "single point" name
        number = _to_number(raw)
        if number is None:
            continue
        scale = (m.group("scale") or "").lower()
        number *= 1e3 if scale == "k" else _SCALES.get(scale, 1.0)
        end = m.end()
        high = None
        # a range: "2-4 hours", "2 to 4 hours", "between 2 and 4 hours", "from 2 to 4"
        r = _RANGE_END.match(text[end:])
        if r and (
            r.group("sep").strip() in "-–—"
            or re.search(r"\b(?:between|from)\s+[€$£]?$", text[: m.start()], re.IGNORECASE)
        ):
            hi = _to_number(r.group("hi"))
            if hi is not None and hi > number:
                high = hi
                end += r.end()
        unit, rate, unit_end, tail = _unit_after(text, end)
        if m.group("cur"):
            unit = _UNIT_ALIASES[m.group("cur").strip()]
        else:
            cur = re.search(r"\b(EUR|USD|GBP|CHF)\s?$", text[: m.start()])  # "EUR 500"
            if cur:
                unit = cur.group(1).lower()
        stop = max(end, unit_end)
        out.append(
            Value(
                "number",
                text[m.start() : stop],
                number=number,
                unit=unit,
                rate=rate,
                high=high,
                tail=tail,
                every=bool(_EVERY_BEFORE.search(text[: m.start()])),
            )
        )
        taken.append((m.start(), stop))
    # "for a week", "within an hour", "lasts a full month": one unit of time, a duration as
    # much as "7 days" is ("once a week", "twice a day" are rates: not these)
    for m in _ONE_UNIT.finditer(text):
        if free(m.start("n")):
            unit = _canonical_unit(m.group("unit"))
            out.append(Value("number", text[m.start("n") : m.end()], number=1.0, unit=unit))
            taken.append((m.start("n"), m.end()))
    return out


def _names(text: str) -> list[Value]:
    """Capitalised words that are not the sentence's first (unless they plainly name
    something: an acronym, "Gustave Eiffel designed ..."), e-mails, URLs and code names."""
    out: list[Value] = []
    masked = text
    for pattern, kind in ((_EMAIL, "email"), (_URL, "url")):
        for m in pattern.finditer(masked):
            out.append(Value(kind, m.group(0), key=m.group(0).lower().rstrip(".,;")))
        masked = pattern.sub(lambda m: " " * len(m.group(0)), masked)
    masked = _CLOCK.sub(lambda m: " " * len(m.group(0)), masked)
    for m in _BACKTICK.finditer(masked):
        out.append(Value("code", m.group(0), key=" ".join(m.group(1).lower().split())))
    masked = _BACKTICK.sub(lambda m: " " * len(m.group(0)), masked)
    # "e.g.", "i.e.": abbreviations, not dotted code names
    masked = _ABBREVIATION.sub(lambda m: " " * len(m.group(0)), masked)
    for m in _CODE.finditer(masked):
        token = m.group(0)
        if not any(c.isdigit() for c in token) and not re.search(r"[._()]|[a-z][A-Z]|^-", token):
            continue
        if re.fullmatch(r"\d+(?:st|nd|rd|th)", token):
            continue
        out.append(Value("code", token, key=token.lower().rstrip("()")))
    masked = _CODE.sub(lambda m: " " * len(m.group(0)), masked)
    for m in _NAMED_GROUP.finditer(masked):
        if m.group("name") not in _NOT_GROUP_NAMES:
            out.append(Value("name", m.group(0), key=m.group(0).lower()))
    masked = _NOT_NAMES.sub(lambda m: " " * len(m.group(0)), masked)
    words = list(_WORD.finditer(masked))
    for i, m in enumerate(words):
        w = m.group(0).strip("'’-")
        acronym = w.isupper() and len(w) > 1  # "IT", "HR": a team, not the pronoun
        # "It's", "That's", "Let's": a common word run together with "is" or "us"
        base = re.sub(r"['’]s$", "", w).lower()
        if not w or not w[0].isupper() or (base in _COMMON_CAPS | {"let"} and not acronym):
            continue
        before = masked[: m.start()].rstrip()
        # the first word of a sentence, a list item or a quoted sentence is capitalised anyway
        opens = (
            not before
            or before[-1] in ".!?•*"
            or before.endswith("\n")
            or (before[-1] in '"“(-' and (len(before) < 2 or before[:-1].rstrip()[-1:] in ".!?:"))
        )
        if opens:
            nxt = words[i + 1].group(0) if i + 1 < len(words) else ""
            followed = (
                bool(nxt)
                and nxt[0].isupper()
                and nxt.lower() not in _COMMON_CAPS
                and re.fullmatch(r"\s+", masked[m.end() : words[i + 1].start()]) is not None
            )
            if not acronym and not w.endswith(("'s", "’s")) and not followed:
                continue
        out.append(Value("name", w, key=_singular(re.sub(r"['’]s$", "", w))))
    return out


def values(text: str) -> list[Value]:
    """Every value of ``text``: numbers (with units and ranges), clock times, dates, versions,
    code names, e-mails, URLs and proper names."""
    return list(_values(text))


@functools.lru_cache(maxsize=8192)
def _values(text: str) -> tuple[Value, ...]:
    # a claim is checked against every passage, a question with every sentence: parse once
    text = quantities(text)
    return (*_numbers(text), *_names(text))


@functools.lru_cache(maxsize=4096)
def _passage_facts(text: str) -> tuple[tuple[Value, ...], frozenset[str], str]:
    """A passage's values, its words (lower case, singular) and its flattened text: computed
    once per passage text (passages repeat across the sentences of an answer and across
    answers)."""
    found = _values(text)
    # an ISO date, alone or inside a name ("inc-2026-03-14-billing"), says the day and the
    # year a claim may write in words ("a billing incident on March 14, 2026")
    found += tuple(
        v
        for m in _DATE_ISO.finditer(text)
        if 1 <= int(m.group("mo")) <= 12
        for v in (
            Value("date", m.group(0), number=int(m.group("mo")) * 100.0 + int(m.group("d"))),
            Value("number", m.group("y"), number=float(m.group("y"))),
        )
    )
    words = frozenset(_singular(w) for w in _WORD.findall(text)) | frozenset(
        w.lower() for w in _WORD.findall(text)
    )
    flat = " ".join(text.lower().split())
    return found, words, flat


def _same_amount(a: Value, b: Value) -> bool:
    """``a`` (a claim's number) is what ``b`` (a passage's) says, units compatible."""
    assert a.number is not None and b.number is not None
    ua, ub = a.unit, b.unit
    if a.rate and b.rate and a.rate != b.rate:
        return False
    if a.every != b.every and ua != ub:
        # how often is not how long: "every quarter" (every 3 months) holds no "90 days" of
        # retention; said in the same unit ("rotated every 90 days" / "90-day rotation") it
        # is the same number
        return False
    if ua in _SECONDS and ub in _SECONDS:  # durations convert: 48 hours = two days
        sa = a.number * _SECONDS[ua]
        lo, hi = b.number * _SECONDS[ub], (b.high or b.number) * _SECONDS[ub]
        return lo - 1e-6 <= sa <= hi + 1e-6
    if not b.number - 1e-9 <= a.number <= (b.high or b.number) + 1e-9:
        return False
    if ua == ub or ua is None:
        return True
    if ub is None:
        # "4 weeks" is not what a bare "4" says ("Articles 4 and 5"); "two regions" may be
        return not _known(ua) and not ua.startswith("#")
    # "120 spaces" / "120 parking spaces"; two units that differ are two values: "35 days" /
    # "35 hours", "500 EUR" / "500 USD", "5 days" / "5 requests"
    return ua in b.tail or ub in a.tail


_KNOWN_UNITS = frozenset(_SECONDS) | frozenset(_UNIT_ALIASES.values())


def _known(unit: str) -> bool:
    """A unit of measure (time, money, percent, size), not just a noun after a number."""
    return unit in _KNOWN_UNITS


@functools.lru_cache(maxsize=4096)
def _initials(flat: str) -> str:
    """The first letters of ``flat``'s words, hyphenated parts apart ("multi-factor
    authentication" -> "mfa"), one space where a sentence or clause breaks."""
    out = []
    for m in re.finditer(r"[^\W\d_]+|[.,;:!?()]", flat):
        out.append(m.group(0)[0] if m.group(0)[0].isalpha() else " ")
    return "".join(out)


def spells(acronym: str, text: str) -> bool:
    """Whether ``text`` says the words ``acronym`` (an all-capitals name: "MFA", "SSO",
    "RTO") stands for, as consecutive words' initials ("multi-factor authentication",
    "single sign-on", "recovery time objective")."""
    short = acronym.lower().rstrip("s") if acronym[-1:] == "s" else acronym.lower()
    return len(short) >= 2 and short in _initials(" ".join(text.lower().split()))


def _grounded(value: Value, facts: tuple[Value, ...], words: frozenset[str], flat: str) -> bool:
    if value.kind == "number":
        assert value.number is not None
        if value.unit and value.unit.startswith("#"):  # a position: "day three", "third day"
            return any(f.unit == value.unit and f.number == value.number for f in facts)
        amounts = [
            f
            for f in facts
            if f.kind == "number" and f.number is not None and not (f.unit or "").startswith("#")
        ]
        ends = [value.number] if value.high is None else [value.number, value.high]
        return all(
            any(_same_amount(replace(value, number=n, high=None), f) for f in amounts) for n in ends
        )
    if value.kind in ("clock", "date"):
        return any(f.kind == value.kind and f.number == value.number for f in facts)
    if value.kind in ("email", "url", "code"):
        return bool(value.key) and (value.key in flat or any(f.key == value.key for f in facts))
    if value.kind == "name":
        if value.key in words or value.text.lower() in words:
            return True
        if _MONTH_OR_DAY.match(value.text):  # "Mondays", "Sept"
            month = _MONTH_ABBR.get(value.text.lower()[:3])
            if month and any(
                f.kind == "date" and f.number is not None and int(f.number) // 100 == month
                for f in facts
            ):
                return True  # "March" of a date the passage writes 2026-03-14
            return value.text.lower()[:3] in {w[:3] for w in words if _MONTH_OR_DAY.match(w)}
        if value.text.lower() in flat:
            return True
        # an acronym the passage spells out: "MFA" for "multi-factor authentication"
        return (
            len(value.text) <= 6 and value.text.rstrip("s").isupper() and spells(value.text, flat)
        )
    return True  # pragma: no cover - every kind is handled above


def comparable(a: Value, b: Value) -> bool:
    """Whether ``a`` and ``b`` measure the same kind of thing, so that one could be said in
    place of the other: two clock times, two dates, two durations ("35 days", "13 months"),
    two amounts of one unit ("60 requests per minute", "1,200 requests per minute"), two
    members of one series of code names ("SEV1", "SEV2")."""
    if a.kind != b.kind or a.kind not in ("number", "clock", "date", "code"):
        return False
    if a.kind == "code":  # one series, another member: "SEV1" / "SEV2", "v2" / "v3"
        return bool(re.search(r"\d", a.key)) and re.sub(r"\d+", "#", a.key) == re.sub(
            r"\d+", "#", b.key
        )
    if a.kind != "number":
        return True
    if (a.unit or "").startswith("#") or (b.unit or "").startswith("#"):
        return a.unit == b.unit
    return a.unit == b.unit or (a.unit in _SECONDS and b.unit in _SECONDS)


def grounded_in(value: Value, text: str) -> bool:
    """Whether ``text`` states ``value`` (normalised as :func:`ungrounded` compares)."""
    facts, words, flat = _passage_facts(text)
    return _grounded(value, facts, words, flat)


def _key(v: Value) -> tuple[object, ...]:
    return (v.kind, v.number, v.key.lower())


def ungrounded(
    claim: str,
    passages: Sequence[str],
    given: Iterable[str] = (),
    anywhere: Sequence[str] = (),
) -> list[Value]:
    """The values of ``claim`` that none of ``passages`` (texts, headings included) holds.

    ``given``: texts the claim may take values from without a passage saying them where it
    restates them: the question. Its names need no passage at all (the question's
    "Northwind" when the passage says "the company"); its other values ("... returns 429")
    may be anywhere in ``anywhere`` (the whole passages) rather than in ``passages``."""
    facts_list = [_passage_facts(p) for p in passages if p]
    wide = [_passage_facts(p) for p in anywhere if p]
    given_words: set[str] = set()
    given_values: set[tuple[object, ...]] = set()
    for g in given:
        given_words.update(_singular(w) for w in _WORD.findall(g))
        given_values.update(_key(v) for v in values(g))
    missing = []
    for v in values(claim):
        if v.kind == "name" and v.key in given_words:
            continue
        if any(_grounded(v, facts, words, flat) for facts, words, flat in facts_list):
            continue
        if _key(v) in given_values and any(
            _grounded(v, facts, words, flat) for facts, words, flat in wide
        ):
            continue
        missing.append(v)
    return missing


# -- polarity ------------------------------------------------------------------------------
# Ways of saying no, one class: each counts as one negation, so a claim and a passage agree
# when both negate (an even count each) or neither does, however each says it — "cannot",
# "unable to", "not able to", "impossible", "not allowed", "prohibited", "never", "avoid",
# "better not", "should not", "must not".
_NEGATION = re.compile(
    r"\b(?:not|never|no|none|nobody|nothing|neither|nor|without|cannot|can't|won't|"
    r"isn't|aren't|wasn't|weren't|don't|doesn't|didn't|mustn't|shouldn't|needn't|"
    r"hasn't|haven't|hadn't|couldn't|wouldn't|forbidden|prohibited|disallowed|banned|"
    r"unable|impossible|avoid|avoids|avoided|avoiding|refrain|refrains)\b"
    r"|n[’']t\b",
    re.IGNORECASE,
)
# "no longer" flips a state on its own: "X is no longer supported" / "X is supported".
_NO_LONGER = re.compile(r"\b(?:no\s+longer|not\s+any\s*more|any\s+longer)\b", re.IGNORECASE)
# Words that say a negated requirement or state in one word, read as the negation they are:
# "optional" is "not required" (so "not optional" is "required"), "unencrypted" is "not
# encrypted".
_NEGATED_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\b(?:mandatory|compulsory|obligatory)\b", "required"),
        (r"\boptional\b", "not required"),
        (r"\bunencrypted\b", "not encrypted"),
        # "turned off" is "not on": "encryption turned off" says the opposite of "uses it"
        (r"\b(?:turn(?:s|ed)?|switch(?:es|ed)?|shut(?:s)?)\s+off\b|\bdisabled?\b", "not enabled"),
    )
)
# Pairs of words that say opposite things about the same subject.
_POLES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(a, re.IGNORECASE), re.compile(b, re.IGNORECASE))
    for a, b in (
        (
            r"\bat\s+least\b|\bminimum\b|\bor\s+more\b",
            r"\bat\s+most\b|\bmaximum\b|\bor\s+(?:less|fewer)\b|\bup\s+to\b",
        ),
        (r"\balways\b", r"\bnever\b"),
        # a bound on a number: "flights under six hours" is not "flights over six hours"
        (
            rf"\b(?:under|below|less\s+than|shorter\s+than|fewer\s+than|lower\s+than)\s+"
            rf"(?:an?\s+)?(?=\d|(?:{_WORDS_RE})\b)",
            rf"\b(?:over|above|more\s+than|longer\s+than|greater\s+than|higher\s+than|"
            rf"in\s+excess\s+of|upwards\s+of|"
            rf"exceeding|beyond)\s+(?:an?\s+)?(?=\d|(?:{_WORDS_RE})\b)",
        ),
    )
)


# Comparisons that hold a "no" or "not" but negate nothing: "no more than five" is "at most".
_COMPARATIVES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        # "no more than five", "not retry more than five times", "never exceed more than"
        (
            r"(?:\b(?:no|not|never)|n['’]t)\s+(?:[a-z]+\s+){0,2}?(?:more|later|longer|greater|higher)"
            r"\s+than\b",
            "at most",
        ),
        (
            r"(?:\b(?:no|not|never)|n['’]t)\s+(?:[a-z]+\s+){0,2}?(?:less|fewer|sooner|earlier|shorter|"
            r"lower)"
            r"\s+than\b",
            "at least",
        ),
        # "can't merge until the build is green" / "only after", "required before"
        (
            r"(?:\b(?:not|never|cannot)\b|n['’]t\b)(?P<between>[^,;.]*?)\buntil\b",
            r" only\g<between> after",
        ),
        (
            r"(?:\b(?:not|never|cannot)\b|n['’]t\b)(?P<between>[^,;.]*?)\bunless\b",
            r" only\g<between> if",
        ),
        (r"\bnot\s+(?:only|just|merely|simply)\b", "also"),
        (r"\bno\s+matter\b", "whatever"),
        (r"\bno\s+one\b", "nobody"),
    )
)


def plain(text: str) -> str:
    """``text`` with comparisons and one-word negations said plainly: "no more than five" ->
    "at most five", "can't merge until ..." -> "only merge after ...", "optional" -> "not
    required"."""
    for pattern, replacement in (*_COMPARATIVES, *_NEGATED_WORDS):
        text = pattern.sub(replacement, text)
    return text


# An aside in parentheses or an editor's bracketed note ("(no compound)", "[not in citation
# given]"): a rewording may leave it out, so a negation there says nothing about the sentence.
_ASIDE = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
# "No, ..." / "Yes. ..." answers the question; it negates nothing the sentence then says.
_ANSWER_WORD = re.compile(
    r"^\s*(?:(?:and|but|so|well|oh|okay|ok)\s*,?\s+)?(?:no|yes|nope|yep|yeah|yup|nah)\b"
    r"\s*[,.;:!\u2014-]+\s*",
    re.IGNORECASE,
)


def negated(text: str) -> bool:
    """Whether ``text`` says no (an odd number of negations outside asides; "no longer"
    counts)."""
    text = plain(_ASIDE.sub(" ", text))
    count = len(_NEGATION.findall(text)) + len(_NO_LONGER.findall(text))
    # "no longer" matched both as "no" and as itself: count it once
    count -= len(re.findall(r"\bno\s+longer\b", text, re.IGNORECASE))
    return count % 2 == 1


def bound(text: str) -> str | None:
    """The side a bound on a number puts it: "under" ("flights under six hours", "shorter
    than"), "over" ("longer than six hours", "exceeding"), or None (neither, or both)."""
    under, over = _POLES[-1]
    text = plain(text)
    below, above = bool(under.search(text)), bool(over.search(text))
    return "under" if below and not above else "over" if above and not below else None


def strip_bounds(text: str) -> str:
    """``text`` without its bound words ("longer than", "under"): what remains says what is
    bounded."""
    for pattern in _POLES[-1]:
        text = pattern.sub(" ", text)
    return text


def flipped(claim: str, source: str) -> bool:
    """Whether ``claim`` says the opposite of ``source`` (the passage sentence it restates):
    one negates and the other does not, one says "no longer" and the other does not, or one
    uses a word the other uses the opposite of ("mandatory" / "optional")."""
    claim = plain(_ASIDE.sub(" ", _ANSWER_WORD.sub("", claim)))
    source = plain(_ASIDE.sub(" ", source))
    if negated(claim) != negated(source):
        return True
    if bool(_NO_LONGER.search(claim)) != bool(_NO_LONGER.search(source)):
        return True
    for a, b in _POLES:
        ca, cb, sa, sb = a.search(claim), b.search(claim), a.search(source), b.search(source)
        if (ca and not cb and sb and not sa) or (cb and not ca and sa and not sb):
            return True
    return False
