"""What kind of answer a question asks for, and whether a sentence has one.

A supported sentence can still fail to answer: "How long are backups kept?" is not answered by
"Backups are encrypted with AES-256", however well a passage supports it. The rules here are
deliberately small and lenient — they reject a sentence only when it plainly lacks what the
question asks for:

============  ==========================================  =========================================
type          asked by                                    a sentence has one when it holds
============  ==========================================  =========================================
duration      how long / how quickly / how soon / how     a number (or "a", "an") with a unit of
              fast, for how long, within how many …       time or length; "immediately", …
quantity      how many / how much, what percentage /      a number, numeral word or amount
              number / amount / size / limit / cost …
time          when, what/which year / day / date / time,  a date, year, clock time, weekday, month,
              by when, since when                         period ("after six weeks", "every
                                                          quarter"), an event clause ("after …",
                                                          "once …", "before …"), a duration
frequency     how often, how frequently                   "every …", "nightly", "per …", "N times"
person        who / whom / whose, which team / person …   a role, team or group noun, a capitalised
                                                          name, an e-mail address
place         where, which/what region / country / city   a capitalised name, a region code, an
              / location …                                address, e-mail or URL, a place noun
name          which/what module / function / class /      a code name: dotted (``sys.argv``),
              method / statement / package / option …     called (``zip()``), snake_case or with
                                                          digits (``sqlite3``), CamelCase, or a
                                                          word the sentence calls a module,
                                                          function, … ("the heapq module")
============  ==========================================  =========================================

A count is no version or year: "How many employees ...?" is not answered by "versions 2.1 and
newer" or "In 2001, ...". And a sentence whose passage never mentions a name the question
uses ("the Django ORM for PostgreSQL": two of its three names) does not answer it either
(``about_something_else``): the documents are about something else.

What the sentence offers must be new to the question: "How many requests per minute ..." is
not answered by the "minute" it repeats. A question with several parts ("Who designed it and
when?") asks for each of its types; a sentence answering any one of them answers.

:func:`relevance` turns the question–sentence similarity, their shared words and the type
check (a miss; a hit in a documentation section) into one probability that the sentence answers the question (weights
fitted on SQuAD 2.0 and three documentation sets by ``benchmarks/calibrate_relevance.py``). The extractive backend ranks sentences by it and
verification (:class:`rag.verification.citations.AnswerVerifier`) refuses an answer none of whose supported
sentences reaches ``generation.verify.min_relevance``.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from rag.verification.grounding import spells

__all__ = [
    "RELEVANCE_WEIGHTS",
    "WORD",
    "AnswerType",
    "RelevanceFeatures",
    "about_something_else",
    "answers_yes_no",
    "expected_types",
    "has_type",
    "missing_names",
    "question_parts",
    "relevance",
    "stem",
    "type_match",
]


class AnswerType(StrEnum):
    DURATION = "duration"
    QUANTITY = "quantity"
    TIME = "time"
    FREQUENCY = "frequency"
    PERSON = "person"
    PLACE = "place"
    NAME = "name"  # of a module, function, class, statement, option ... (code names)


# Fitted by benchmarks/calibrate_relevance.py on half of SQuAD 2.0's questions (logistic
# regression on the features below; label: the sentence contains a gold answer). Refitted in
# issue 30 on the tune halves of SQuAD 2.0, evals/pydocs, evals/pgdocs and evals/gitdocs
# pooled, the fit weighed a type hit in a documentation section (type_hit_in_section 0.725,
# cosine 4.343, overlap 0.981, threshold 0.15): it answers more follow-ups in a chat (0.84
# against 0.80 over examples/docs) but is hardly better on the tune halves (mean right +
# abstention 1.274 against 1.267, under the 0.02 the script asks) and worse on the report
# halves (SQuAD top sentence right 0.69 against 0.74, pgdocs 0.53 against 0.59) and on the
# golden set's near misses (abstention 0.55 against 0.91: "How long are application logs
# retained?" answered from the backup policy): these weights stay.
RELEVANCE_WEIGHTS: dict[str, float] = {
    "intercept": -6.168,
    "cosine": 5.465,
    "overlap": 2.358,
    "type_miss": -2.775,
}

# -- questions ---------------------------------------------------------------------------
_Q = re.IGNORECASE
_MEASURE_NOUNS = (
    r"percentage|percent|number|amount|size|limit|cost|price|fee|rate|maximum|minimum|max|min|"
    r"total|count|budget|salary|speed|capacity|population|length|height|width|depth|weight|"
    r"distance|temperature|age|quota|cap|value|score|ratio|share|proportion"
)
_TIME_NOUNS = (
    r"year|years|day|days|date|dates|time|month|months|century|decade|era|period|season|hour|"
    r"week|weekday|morning|evening|age"
)
_TIME_UNITS_Q = (
    r"seconds?|minutes?|hours?|days?|business\s+days?|working\s+days?|weeks?|months?|"
    r"quarters?|years?|decades?|centuries|nights?"
)
_PERSON_NOUNS = (
    r"team|teams|person|people|group|department|company|companies|organi[sz]ation|"
    r"organi[sz]ations|role|manager|engineer|individual|author|owner|agency|body|party|"
    r"king|queen|ruler|leader|president|scientist|artist|player|official|officials|firm|"
    r"country's leader|university"
)
_PLACE_NOUNS = (
    r"region|regions|country|countries|city|cities|town|state|states|continent|place|places|"
    r"location|locations|area|areas|address|site|building|street|province|island|river|"
    r"office|zone|venue|port|county|district|nation"
)
_NAME_NOUNS = (
    r"modules?|functions?|methods?|class(?:es)?|statements?|keywords?|librar(?:y|ies)|"
    r"packages?|exceptions?|operators?|built-?ins?|commands?|options?|flags?|attributes?|"
    r"decorators?|variables?|settings?|parameters?|arguments?|tools?|utilit(?:y|ies)|apis?"
)
_CODE_NOUNS = r"modules?|packages?|librar(?:y|ies)|keywords?|decorators?|built-?ins?|exceptions?"
# "What does work_mem limit?" asks what it does, not for a limit: an auxiliary ends the noun
_AUX_WORDS = r"(?:do|does|did|can|could|should|would|will|must|may|might|shall)\b"
# "which class of travel": a class of something (a bare noun after "of") is a kind of it,
# named in words, not a class in code; "option of git tag", "module of the standard library"
# still name one
_BARE_NOUN_AFTER_OF = r"(?!\s+of\s+(?!(?:the|a|an|this|that|these|those|its|their)\b)[a-z])"
_KIND_OF = (
    rf"(?<!class)(?<!classes)|(?<=class){_BARE_NOUN_AFTER_OF}|(?<=classes){_BARE_NOUN_AFTER_OF}"
)
_QUESTION_RULES: list[tuple[re.Pattern[str], AnswerType]] = [
    (re.compile(r"how\s+(?:long|quickly|soon|fast|late|early)\b", _Q), AnswerType.DURATION),
    (
        re.compile(rf"how\s+(?:many|much)\s+(?:more\s+)?(?:time|{_TIME_UNITS_Q})\b", _Q),
        AnswerType.DURATION,
    ),
    (re.compile(r"how\s+(?:often|frequently)\b", _Q), AnswerType.FREQUENCY),
    (
        re.compile(
            r"how\s+(?:many|much|big|large|high|tall|old|far|wide|deep|heavy|small|expensive)\b",
            _Q,
        ),
        AnswerType.QUANTITY,
    ),
    (
        re.compile(
            rf"(?:what|which)\s+(?:is\s+|was\s+|are\s+|were\s+)?(?:the\s+)?(?:(?!{_AUX_WORDS})\w+\s+){{0,2}}?"
            rf"(?:{_MEASURE_NOUNS})\b",
            _Q,
        ),
        AnswerType.QUANTITY,
    ),
    (re.compile(r"when\b", _Q), AnswerType.TIME),
    (re.compile(rf"(?:what|which)\s+(?:\w+\s+)?(?:{_TIME_NOUNS})\b", _Q), AnswerType.TIME),
    (re.compile(r"(?:who|whom|whose)\b", _Q), AnswerType.PERSON),
    (
        re.compile(rf"(?:what|which)\s+(?:\w+\s+)?(?:{_PERSON_NOUNS})\b", _Q),
        AnswerType.PERSON,
    ),
    # "which function ...", but not "what function did the guild serve?" or "what class of
    # problems": only nouns that are code's own after "what"
    # ("which class of travel": a kind of something, named in words, not a code name)
    (re.compile(rf"which\s+(?:\w+\s+)?(?:{_NAME_NOUNS})\b(?:{_KIND_OF})", _Q), AnswerType.NAME),
    (re.compile(rf"what\s+(?:\w+\s+)?(?:{_CODE_NOUNS})\b(?:{_KIND_OF})", _Q), AnswerType.NAME),
    (re.compile(r"where\b", _Q), AnswerType.PLACE),
    (re.compile(rf"(?:what|which)\s+(?:\w+\s+)?(?:{_PLACE_NOUNS})\b", _Q), AnswerType.PLACE),
]
# A wh-word asks only where a clause starts: first in the question, after a comma or
# conjunction ("..., and how fast?") or a preposition ("in which region", "by when"); the
# "when" of "What should a client do when the API returns 429?" asks nothing.
_WH = re.compile(
    r"(?:^|[,;:(]\s*|\b(?:and|or|but|in|on|at|by|for|to|from|of|with|since|until|after|"
    r"before|within|during|than)\s+)(?P<wh>who|whom|whose|when|where|which|what|how)\b",
    _Q,
)


def expected_types(question: str) -> frozenset[AnswerType]:
    """The answer types ``question`` asks for (empty: it asks for none we can check)."""
    text = " ".join(question.split())
    found: set[AnswerType] = set()
    for m in _WH.finditer(text):
        phrase = text[m.start("wh") :]
        for pattern, kind in _QUESTION_RULES:
            if pattern.match(phrase):
                found.add(kind)
                break
    return frozenset(found)


_PART_SPLIT = re.compile(
    r"\s*(?:[,;]\s*(?:and\s+|or\s+)?|\s(?:and|or|but)\s+)(?=(?:who|whom|whose|when|where|which|what|how)\b)",
    _Q,
)


def question_parts(question: str) -> list[str]:
    """The question and, when it asks several things ("Who designed it and when do backups
    run?"), each of its parts: a sentence answering any one part answers."""
    text = " ".join(question.split())
    parts = [p.strip(" ?,;") for p in _PART_SPLIT.split(text)]
    parts = [p for p in parts if len(p.split()) >= 2]
    return [text] if len(parts) < 2 else [text, *(p + "?" for p in parts)]


# -- sentences ---------------------------------------------------------------------------
_NUMBER_WORDS = (
    r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundred|hundreds|thousand|thousands|million|millions|billion|billions|"
    r"trillion|dozen|dozens|half|single|double|twice|thrice|once|first|second|third|fourth|"
    r"fifth|several|multiple|few|couple|both|no"
)
_NUM_NOT_A = rf"(?:\d[\d,.]*(?:\s*%)?|{_NUMBER_WORDS}|a\s+few|a\s+couple\s+of)"
_TIME_UNITS = (
    r"seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|business\s+days?|working\s+days?|"
    r"weeks?|fortnights?|months?|quarters?|years?|yrs?|decades?|centuries|century|"
    r"millennia|millennium|nights?|milliseconds?|ms|sprints?|shifts?"
)
_LENGTH_UNITS = (
    r"metres?|meters?|kilometres?|kilometers?|km|miles?|feet|foot|ft|inch(?:es)?|cm|mm|"
    r"yards?|characters?|words?|lines?|pages?"
)
_DURATION = re.compile(
    # "a second region" is no duration: a/an take every unit but "second"
    r"\b(?:an?)\s+(?!second\b)(?:(?:more|full|extra|additional)\s+)?(?:"
    rf"{_TIME_UNITS})\b|"
    rf"\b{_NUM_NOT_A}[\s-]+(?:(?:more|less|full|extra|additional|consecutive|calendar)\s+)?"
    rf"(?:{_TIME_UNITS}|{_LENGTH_UNITS})\b"
    r"|\b(?:immediately|instantly|overnight|promptly|at\s+once|right\s+away|same[\s-]day|"
    r"real[\s-]time)\b|\b\d+\s*(?:s|h|d|ms|min)\b",
    _Q,
)
_ORDINALS = frozenset(["first", "second", "third", "fourth", "fifth"])
_QUANTITY = re.compile(
    rf"\d[\d,.]*|\b(?:{_NUMBER_WORDS})\b|\b(?:all|none|every|each|most|many|much|some|little|"
    r"majority|minority|unlimited|entire)\b",
    _Q,
)
# Numbers that count nothing: versions ("Python 3.11", "versions 2.1 and newer", "v2") and
# years after a preposition ("In 2001, ...").
_NOT_A_COUNT = re.compile(
    r"^\s*\(?\d+[.)]\s"  # a list item's number: "1. This LICENSE AGREEMENT ..."
    r"|\b(?:versions?|python|release|v|pep|rfc|iso)\s*\d[\d.]*"
    r"|\d+(?:\.\d+)+\s*(?:\+|and\s+(?:newer|later|above|up)|or\s+(?:newer|later|above))"
    r"|\b(?:in|since|by|from|until|before|after|circa|around|of|year)\s+(?:1[5-9]\d\d|20\d\d)\b",
    _Q,
)
_MONTHS = (
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_WEEKDAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekdays?|weekends?"
_TIME = re.compile(
    r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b"  # years, decades
    r"|\b\d{1,2}:\d{2}\b|\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)"  # clock times
    rf"|\b(?:{_MONTHS}|{_WEEKDAYS})\b"
    r"|\b(?:\d+(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|"
    r"tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|"
    r"eighteenth|nineteenth|twentieth|twenty-first)\s+(?:century|centuries|day|week|month|"
    r"year|decade|millennium)\b"
    r"|\b(?:in|since|by|from|until|around|circa|c\.|about|before|after)\s+\d{2,4}\b"
    r"|\b(?:century|centuries|bc|bce|ad|ce|dynasty|era|age|period|reign|war|today|tomorrow|"
    r"yesterday|tonight|nightly|daily|weekly|monthly|quarterly|annually|yearly|hourly|morning|"
    r"afternoon|evening|night|noon|midnight|spring|summer|autumn|fall|winter|christmas|"
    r"eventually|later|earlier|soon|then|now|currently|recently|formerly|originally|"
    r"initially|first\s+day|day\s+(?:one|two|three|four|five|\d+)|deadline|utc|gmt|cet)\b"
    # an event or period: "after six weeks", "once the training is done", "before you start"
    r"|\b(?:after|before|during|within|until|till|since|once|whenever|while|following|upon|"
    r"as\s+soon\s+as|prior\s+to|by\s+the\s+time|at\s+the\s+(?:end|start|beginning)\s+of)\s+"
    r"(?:the\s+|a\s+|an\s+|your\s+|their\s+|its\s+)?[A-Za-z0-9][\w-]*"
    r"|\bevery\s+(?:\w+\s+)?(?:"
    rf"{_TIME_UNITS})\b",
    _Q,
)
_FREQUENCY = re.compile(
    rf"\bevery\s+(?:other\s+|single\s+)?[\w-]+|\beach\s+(?:{_TIME_UNITS})\b|\bper\s+(?:{_TIME_UNITS})\b|\b(?:a|an|per)\s+(?:{_TIME_UNITS})\b"
    r"|\b(?:nightly|daily|weekly|monthly|quarterly|annually|yearly|hourly|biweekly|fortnightly|"
    r"continuously|constantly|always|never|rarely|seldom|often|regularly|periodically|"
    r"occasionally|sometimes|usually|twice|thrice|once|times?)\b",
    _Q,
)
_ROLE_NOUNS = re.compile(
    r"\b(?:team|teams|manager|managers|engineer|engineers|commander|owner|owners|lead|leads|"
    r"officer|officers|administrator|administrators|admin|admins|staff|employee|employees|"
    r"director|directors|head|department|departments|helpdesk|help\s+desk|desk|support|"
    r"security|finance|legal|customer|customers|user|users|people|person|persons|member|"
    r"members|committee|board|council|government|president|king|queen|emperor|company|"
    r"companies|firm|organi[sz]ations?|university|group|groups|colleague|colleagues|"
    r"supervisor|reviewer|reviewers|"
    r"approver|approvers|author|authors|founder|founders|ceo|cto|cfo|vp|chair|agency|"
    r"ministry|court|army|police|church|pope|bishop|scientist|scientists|writer|artist|"
    r"inventor|architect|family|tribe|dynasty|party|parliament|congress|senate)\b"
    r"|(?-i:\b(?:IT|HR|QA|SRE|DevOps)\b)",  # departments, in capitals only ("it" is no team)
    _Q,
)
_PLACE_NOUNS_IN_TEXT = re.compile(
    r"\b(?:region|regions|country|countries|city|cities|town|towns|state|states|continent|"
    r"office|offices|building|room|floor|street|road|avenue|portal|wiki|channel|site|website|"
    r"page|folder|directory|repository|repo|drive|server|cloud|datacenter|data\s+center|"
    r"manager|desk|helpdesk|inbox|address|area|province|island|river|coast|north|south|east|"
    r"west|northern|southern|eastern|western|abroad|overseas|home|remotely|online|locally|"
    r"here|there|nearby|inside|outside|"
    # where in code and files: "the first statement of the function body", "in sys.path"
    r"body|top|bottom|beginning|start|end|line|lines|file|files|path|paths|variable|"
    r"environment|list|table|column|field|header|section|chapter|appendix)\b"
    r"|\b[a-z]{2}-[a-z]+-\d\b"  # cloud region codes: eu-west-2
    r"|\S+@\S+\.\w+|https?://\S+|\bwww\.\S+",
    _Q,
)
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
WORD = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9'\-]*"
)  # a word, as the checks here and rag.verification.citations count them
_TRIGGERS = frozenset(
    [
        "after",
        "before",
        "during",
        "within",
        "until",
        "till",
        "by",
        "since",
        "once",
        "when",
        "whenever",
        "while",
        "following",
        "upon",
        "from",
        "between",
        "at",
        "on",
        "in",
        "if",
        "unless",
        "as",
        "soon",
        "prior",
        "to",
        "the",
        "a",
        "an",
        "your",
        "their",
        "its",
        "of",
        "end",
        "start",
        "beginning",
        "every",
        "each",
        "per",
    ]
)
_QUESTIONISH = frozenset(
    [
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "which",
        "what",
        "how",
        "why",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "the",
        "a",
        "an",
    ]
)


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light stemming so "declared"/"declaration"/"declares" meet; prefixes are enough here
    (shared with rag.verification.citations' support check)."""
    w = word.lower().strip("'-")
    for suffix in ("'s", "ies", "ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return w[:7]


def _words(text: str) -> set[str]:
    return {stem(w) for w in WORD.findall(text)}


def _novel(span: str, asked: set[str]) -> bool:
    """Whether ``span`` says something the question did not (beyond its trigger words)."""
    words = [w for w in WORD.findall(span) if w.lower() not in _TRIGGERS]
    return any(stem(w) not in asked for w in words) if words else False


def _any_novel(pattern: re.Pattern[str], sentence: str, asked: set[str]) -> bool:
    return any(_novel(m.group(0), asked) for m in pattern.finditer(sentence))


def _has_name(sentence: str, asked: set[str]) -> bool:
    """A capitalised word, not the sentence's first, that the question does not already hold."""
    words = WORD.findall(sentence)
    for i, w in enumerate(words):
        if not w[:1].isupper() or w.lower() in _QUESTIONISH:
            continue
        # The first word is capitalised anyway: a name only when it reads like one
        # ("Newcomen's engine", "Gustave Eiffel designed", "NASA").
        if i == 0 and not (
            w.endswith("'s") or w.isupper() or (len(words) > 1 and words[1][:1].isupper())
        ):
            continue
        if stem(w) not in asked:
            return True
    return False


def _has_count(sentence: str, asked: set[str]) -> bool:
    """A number, numeral or amount word new to the question that counts something (an
    ordinal ranks, a version or year dates: neither says how many)."""
    spans = [m.span() for m in _NOT_A_COUNT.finditer(sentence)]
    for m in _QUANTITY.finditer(sentence):
        if m.group(0).lower() in _ORDINALS:
            continue
        if any(a <= m.start() < b for a, b in spans):
            continue
        if _novel(m.group(0), asked):
            return True
    return False


_CODE_NAME = re.compile(
    r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?"  # sys.argv, copy.deepcopy()
    r"|\b[A-Za-z_]\w*\(\)"  # zip()
    r"|\b_*[a-z]+_\w*|\b__\w+__"  # snake_case, __main__
    r"|\b[a-z]+\d\w*\b"  # sqlite3, base64
    r"|\b(?-i:[A-Z][a-z]+[A-Z]\w*)"  # CamelCase: ArgumentParser
    r"|(?:(?<=\s)|^)--?[a-z][\w-]*"  # command-line options
    r"|\b(?-i:[A-Z][A-Z0-9_]{2,})\b",  # keywords and variables: BEGIN, VACUUM, PYTHONPATH
)
_NAMED_AS = (
    # "the heapq module", "The new unittest module", "a pass statement"
    re.compile(
        r"\b(?i:the|a|an)\s+(?:(?i:new|standard|built-?in)\s+)?([a-z_][\w.]*)\s+"
        rf"(?i:{_NAME_NOUNS})\b"
    ),
)
# Words that describe rather than name ("the standard module", "module provides").
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "which",
        "what",
        "each",
        "every",
        "any",
        "all",
        "some",
        "other",
        "another",
        "new",
        "old",
        "same",
        "following",
        "previous",
        "next",
        "above",
        "below",
        "standard",
        "built",
        "builtin",
        "main",
        "given",
        "whole",
        "entire",
        "specific",
        "particular",
        "corresponding",
        "separate",
        "original",
        "default",
        "extension",
        "external",
        "internal",
        "public",
        "private",
        "helper",
        "core",
        "common",
        "useful",
        "special",
        "simple",
        "basic",
        "low",
        "high",
        "level",
        "top",
        "is",
        "are",
        "was",
        "be",
        "can",
        "may",
        "will",
        "must",
        "should",
        "provides",
        "implements",
        "defines",
        "contains",
        "lets",
        "allows",
        "makes",
        "uses",
        "offers",
        "supports",
        "and",
        "or",
        "of",
        "for",
        "to",
        "in",
        "on",
        "with",
        "by",
        "from",
        "as",
        "at",
        "it",
        "its",
        "python",
        "third",
        "party",
        "own",
        "such",
    ]
)


_MODULE_QUESTION = re.compile(r"\b(?:modules?|packages?|librar(?:y|ies))\b", _Q)


def _has_code_name(sentence: str, question: str) -> bool:
    """A code name (module, function, class, option ...) the question does not hold; for
    "which module / package / library", a name that can be one (``shutil``, ``os.path``,
    ``sqlite3``, "the csv module"): a bare ``move()`` or ``ArgumentParser`` is not."""
    # Whole names, not stems: "ArgumentParser" is new to "Which class parses arguments?".
    asked = {w.lower() for w in re.findall(r"[\w.]+", question)}
    modules_only = bool(_MODULE_QUESTION.search(question))
    for m in _CODE_NAME.finditer(sentence):
        name = m.group(0)
        # a module's name: dotted (os.path, shutil.copy()), with digits (sqlite3), __main__
        if modules_only and not (
            "." in name or any(c.isdigit() for c in name) or name.startswith("__")
        ):
            continue
        if name.rstrip("()").lstrip("-").lower() not in asked:
            return True
    # Called a module (function, ...) by the sentence: a name even when the question has
    # the word too ("Which module reads CSV files?" — "the csv module").
    for pattern in _NAMED_AS:
        for m in pattern.finditer(sentence):
            name = m.group(1).strip(".")
            if name and name.lower() not in _NOT_NAMES:
                return True
    return False


def has_type(sentence: str, kind: AnswerType, question: str = "") -> bool:
    """Whether ``sentence`` holds an answer of ``kind`` that ``question`` does not already say."""
    asked = _words(question)
    if kind is AnswerType.DURATION:
        return _any_novel(_DURATION, sentence, asked)
    if kind is AnswerType.QUANTITY:
        return _has_count(sentence, asked)
    if kind is AnswerType.NAME:
        return _has_code_name(sentence, question)
    if kind is AnswerType.TIME:
        return _any_novel(_TIME, sentence, asked) or _any_novel(_DURATION, sentence, asked)
    if kind is AnswerType.FREQUENCY:
        return _any_novel(_FREQUENCY, sentence, asked) or _any_novel(_DURATION, sentence, asked)
    if kind is AnswerType.PERSON:
        return _any_novel(_ROLE_NOUNS, sentence, asked) or _has_name(sentence, asked)
    if kind is AnswerType.PLACE:
        return _any_novel(_PLACE_NOUNS_IN_TEXT, sentence, asked) or _has_name(sentence, asked)
    return True  # pragma: no cover - every kind is handled above


def _question_names(question: str) -> list[str]:
    """What the question names: capitalised words after its first (proper nouns, acronyms
    such as "ORM") and code names ("zip()", "sys.path") — in what it asks ("... kept? Mail me
    at jane@example.com, Jane Roe": the sentences ending in "?"), contact details left out."""
    asking = [p for p in _ASKING.findall(question) if p.strip().endswith("?")] or [question]
    names: list[str] = []
    for sentence in asking:
        sentence = _CONTACT.sub(" ", sentence)
        words = WORD.findall(sentence)
        names += [
            w
            for i, w in enumerate(words)
            if i > 0
            and w[:1].isupper()
            and w.lower() not in _QUESTIONISH
            and w.lower() not in _TITLE_CASE_WORDS
            and re.sub(r"['’](?:m|ve|d|ll)$", "", w) != "I"  # "I'm", "I've": the asker
        ]
        names += [m.group(0).rstrip("()") for m in _CODE_NAME.finditer(sentence)]
    return list(dict.fromkeys(names))


# Common words a title-cased phrase capitalises ("429 Too Many Requests", "Terms Of Use"):
# not names a passage must mention.
_TITLE_CASE_WORDS = frozenset(
    [
        "too",
        "many",
        "much",
        "more",
        "most",
        "very",
        "of",
        "the",
        "a",
        "an",
        "and",
        "or",
        "to",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "from",
        "not",
        "no",
        "all",
        "any",
        "some",
        "few",
        "other",
        "such",
        "same",
        "own",
        "only",
        "just",
    ]
)
_ASKING = re.compile(r".+?(?:[.?!]+(?=\s|$)|$)")  # sentences ("sys.path" is none's end)
_CONTACT = re.compile(r"\S+@\S+|https?://\S+|\bwww\.\S+|\+?\d[\d ()./-]{6,}\d")


def _fold(text: str) -> str:
    """Accents off ("Maizière" meets "Maiziere")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@functools.lru_cache(maxsize=512)
def _context_words(context: str) -> frozenset[str]:
    return frozenset(_words(_fold(context)))  # a passage is checked once per sentence of it


def missing_names(question: str, context: str) -> list[str]:
    """The names ``question`` uses that ``context`` (a passage with its headings) never
    mentions, compared as stemmed words, accents and case ignored; an acronym the context
    spells out ("MFA": "multi-factor authentication") is mentioned."""
    said = _context_words(context)
    out = []
    for name in _question_names(question):
        parts = [stem(w) for w in WORD.findall(_fold(name))]
        if parts and not all(p in said for p in parts):
            if name.isupper() and spells(name, context):
                continue
            out.append(name)
    return out


@functools.lru_cache(maxsize=4096)  # asked once per sentence of a passage: once is enough
def about_something_else(question: str, context: str) -> bool:
    """Whether ``context`` is about something other than what ``question`` names: at least
    two of its names, and more than half of them, never mentioned ("the Django ORM for
    PostgreSQL" against a page that names only Django); or its only name, when nothing in the
    context is even spelt like it ("the Oracle listener" against a page about PostgreSQL's
    port). A near spelling is not enough to say so: questions misspell and paraphrase names
    ("Maiziere", "Tesla's" for "Tesla")."""
    names = _question_names(question)
    missing = missing_names(question, context)
    if len(missing) >= 2 and len(missing) * 2 > len(names):
        return True
    return (
        len(names) == 1
        and len(missing) == 1
        and not any(_spelt_like(p, _context_words(_fold(context))) for p in _name_parts(missing[0]))
    )


def _name_parts(name: str) -> list[str]:
    return [stem(w) for w in WORD.findall(_fold(name))]


def _spelt_like(part: str, said: frozenset[str]) -> bool:
    """A context word close to ``part`` (stems): the same first four letters, or one edit."""
    if part in said or len(part) < 3:
        return True
    return any(
        (len(w) >= 4 and w[:4] == part[:4]) or _one_edit(w, part)
        for w in said
        if abs(len(w) - len(part)) <= 2
    )


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def type_match(question: str, sentence: str) -> bool | None:
    """True/False: the sentence has / lacks an answer of a type the question asks for;
    None: the question asks for no type we check."""
    kinds = expected_types(question)
    if not kinds:
        return None
    return any(has_type(sentence, kind, question) for kind in kinds)


# A question that asks yes or no: its last sentence opens with an auxiliary ("Can I ...?",
# "Is that okay ...?"); an answer to it opens with the word that answers.
_POLAR_QUESTION = re.compile(
    r"(?:^|[.!?]\s+)(?:is|are|was|were|am|do|does|did|can|could|should|would|will|must|may|"
    r"might|shall|has|have|had)\b[^.!?]*\?\s*$",
    _Q,
)
_YES_OR_NO = re.compile(r"^\s*(?:yes|no|nope|yep)\b\s*[,.;:!\u2014-]", _Q)
_LIGHT_ASKED = frozenset(
    """
    i me my we our you your just really actually still also get got okay ok fine allowed able
    need needs supposed there any can could should would will must may might shall have has
    had for with that this these those it and the not use using
    """.split()  # noqa: SIM905 - a word list reads best as words
)


def answers_yes_no(question: str, sentence: str, said: str = "") -> bool:
    """Whether ``sentence`` answers the yes/no ``question`` it opens by answering ("No,
    multi-factor authentication is mandatory ..." to "Can I just use an app for MFA?"): it
    opens with yes or no, and it (with ``said``: the passage sentence it restates, its
    headings) names at least half of what the question names — an acronym by its spelt-out
    words. The relevance model scores how a document sentence answers a question; an answer
    word tells it directly."""
    if not _YES_OR_NO.match(sentence) or not _POLAR_QUESTION.search(question.strip()):
        return False
    text = f"{sentence} {said}"
    have = {w.lower()[:5] for w in WORD.findall(text)}
    asked = [
        w
        for w in WORD.findall(question.split("?")[0].rsplit(".", 1)[-1])
        if w.lower() not in _LIGHT_ASKED | _TRIGGERS | _QUESTIONISH and len(w) > 2
    ]
    if not asked:
        return False
    found = sum(1 for w in asked if w.lower()[:5] in have or (w.isupper() and spells(w, text)))
    return found * 2 >= len(asked)


# -- relevance ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RelevanceFeatures:
    """What :func:`relevance` weighs (``rag.verification.citations.relevance_features`` computes them)."""

    cosine: float  # embedding similarity of question and sentence
    overlap: float  # share of the question's content words in the sentence or its headings
    type_miss: float  # 1: the question asks for a type the sentence lacks
    type_hit: float  # 1: the question asks for a type the sentence has
    # 1: a type hit in a passage under a section heading (documentation). In prose such as
    # SQuAD's a number or a name is in most sentences and says little; in a manual's section
    # the sentence that holds what was asked for is most often the answer.
    type_hit_in_section: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "cosine": self.cosine,
            "overlap": self.overlap,
            "type_miss": self.type_miss,
            "type_hit": self.type_hit,
            "type_hit_in_section": self.type_hit_in_section,
        }


def relevance(features: RelevanceFeatures, weights: dict[str, float] | None = None) -> float:
    """The probability, in [0, 1], that the sentence answers the question."""
    w = weights or RELEVANCE_WEIGHTS
    z = w["intercept"] + sum(w.get(k, 0.0) * v for k, v in features.as_dict().items())
    return 1.0 / (1.0 + math.exp(-z))
