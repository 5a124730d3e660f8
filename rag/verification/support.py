"""Does a passage (or two) support a claim? Values grounded, polarity kept, words covered.

:func:`check` decides, for one answer sentence and the passages it cites, in this order:

1. **values** (:func:`rag.verification.grounding.ungrounded`): every number with its unit,
   date, clock time, version, code name, e-mail, URL and proper name of the claim occurs in
   the passages — one missing or stated differently fails the claim, whatever else matches;
2. **polarity** (:func:`rag.verification.grounding.flipped`): the claim does not negate, or
   stop negating, the passage sentences it restates ("must" / "must not", "no longer",
   "mandatory" / "optional");
3. **coverage**: the share of the claim's content words — stopwords, hedges ("usually",
   "typically") and light verbs ("get", "happen") aside, values counted in step 1 — that
   the passages hold, matched by stem, by a shared prefix ("encrypted" / "encryption") or as
   synonyms ("kept" / "retained", "finish" / "complete"). Words of ``context`` — the
   answer's sentence before this one, already verified — count as held: "They are encrypted
   with AES-256" says "they" of what was just said, and "This usually happens on day three"
   needs only "day three" from the passage. One word the passage lacks passes on coverage
   only when it may stand for a word of the restated clause the claim leaves out: the whole
   clause said again plus a word of its own adds something ("... from a code owner and a
   security reviewer").

4. **meaning**, only for a claim in other words (``similar`` given: the embedder's cosine):
   up to :data:`MAX_REWORDED` words the passage lacks pass when every value and name is
   grounded, nothing flips, each new word stands for a word of the passage clause the claim
   leaves out (a rewording replaces, it does not add) and the claim's cosine to that clause
   is at least :data:`REWORDED_SIMILARITY`; the score is then that cosine.

The score is the coverage (0 when a value or the polarity fails); a claim is supported when
it reaches ``generation.verify.min_support`` (chosen on the tuning half of the ``verify``
eval and SQuAD 2.0 by ``benchmarks/calibrate_support.py``). Several passages support a claim
together: the values may come from one and the words from another — a synthesis citing [1][2].

No model call: a claim against its passages costs tens of microseconds, so verification adds
next to nothing to the model's own time (``benchmarks/verify_cost.py``).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from rag.verification.answer_types import WORD, stem
from rag.verification.grounding import (
    Value,
    bound,
    comparable,
    flipped,
    grounded_in,
    plain,
    quantities,
    spells,
    strip_bounds,
    ungrounded,
    values,
)

# At most this many content words of a claim may be absent from its passage, whatever its length.
MAX_UNMATCHED = 1
# ... or this many, when the claim is a rewording of its passage sentence in other words: every
# value and name grounded, nothing flipped, most of its words the passage's, and its meaning
# close to the sentence's (``similar``, the embedder's cosine, at least REWORDED_SIMILARITY).
MAX_REWORDED = 3
REWORDED_SIMILARITY = 0.80

__all__ = [
    "STOPWORDS",
    "Support",
    "check",
    "claim_words",
    "content_words",
    "matches",
    "says",
    "split_clauses",
    "stating_clauses",
]

# Words that carry no fact: never required from a passage (shared with
# rag.verification.citations, which re-exports content_words).
STOPWORDS = frozenset(
    (
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "according",
        "passage",
        "passages",
        "document",
        "documents",
        "answer",
        "context",
        "based",
        "one",
        "two",
        "many",
        "much",
        "may",
        "might",
        "must",
        "shall",
        "used",
        "use",
        "using",
        "called",
        "known",
        # British and formal forms of function words: "whilst" is "while", "upon" "on"
        "whilst",
        "upon",
        "amongst",
        "amidst",
        "unto",
        "thereof",
        "therein",
        "hereby",
        "wherein",
    )
)


def content_words(text: str) -> list[str]:
    """The stems of ``text``'s words that are not stopwords."""
    return [stem(w) for w in WORD.findall(text) if w.lower() not in STOPWORDS]


# Words that add no fact of their own: hedges, light verbs, connectives a model writes around
# what the passage says. They are neither required from the passage nor counted.
_LIGHT = frozenset(
    """
    happen happens happened happening usually typically generally normally commonly
    often also just simply actually basically really still even already currently then
    thereby therefore thus however instead otherwise respectively overall note please
    need needs needed get gets got getting gotten make makes made take takes took taken
    give gives gave given giving include includes included including provide provides
    provided ensure ensures way ways thing things something able going set sets come
    comes came put puts let lets like likely case cases time times said say says stated
    states mention mentions mentioned according per via well yes sure certainly
    important importantly specifically particular particularly respective whole entire
    around roughly approximately exactly only first taking once whenever anyone someone
    everyone anybody people's your yours you we our us can could may might must shall
    should will would have has had having do does did done
    since together besides additionally furthermore moreover likewise similar similarly
    considerably significantly substantially much far quite rather fairly pretty somewhat
    better best supposed expected tell tells told indicate indicates indicated specify
    specifies specified
    not never none cannot unable impossible avoid avoids avoided avoiding refrain refrains
    prohibited forbidden disallowed banned
    every go goes went gone whoever whatever whichever ones exist exists existed existing available
    ought anything everything nothing several plus specifying indicating telling receive
    receives received receiving
    require requires required requiring requirement mandatory compulsory obligatory necessary
    yep yeah yup nope nah okay ok alright absolutely definitely indeed honestly frankly totally
    fully completely entirely wholly
    basically essentially luckily fortunately unfortunately sadly happily
    either
    """.split()  # noqa: SIM905 - a word list reads best as words
)
# A light verb's -ing form is light too ("stating" as "states", "stated"): the verbs the
# list gives with their past form, so that a noun in it ("time", "case") keeps its "-ing".
_LIGHT_VERBS = frozenset(
    base
    for past in _LIGHT
    if past.endswith("ed")
    for base in ((past[:-3] + "y",) if past.endswith("ied") else (past[:-2], past[:-1]))
    if base in _LIGHT or f"{base}s" in _LIGHT or f"{base[:-1]}ies" in _LIGHT
)


def _light(word: str) -> bool:
    if word in _LIGHT:
        return True
    if not word.endswith("ing") or len(word) < 6:
        return False
    base = word[:-3]
    return any(b in _LIGHT_VERBS for b in (base, base + "e", base[:-1]))


# Synonym groups a faithful rewording uses: general English, not any document's words.
_SYNONYMS: tuple[tuple[str, ...], ...] = tuple(
    tuple(group.split())
    for group in re.sub(
        r"\n\s{6}",
        " ",
        """
    keep kept retain retained retention store stored storage hold held preserve preserved save
      saved
    finish finished complete completed completion done end ended
    receive received obtain obtained gain gained grant granted acquire acquired earn earned
      award awarded
    start started starting begin begins began beginning commence commenced launch launched
      initiate initiated open opens opened
    stop stopped cease ceased halt halted
    require required requires requirement mandatory necessary obligatory compulsory need needs
      oblige obliges obliged mandate mandates mandated necessitate necessitates necessitated
    mean means meant denote denotes denoted signify signifies signified represent represents
      represented designate designates designated
    within inside
    only solely exclusively
    subsequent subsequently following after afterwards thereafter next
    big large huge major great
    small little minor tiny
    fast quick quickly rapid rapidly swift swiftly soon promptly immediately
    make create created produce produced build built construct constructed establish established
      found founded form formed
    buy bought purchase purchased
    show showed shown display displayed present presented demonstrate demonstrated
    use used uses using utilize utilized utilise utilised employ employed apply applied
    allow allows allowed permit permits permitted enable enables enabled let
    send sent forward forwarded submit submitted file filed
    check checked verify verified review reviewed inspect inspected examine examined audit
      audited
    record recorded log logged document documented note noted track tracked write written
      register registered
    copy copies copied replicate replicated duplicate duplicated replica replicas
    delete deleted remove removed erase erased purge purged wipe wiped
    limit limits limited cap capped maximum max restrict restricted ceiling most
    least minimum min lowest
    each every per all any
    run runs ran execute executed perform performed carry carried conduct conducted hold held
    help helped assist assisted support supported aid aided
    people person persons staff employee employees personnel worker workers individual
      individuals member members
    team teams group groups department departments unit
    wait waiting delay pause
    split divide divided break broken separate separated
    join joined enter entered
    ask asked request requested requests apply
    laptop laptops computer computers notebook notebooks device devices machine machines
    report reported tell told inform informed notify notified alert alerted contact contacted
    book booked reserve reserved
    pay paid payment reimburse reimbursed refund refunded compensate compensated payout cover
      covered
    cost costs price priced fee fees charge charged expense expenses amount
    protect protected secure secured guard guarded safeguard
    rule rules policy policies requirement requirements guideline guidelines
    default standard normal usual regular
    approve approved approval approves approving authorize authorized authorise authorised sign-
      off
    engineer engineers developer developers
    change changes changed modification modifications edit edits
    exceed exceeded exceeds over above beyond more longer greater higher
    under below less fewer shorter lower
    before prior ahead earlier
    after following later once
    long longer lasting last lasts lasted duration run runs
    say said state stated mention mentioned explain explained
    call called name named term termed known
    choose chose chosen select selected pick picked
    try tried attempt attempted
    many numerous several multiple various
    answer answers answered respond responds responded response reply replies replied return
      returns returned
    day daily days
    night nightly nights evening
    week weekly weeks
    month monthly months
    year yearly annual annually years
    quarter quarterly quarters
    hour hourly hours
    place located location situated site
    live lived reside resided dwell
    die died death dead
    home house residence
    country nation state
    city town
    old ancient former earlier
    new newly recent recently latest
    lose lost missing misplace misplaced stolen steal
    again retry retries repeat repeated
    fix fixed repair repaired resolve resolved solve solved
    issue issues problem problems incident incidents
    rotate rotated rotation rotates replace replaced renew renewed
    encrypt encrypted encryption encrypts
    able capable can
    main primary principal chief key
    second secondary another other separate
    different distinct separate separated apart
""",
    )
    .strip()
    .splitlines()
)
# A word may sit in several groups ("run": execute, and last as a duration does).
_SYNONYM_OF: dict[str, frozenset[int]] = {}
for _i, _group in enumerate(_SYNONYMS):
    for _w in _group:
        _SYNONYM_OF[_w] = _SYNONYM_OF.get(_w, frozenset()) | {_i}
# Phrases that say what one word says: read as that word, in claims and passages alike, so
# that "revoked right away" restates "revoked immediately" (general English, like _SYNONYMS).
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE), word)
    for pattern, word in (
        (r"(?:go|goes|went|going)\s+over", "exceed"),
        (r"\b(?:a|one)\s+full\s+(?=(?:day|week|month|year)s?\b)", "a "),
        (
            r"right\s+away|straight\s+away|at\s+once|without\s+delay|as\s+soon\s+as\s+possible",
            "immediately",
        ),
        (r"in\s+advance|ahead\s+of\s+time", "beforehand"),
        (r"a\s+lot\s+of|lots\s+of|a\s+large\s+number\s+of", "many"),
        (r"make\s+sure", "ensure"),
        (r"set\s+up", "create"),  # an account, an environment: made ready
        (r"get\s+rid\s+of", "remove"),
        # "is responsible for scheduling": the subject does what follows
        (r"(?:is|are)\s+(?:in\s+charge\s+of|responsible\s+for)", " "),
        (r"in\s+charge\s+of|responsible\s+for", "owns"),
        (r"e\.\s?g\.?|i\.\s?e\.?|for\s+instance", "for example"),
        # discourse markers and hedges: they join or soften what is said, and say nothing
        (
            r"on\s+top\s+of\s+(?:that|this|it)|in\s+addition(?:\s+to\s+(?:that|this))?|"
            r"what(?:'|’)?s\s+more|as\s+well\s+as|as\s+well|keep\s+in\s+mind(?:\s+that)?|"
            r"bear\s+in\s+mind(?:\s+that)?|note\s+that|in\s+(?:most|many|all)\s+cases|"
            r"in\s+general|as\s+a\s+rule|for\s+the\s+most\s+part|in\s+total|all\s+in\s+all|"
            r"in\s+other\s+words|at\s+the\s+end\s+of\s+the\s+day|on\s+the\s+other\s+hand|"
            r"in\s+contrast|by\s+contrast|in\s+turn|for\s+(?:its|their)\s+part|meanwhile|"
            r"in\s+short|long\s+story\s+short|to\s+be\s+(?:clear|fair|honest)|"
            r"just\s+so\s+you\s+know|for\s+what\s+it(?:'|’)?s\s+worth|"
            r"(?:it(?:'|’)?s|it\s+is)\s+worth\s+(?:noting|knowing|mentioning)(?:\s+that)?|"
            # an evaluative frame around the fact: "The good news is that all laptops ..."
            r"the\s+(?:good|bad|short|simple|quick|main|key|important)\s+(?:news|answer|part|"
            r"thing|point|takeaway)\s+(?:here\s+)?(?:is|being)(?:\s+that)?|"
            r"the\s+(?:catch|thing|idea|upshot|gist|point)\s+(?:here\s+)?is(?:\s+that)?|"
            r"(?:just\s+a\s+)?heads[\s-]+up|quick\s+note|side\s+note|pro\s+tip|fyi",
            " ",
        ),
        # phrasal verbs: what one verb says, in two or three words
        (r"(?:get|gets|got|getting)\s+back\s+to", "answer"),
        (r"(?:try|tries|tried|aim|aims)\s+to", " should"),
        (r"(?:your|their|his|her|the)\s+start\s+date", "you start"),
        (r"(?:send|sends|sent|give|gives|gave|hand|hands|handed)\s+back", "returns"),
        (r"(?:stick|sticks|stuck|stay|stays|stayed|hang|hangs|hung)\s+around", "kept"),
        (r"(?:hang|hangs|hung|hold|holds|held|keep|keeps|kept)\s+on\s*to", "kept"),
        (r"(?:look|looks|looked|go|goes|went)\s+(?:at|over|through)", "reviewed"),
        (r"(?:kick|kicks|kicked)\s+off", "starts"),
        (r"(?:fill|fills|filled)\s+(?:out|in)", "completes"),
        (r"(?:sign|signs|signed)\s+off\s+on", "approves"),
        (r"(?:turn|turns|turned|switch|switches|switched)\s+on", "enables"),
        (r"(?:live|lives|living|sit|sits|sitting)\s+(?=in\b|on\b)", "stored "),
        (r"(?:together|along)\s+with", "with"),
        # modal phrases: what "should" and "must" say, in more words
        (
            r"(?:is|are|be|'re|’re)\s+(?:supposed|expected|meant)\s+to|"
            r"(?:it(?:'|’)?s|it\s+is)\s+(?:best|better|advisable|recommended)\s+to|"
            r"(?:you(?:'|’)d|you\s+had)\s+better",
            " should",  # apart: "You're expected to" is "You should", not "Youshould"
        ),
        (r"(?:has|have|had|need|needs)\s+to", "must"),
        (r"ought\s+to", "should"),
        # a frame around a quantity: "for a period of 35 days" is "for 35 days"
        (r"(?:a|the)\s+(?:period|span|duration|term|total|length)\s+of", " "),
        (r"on\s+(?:its|their|his|her)\s+own|by\s+(?:itself|themselves)", "automatically"),
        (r"unable\s+to|not\s+able\s+to|incapable\s+of", "cannot"),
        (r"status\s+code", "status"),
        # an action named by its noun, its verb only carrying it: "encryption is applied to
        # backups" says "backups are encrypted", "a review is carried out" that one is reviewed
        (
            r"(\w{3,}(?:tion|sion|ment|ance|ence|ing|ure|al)s?\s+(?:is|are|was|were|gets?|got|"
            r"be|been|being)\s+)(?:applied|performed|carried\s+out|conducted|undertaken|executed)",
            r"\1",
        ),
    )
)


# British spellings a prefix does not meet: "colour" / "color", "centre" / "center",
# "metre" / "meter" (longer words — "behaviour", "organisation" — share their first six letters).
_BRITISH = (
    (re.compile(r"\b([a-z]{3,})our(s|ed|ing)?\b", re.IGNORECASE), r"\1or\2"),
    (re.compile(r"\b([a-z]{2,}[^aeiou\W])re(s)?\b", re.IGNORECASE), r"\1er\2"),
)


def _one_word_phrases(text: str) -> str:
    for pattern, word in _PHRASES:
        text = pattern.sub(word, text)
    for pattern, american in _BRITISH:
        text = pattern.sub(american, text)
    return text


# Interjections and comment adverbs a chatty answer opens with ("Yep, ...", "Honestly, ...",
# "Good news: ..."): they answer or colour, and say nothing a passage must hold.
_INTERJECTIONS = """
    yep yeah yup nope nah sure okay ok alright right absolutely definitely correct exactly
    totally gotcha heads
    indeed honestly frankly basically essentially luckily fortunately unfortunately sadly
    happily great good nice well oh hey hi hello cool perfect
""".split()  # noqa: SIM905 - a word list reads best as words

# Words a sentence opens with that name nothing ("Yes, ...", "However, ...", "Overall, ...").
_OPENERS = frozenset(
    """
    yes no thanks thank however overall also additionally furthermore moreover instead
    meanwhile finally first firstly second secondly then thus therefore hence so still
    yet today currently generally usually typically normally often sometimes otherwise
    besides according based following under since although though while when where
    whenever once after before during within until unless because if whether both either
    neither each every all any most many some several few none nobody everyone
    everything anyone anything someone something here there this that these those its
    their our your his her my what which who whom whose how why new
    """.split()  # noqa: SIM905 - a word list reads best as words
) | frozenset(_INTERJECTIONS)
_CONTRACTION = re.compile(
    r"^(?:it|that|there|here|what|who|he|she|they|we|you|i|is|are|was|were|do|does|did|has|"
    r"have|had|can|could|would|should|wo|ai|must|need|let)['’](?:s|t|re|ve|ll|d|m)$"
    r"|^\w+n['’]t$"
)
# Endings of common words, not names ("Running make bootstrap ...", "Approved claims ...").
_INFLECTED = re.compile(
    r"(?:ing|ed|ly|tion|sion|ment|ness|ity|ance|ence|ful|less|able|ible|ive|ous|ks)$"
)
_STOPWORDS_EXTRA = frozenset(
    """
    a an the of to in on at by for from with and or but is are was were be been being it
    its this that these those they them their there he she his her him i me my as if so
    """.split()  # noqa: SIM905 - a word list reads best as words
)


def _prefix(word: str) -> str:
    return word[:6] if len(word) >= 8 else word[:5]


@dataclass(frozen=True)
class _Words:
    """A text's words in the forms a claim's words are matched against."""

    stems: frozenset[str]
    prefixes: frozenset[str]
    groups: frozenset[int]


def _root(word: str) -> str:
    """The stem without a silent final "e": "clone" and "cloning" meet, as "store" and
    "stored", "page" and "paged" do."""
    w = word.lower()
    if len(w) >= 5 and w.endswith("ed"):
        w = w[:-1]  # "paged" -> "page" (the stemmer keeps five-letter words whole)
    s = stem(w)
    return s[:-1] if len(s) > 3 and s.endswith("e") else s


@functools.lru_cache(maxsize=4096)
def _words_of(text: str) -> _Words:
    raw = [w.lower().strip("'-") for w in WORD.findall(_one_word_phrases(quantities(text)))]
    # two words written as one: "back off" says "backoff", "set up" says "setup"
    joined = [a + b for a, b in itertools.pairwise(raw) if a.isalpha() and b.isalpha()]
    # the parts of a hyphenated name say their words too: "inc-2026-03-14-billing" says "billing"
    raw += [part for w in raw if "-" in w for part in w.split("-") if part.isalpha()]
    return _Words(
        stems=frozenset(stem(w) for w in raw)
        | frozenset(_root(w) for w in raw)
        | frozenset(stem(w) for w in joined),
        # a claim word of 5-7 letters is looked up by 5, a longer one by 6: both kinds here
        prefixes=frozenset(w[:5] for w in raw if len(w) >= 5)
        | frozenset(w[:6] for w in raw if len(w) >= 6),
        groups=frozenset(g for w in raw for g in _SYNONYM_OF.get(w, ()))
        | frozenset(g for w in raw for g in _SYNONYM_OF.get(stem(w), ())),
    )


def matches(word: str, words: _Words) -> bool:
    """``word`` (lower case) is said by a text with these ``words``: same stem, same prefix
    (long enough to mean something), or a synonym; a hyphenated word when its parts are
    ("free-tier" by "the free tier")."""
    if stem(word) in words.stems or _root(word) in words.stems:
        return True
    if "-" in word:
        parts = [p for p in word.split("-") if p.isalpha() and _content(p)]
        if parts and all(matches(p, words) for p in parts):
            return True
    if len(word) >= 5 and _prefix(word) in words.prefixes:
        return True
    groups = (
        _SYNONYM_OF.get(word)
        or _SYNONYM_OF.get(stem(word))
        or next((_SYNONYM_OF[b] for b in _comparative_bases(word) if b in _SYNONYM_OF), None)
        or frozenset()
    )
    return not groups.isdisjoint(words.groups)


def _comparative_bases(word: str) -> list[str]:
    """What an adjective's comparative or superlative is built on: "bigger" -> "big",
    "larger" -> "large", "smallest" -> "small" (a synonym of the base is one of the word)."""
    for suffix in ("est", "er"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            base = word[: -len(suffix)]
            out = [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2]:
                out.append(base[:-1])  # "bigger": bigg -> big
            return out
    return []


def says(word: str, text: str, synonyms: bool = True) -> bool:
    """``word`` is said by ``text`` (:func:`matches`; with ``synonyms`` off, in its own
    words: same stem or prefix)."""
    words = _words_of(text)
    if not synonyms:
        words = replace(words, groups=frozenset())
    return matches(word.lower(), words)


def _content(word: str) -> bool:
    return bool(content_words(word))


@functools.lru_cache(maxsize=4096)
def _claim_words(claim: str) -> list[str]:
    return claim_words(claim, values(claim))


def claim_words(text: str, found: Sequence[Value] = ()) -> list[str]:
    """The claim's content words that must come from a passage: lower case, stopwords, light
    words and the values' own words (checked as values) left out."""
    masked = quantities(text)  # the values were read from it (rag.verification.grounding)
    for v in found:
        if v.kind != "name" and v.text:
            masked = masked.replace(v.text, " ")
    masked = _one_word_phrases(masked)
    keep = set(content_words(masked))
    out = []
    for w in WORD.findall(masked):
        low = w.lower().strip("'-")
        if _light(low) or low in _STOPWORDS_EXTRA or stem(low) not in keep:
            continue
        if _CONTRACTION.match(low):
            continue  # "it's", "don't": stopwords run together
        if any(c.isdigit() for c in low):
            continue  # numbers are values: checked (with their units) in step 1
        out.append(low)
    return list(dict.fromkeys(out))


# Where one fact of a sentence ends and the next begins: "..., and ...", "...; ...",
# "..., while ...", "..., whereas ...", "..., but ...".
_CLAUSE_BREAK = re.compile(
    r"\s*(?:;|,\s*(?:and|but|while|whilst|whereas|so|and\s+then)\b|\s(?:while|whilst|whereas)\s)\s*",
    re.IGNORECASE,
)


# Finer: where one of two things joined by "and" ends ("needs a green build and one
# approving review"), for a sentence citing a passage for each.
_PART_BREAK = re.compile(
    rf"{_CLAUSE_BREAK.pattern}|\s+(?:and|as\s+well\s+as|plus|along\s+with|together\s+with)\s+",
    re.IGNORECASE,
)


def split_clauses(sentence: str, parts_joined_by_and: bool = False) -> list[str]:
    """The clauses of ``sentence`` that each state a fact of their own (a part without
    three words of its own stays with the one before); ``parts_joined_by_and``: also the
    things a bare "and" joins."""
    pattern = _PART_BREAK if parts_joined_by_and else _CLAUSE_BREAK
    parts = [p for p in pattern.split(sentence) if p and p.strip()]
    out: list[str] = []
    for part in parts:
        if out and len(WORD.findall(part)) < 3:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part.strip())
    return out


# A noun after "similar", "the same", "such": the thing the sentence before spoke of, named
# again in other words ("All laptops use full-disk encryption. Backups get similar
# protection, ...").
_REFERS_BACK = re.compile(
    r"\b(?:similar|same|such|comparable|equivalent|identical|likewise)\s+([a-z][a-z-]+)"
)


_ACRONYM = re.compile(r"\b[A-Z]{2,5}s?\b")


@functools.lru_cache(maxsize=4096)
def _acronym_words(claim: str, passage: str) -> frozenset[str]:
    """The claim's words (lower case) that say an acronym one way while the passage says it
    the other: an acronym of the claim the passage spells out ("MFA" / "multi-factor
    authentication"), and the words of the claim whose initials spell an acronym of the
    passage ("single sign-on" / "SSO")."""
    out = {a.lower() for a in _ACRONYM.findall(claim) if spells(a, passage)}
    tokens = re.findall(r"[A-Za-z]+(?:-[A-Za-z]+)*", claim)
    parts = [(t, p) for t in tokens for p in t.split("-")]
    initials = "".join(p[0].lower() for _, p in parts)
    for acronym in {a.rstrip("s").lower() for a in _ACRONYM.findall(passage)}:
        # three letters at least, and words that mean something ("all people involved" is
        # no "API"): a chance spelling is unlikely
        at = initials.find(acronym) if len(acronym) >= 3 else -1
        run = parts[at : at + len(acronym)] if at >= 0 else []
        if run and all(t.lower() not in STOPWORDS and t.lower() not in _LIGHT for t, _ in run):
            out |= {t.lower() for t, _ in run} | {p.lower() for _, p in run}
    return frozenset(out)


# Where a clause that answers the question ends and one that states a fact begins: "It's
# better not to, because ...", "No, you can't: ...".
_ANSWER_CLAUSE_BREAK = re.compile(
    r"\s*(?:[;:\u2014\u2013]|,\s*(?:because|since|as|so|but)\b|\s(?:because|since)\s)\s*",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)  # a claim is checked against every passage of the context
def stating_clauses(claim: str, question: str = "") -> str:
    """``claim`` without an opening clause that states nothing of its own — no value, and no
    content word but the question's: "It's better not to, because any change over 400 lines
    ..." and "Not straight away: production access is only granted once ..." (to "Do I get
    access straight away?") state only what follows. Such a clause answers the question (its
    verb left out, or its words echoed), so a negation there is the answer's, not a flip of
    the passage, and its words are the question's, not the passage's."""
    parts = [p for p in _ANSWER_CLAUSE_BREAK.split(claim, maxsplit=1) if p and p.strip()]
    if len(parts) != 2 or values(parts[0]):
        return claim
    own = claim_words(parts[0])
    asked = _words_of(question) if question else None
    if all(asked is not None and matches(w, asked) for w in own):
        return parts[1]
    return claim


@dataclass
class Support:
    """The verdict on one claim against one or more passages."""

    score: float  # coverage, 0 when a value or the polarity fails
    coverage: float
    missing: list[str] = field(default_factory=list)  # values no cited passage holds
    flipped: bool = False  # negates (or un-negates) what the passage says
    unmatched: list[str] = field(default_factory=list)  # content words no passage holds
    quote: str = ""  # the passage sentence it restates best
    similarity: float | None = None  # to the quote, when judged as a rewording in other words

    @property
    def reason(self) -> str | None:
        if self.missing:
            return "not in the passage: " + ", ".join(self.missing[:3])
        if self.flipped:
            return "says the opposite of the passage"
        return None


def _best_sentences(
    claim: Iterable[str], found: Sequence[Value], sentences: Sequence[str]
) -> list[str]:
    """The passage sentences the claim restates, best first: the one sharing most of its
    words and values, plus a second when the claim combines two ("... every quarter, and the
    results go to the wiki")."""
    wanted = list(claim)
    if not sentences:
        return []
    scored = []
    for s in sentences:
        w = _words_of(s)
        said = {x for x in wanted if matches(x, w)}
        # a value the sentence states counts twice: it is what the claim is about
        said |= {f"value:{v.text}" for v in found if v.kind != "name" and grounded_in(v, s)}
        scored.append(said)
    weight = [sum(2 if x.startswith("value:") else 1 for x in sc) for sc in scored]
    order = sorted(range(len(sentences)), key=lambda i: (-weight[i], i))
    best = order[0]
    picked = [best]
    for i in order[1:]:
        # a second sentence only for words the first lacks: a value alone ("IT" in another
        # sentence) does not make a sentence part of what the claim restates
        if any(not x.startswith("value:") for x in scored[i] - scored[best]):
            picked.append(i)
            break
    return [sentences[i] for i in picked]


def _restated_clauses(claim: Sequence[str], sentence: str) -> str:
    """The clauses of ``sentence`` that share two or more of the ``claim``'s words (all of
    it when none does, or when it has one clause)."""
    clauses = split_clauses(sentence)
    if len(clauses) < 2:
        return sentence
    kept = [c for c in clauses if sum(matches(w, _words_of(c)) for w in claim) >= 2]
    return " ".join(kept) if kept else sentence


# Who does something: a person's role ("the incident commander", "a code owner"), as the
# agent of a passive ("scheduled by the on-call engineer") or the subject a claim opens with
# ("The on-call engineer schedules ...").
_ROLE = (
    r"(?:[a-z][\w-]*\s+){0,2}?(?:engineer|commander|manager|owner|lead|officer|administrator|"
    r"admin|director|reviewer|approver|supervisor|author|maintainer|responder|coordinator|"
    r"analyst|architect|developer)s?"
)
_ARTICLE = r"(?:the|a|an|your|their|its|our|his|her)"
_AGENT = re.compile(rf"\b(?P<action>[a-z]+)\s+by\s+{_ARTICLE}\s+(?P<role>{_ROLE})\b", re.IGNORECASE)
_SUBJECT = re.compile(
    # after an opening clause that says when ("Once the incident is resolved, the ...")
    r"^\W*(?:(?:once|after|when|whenever|before|if|as\s+soon\s+as|following|until)\b[^,;]*,\s*)?"
    rf"{_ARTICLE}\s+(?P<role>{_ROLE})\s+(?:(?:must|should|will|shall|can|may|always|"
    r"then|also|usually|typically|normally)\s+)*(?P<action>[a-z]+)\b",
    re.IGNORECASE,
)


def actors(claim: str) -> list[tuple[str, str]]:
    """(role, action) pairs ``claim`` states: who does what."""
    text = _one_word_phrases(claim)
    found = [(m.group("role"), m.group("action")) for m in _AGENT.finditer(text)]
    m = _SUBJECT.match(text)
    if m:
        found.append((m.group("role"), m.group("action")))
    return [(" ".join(r.lower().split()), a.lower()) for r, a in found if _content(a.lower())]


def _swapped_actors(claim: str, sentences: Sequence[str]) -> list[Value]:
    """The roles ``claim`` gives an action that the passage gives to someone else: a sentence
    says the action and none that says it names the role ("scheduled by the on-call
    engineer" where the incident commander schedules it and the on-call engineer opens the
    channel). A role and an action the passage words otherwise are left to the other checks."""
    out = []
    for role, action in actors(claim):
        doing = [s for s in sentences if matches(action, _words_of(s))]
        if not doing:
            # the action reworded ("arranged" for "schedules"): the sentence that says what
            # it is done to — the claim's other words — and names who does it
            doing = _said_of(claim, role, action, sentences)
        if doing and not any(role in " ".join(s.lower().split()) for s in doing):
            out.append(Value("name", role, key=role))
    return out


_NAMES_A_ROLE = re.compile(rf"\b{_ARTICLE}\s+{_ROLE}\b", re.IGNORECASE)


def _said_of(claim: str, role: str, action: str, sentences: Sequence[str]) -> list[str]:
    """The passage sentence that says what ``claim`` says, its ``role`` and ``action``
    aside, when it shares two words with it at least and names a role of its own."""
    others = [
        w
        for w in claim_words(claim)
        if w != action and w not in role.split() and not any(w in p for p in role.split("-"))
    ]
    best: tuple[int, str] | None = None
    for sentence in sentences:
        shared = sum(matches(w, _words_of(sentence)) for w in others)
        if shared >= 2 and (best is None or shared > best[0]):
            best = (shared, sentence)
    return [best[1]] if best and _NAMES_A_ROLE.search(best[1]) else []


# A clause that names its subject by a pronoun ("It also allows ...", "in 2006 she ...")
# says it of what the sentence, or the one before, named.
_REFERRING = re.compile(
    r"\b(?:it|its|they|them|their|this|these|those|he|she|his|her|which)\b", re.I
)


def _periodic(value: Value, text: str) -> bool:
    """Whether ``value`` says how often ("nightly": every 1 day), not how long."""
    return f"every {value.text}" in quantities(text)


def _misplaced_values(claim: str, sentences: Sequence[str]) -> list[Value]:
    """The values of ``claim`` it gives to something the passage gives another value of the
    same kind: "The business tier allows 60 requests per minute" where the free tier allows
    60 and the business tier 1,200; "Backups are kept for 13 months" where backups are kept
    35 days and monthly snapshots 13 months. A word of the claim's clause holding the value
    that the passage's clause holding it lacks, and a clause holding a rival value has,
    is what the passage says that rival of."""
    said = values(claim)
    clauses = [(c, i) for i, s in enumerate(sentences) for c in split_clauses(s)]
    out: list[Value] = []
    for part in split_clauses(claim):
        own = [v for v in values(part) if comparable(v, v)]
        # the words of its values' units ("per second") are the values', checked with them
        units = {u for v in own for u in (v.unit, v.rate) if u}
        words = (
            [w for w in claim_words(part, values(part)) if w.rstrip("s") not in units]
            if own
            else []
        )
        for v in own if words else []:
            homes = [k for k, (c, _) in enumerate(clauses) if grounded_in(v, c)]
            if not homes:
                continue
            home = []
            for k in homes:
                c, i = clauses[k]
                home.append(c)
                if _REFERRING.search(c):  # what the pronoun names is the sentence's, or before
                    home.extend(sentences[max(0, i - 1) : i + 1])
            rivals = [
                c
                for k, (c, _) in enumerate(clauses)
                if k not in homes
                and any(
                    comparable(r, v)
                    and _periodic(r, c) == _periodic(v, part)
                    and not grounded_in(v, r.text)
                    and not any(u is not v and grounded_in(u, r.text) for u in said)
                    for r in values(c)
                )
            ]
            if not rivals:
                continue
            held = _words_of(" ".join(home))
            for rival in (replace(_words_of(r), groups=frozenset()) for r in rivals):
                # the claim's words fit the rival's clause (in its own words, not synonyms)
                # as well as the value's own, or better
                there = sum(matches(w, rival) and not matches(w, held) for w in words)
                here = sum(matches(w, held) and not matches(w, rival) for w in words)
                if there and there >= here:
                    out.append(v)
                    break
    return out


_TOKEN = re.compile(r"[^\W_][\w'’-]*")


@functools.lru_cache(maxsize=4096)  # passage sentences repeat across claims and answers
def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """Each two neighbouring words of ``text`` (as written): "incremental backups"."""
    tokens = _TOKEN.findall(text)
    return tuple(itertools.pairwise(tokens))


def _literal(word: str, text: str) -> bool:
    """``word`` is in ``text`` in its own form (stem or prefix, no synonym)."""
    return matches(word.lower(), replace(_words_of(text), groups=frozenset()))


# Lines above a sentence that end in no stop, the next opening with a capital: headings the
# sentence splitter left on it ("Security Handbook\nPasswords and keys\nPasswords must ...").
# A heading is short and has no comma; a wrapped line may go on with a name ("... starting\n
# Monday at 10:00 UTC").
_HEADING_LINES = re.compile(r"^(?:[ \t]*(?:[^\W\d_][\w'’&/-]*[ \t]*){1,6}\n)+(?=[A-Z])")


@functools.lru_cache(maxsize=4096)
def _body(sentence: str) -> str:
    """``sentence`` without the heading lines above it (a wrapped line goes on in lower case)."""
    return _HEADING_LINES.sub("", sentence)


def _homes(v: Value, words: Sequence[str], sentences: Sequence[str]) -> list[str]:
    """The passage sentences holding ``v``, those sharing most of the claim's ``words`` first."""
    held = [s for s in sentences if grounded_in(v, s)]
    return sorted(held, key=lambda s: -sum(matches(w, _words_of(s)) for w in words))


# An auxiliary or modal that ends a claim's subject ("API keys must ...", "Reviews should ..."):
# not "gets" or "does", which a relative clause holds as often ("a client that gets a 429").
_SUBJECT_END = re.compile(
    r"\b(?:is|are|was|were|be|must|should|can|could|will|would|may|might|shall|has|have|had|"
    r"need|needs)\b|n['’]t\b",
    re.IGNORECASE,
)
# An opening clause that says when or if ("After the monorepo is cloned, ..."), before the
# subject.
_OPENING_CLAUSE = re.compile(
    r"^\W*(?:once|after|when|whenever|before|if|as\s+soon\s+as|following|until|unless|"
    r"while|since|because)\b[^,;]*[,;]\s*",
    re.IGNORECASE,
)
_RELATIVE = re.compile(r"\b(?:that|which|who|whom|whose|where)\b", re.IGNORECASE)


def _subject(claim: str) -> tuple[list[str], int]:
    """The content words of ``claim``'s subject and where what it says of it begins, when the
    subject is plain — at most six words before the first auxiliary, after any opening
    clause, with no relative clause ("a client that gets a 429" is described, not just
    named): ``([api, keys], 9)`` for "API keys must be at least 14 characters"."""
    opening = _OPENING_CLAUSE.match(claim)
    start = opening.end() if opening else 0
    m = _SUBJECT_END.search(claim, start)
    span = claim[start : m.start()] if m else ""
    if not m or len(WORD.findall(span)) > 6 or _RELATIVE.search(span):
        return [], len(claim)
    return claim_words(span, values(span)), m.start()


def _told_of_another(claim: str, sentences: Sequence[str], context: str = "") -> list[Value]:
    """The values of ``claim`` it says of something its passage sentence does not speak of,
    where another sentence of the passage does — a fact pieced together, with no rival
    value of the kind to compare (which :func:`_misplaced_values` needs):

    - the claim's subject is none of the value's sentence's words and is another sentence's:
      "API keys must be at least 14 characters" (14 characters is the passwords'), "Pull
      requests over 400 lines must be answered within one working day" (the deadline is
      the reviews');
    - a word naming which kind of thing, next to the thing, that the value's sentence lacks
      and another sentence says with it: "Incremental backups run nightly at 02:00 UTC"
      (the full backups run at 02:00; the incremental ones are the next sentence's);
    - a name the value's sentence gives the thing ("API keys") that the claim gives another
      word ("encryption keys"), said nowhere in the passage sentence."""
    found = [v for v in values(claim) if v.kind in ("number", "clock", "date", "code")]
    if not found or len(sentences) < 2:
        return []
    sentences = [_body(s) for s in sentences]
    words = claim_words(claim, values(claim))
    # a sentence that names its subject by a pronoun ("It was built ...") says it of what
    # the sentence before named: read together
    sentences = [
        f"{sentences[i - 1]} {s}" if i and _REFERRING.search(s) else s
        for i, s in enumerate(sentences)
    ]
    homes = {v: _homes(v, words, sentences) for v in found}
    all_homes = {h for hs in homes.values() for h in hs}
    subject, said_at = _subject(claim)
    before = _words_of(context) if context else None
    out: list[Value] = []
    for v, held in homes.items():
        if not held:
            continue
        home = held[0]
        others = [s for s in sentences if s not in all_homes]
        home_words = _words_of(home)
        if (
            subject
            and claim.find(v.text, said_at) >= 0  # a value of what is said of the subject
            and not any(matches(w, _words_of(h)) for w in subject for h in held)
            and not (before and any(matches(w, before) for w in subject))
            and any(_literal(w, o) for w in subject for o in sentences if o not in held)
        ):
            out.append(v)
            continue
        home_pairs = _pairs(home)
        for kind, thing in _pairs(claim):
            low, head = kind.lower(), thing.lower()
            if low in STOPWORDS or _light(low) or low not in words or not _content(head):
                continue
            if any(matches(low, _words_of(h)) for h in all_homes) or not matches(head, home_words):
                continue
            # the word the value's sentence names the thing with, which the claim does not say
            theirs = [
                a
                for a, b in home_pairs
                if _literal(head, b) and _content(a.lower()) and not _literal(a, claim)
            ]
            if not theirs:
                continue  # "Database backups" where the sentence says "Backups": narrower
            pieced = any(
                _literal(low, a) and _literal(head, b) for o in others for a, b in _pairs(o)
            )
            named = any(a.isupper() and len(a) >= 2 for a in theirs)
            if pieced or named:
                out.append(v)
                break
    return out


_AUXILIARY = re.compile(
    r"\b(?:is|are|was|were|be|been|must|should|can|could|will|would|may|might|shall|has|have|"
    r"had|does|do|did|gets|get)\b|n['’]t\b|['’](?:s|re)\b",
    re.IGNORECASE,
)


def _subject_words(claim: str) -> list[str]:
    """The content words before the claim's first auxiliary, when it comes within its first
    six words: what the claim says something of ("The incident commander is ...")."""
    m = _AUXILIARY.search(claim)
    if not m or len(WORD.findall(claim[: m.start()])) > 5:
        return []
    return claim_words(claim[: m.start()])


# Words that order two events: "A before B", "A after B", "after B, A", "once B, A".
_ORDER = re.compile(
    r"(?<![\w-])(?P<c>before|prior\s+to|ahead\s+of|after|following|once(?!\s+(?:a|an|per|every|"
    r"more|again|or|and)\b))(?![\w-])",
    re.IGNORECASE,
)
_SIDE_END = re.compile(r"[,;:\u2014\u2013]|\s-\s")


def _order(sentence: str) -> tuple[list[str], list[str]] | None:
    """(what comes first, what comes next) of the first ordering word of ``sentence``, as
    content words: "a green build is required before a pull request can be merged" ->
    ([green, build], [pull, request, merged]); ``None`` when it orders nothing."""
    text = plain(sentence)
    m = _ORDER.search(text)
    if not m:
        return None
    head = _SIDE_END.split(text[: m.start()])[-1]
    rest = text[m.end() :]
    first_after = _SIDE_END.split(rest, maxsplit=1)
    named = first_after[0]
    if not claim_words(head, values(head)) and len(first_after) == 2:
        # "After the incident is resolved, the incident commander schedules ...": the
        # ordering word opens the sentence; what follows the comma is the other event
        head = _SIDE_END.split(first_after[1], maxsplit=1)[0]
    own = claim_words(head, values(head))
    other = claim_words(named, values(named))
    before = m.group("c").lower() in ("before", "ahead of") or m.group("c").lower().startswith(
        "prior"
    )
    return (own, other) if before else (other, own)


def _order_flipped(claim: str, sources: Sequence[str]) -> bool:
    """Whether ``claim`` puts two events in the opposite order to the passage sentence it
    restates: "you can merge before the build is green" against "a green build is required
    before a pull request can be merged" (the words of what comes first in the claim are
    those of what comes next in the passage, more than of what comes first)."""
    said = _order(claim)
    if said is None:
        return False
    for source in sources:
        order = _order(source)
        if order is None:
            continue
        (first, then), (p_first, p_then) = said, order
        held = [_words_of(" ".join(p_first)), _words_of(" ".join(p_then))]
        straight = sum(matches(w, held[0]) for w in first) + sum(matches(w, held[1]) for w in then)
        crossed = sum(matches(w, held[1]) for w in first) + sum(matches(w, held[0]) for w in then)
        return crossed > straight
    return False


# A number or version that follows a name says which of that name it is: "Python 3.11",
# "Postgres 16", "TLS 1.2".
_OWNED = re.compile(r"\b(?P<name>[A-Z][\w+#-]*)\s+v?(?P<n>\d+(?:\.\d+)*)\b(?![.,:]\d)")


def _swapped_owners(claim: str, passages: Sequence[str]) -> list[Value]:
    """The numbers ``claim`` gives a name that the passages give it another of: "Python 16"
    where the passage installs Python 3.11 and Postgres 16 (each number is in the passage,
    after the other name)."""
    text = "\n".join(passages)
    out = []
    for m in _OWNED.finditer(claim):
        name = m.group("name")
        if name.lower() in _STOPWORDS_EXTRA or name.lower() in _OPENERS:
            continue
        theirs = {
            o.group("n") for o in _OWNED.finditer(text) if o.group("name").lower() == name.lower()
        }
        if theirs and m.group("n") not in theirs:
            out.append(Value("code", f"{name} {m.group('n')}", key=m.group(0).lower()))
    return out


# A sentence opening with a verb and its object ("Grab a laptop from IT", "Submit the form"):
# an instruction, its first word no name (a name is followed by its verb: "Deabolis named").
_IMPERATIVE = re.compile(
    r"^\W*[A-Z][a-z]+\s+(?:a|an|the|your|my|our|their|this|that|these|those|it|them|any|"
    r"every|each)\b"
)


def _bound_flipped(claim: str, sentences: Sequence[str]) -> bool:
    """Whether ``claim`` bounds its number on the other side from the passage clause that
    holds that number and says what the claim says it of: "Economy class is the default for
    flights longer than six hours" against "Economy class is the default for flights under
    six hours. Business class may be booked for flights longer than six hours" (both
    sentences hold the number; the claim's other words are the first's)."""
    side = bound(claim)
    if side is None:
        return False
    numbers = [v for v in values(claim) if v.kind == "number"]
    homes = [
        c for s in sentences for c in split_clauses(s) if any(grounded_in(v, c) for v in numbers)
    ]
    if not homes:
        return False
    words = claim_words(strip_bounds(claim), numbers)
    best = max(homes, key=lambda c: sum(matches(w, _words_of(strip_bounds(c))) for w in words))
    theirs = bound(best)
    return theirs is not None and theirs != side


def _left_out(claim: str, source: str) -> list[str]:
    """The content words of ``source`` (a passage clause) that ``claim`` does not say: what
    a rewording's words of its own may stand for ("oblige" for "require", "inside" for
    "within"). A claim whose new words stand for none adds something ("... and a hardware
    firewall")."""
    said = _words_of(claim)
    return [w for w in claim_words(source, values(source)) if not matches(w, said)]


# What joins a phrase on to a clause: "and", "or", a comma, a preposition; then an article
# or the like and at most one word before the word in question ("and a security reviewer",
# "or an authenticator app", "of shadowing", "by email").
_JOINS = (
    r"(?:,|\b(?:and|or|nor|plus|of|by|with|without|for|via|through|from|to|in|on|at|as|"
    r"including))\s+(?:(?:a|an|the|its|their|your|our|his|her|some|any|each|every)\s+)?"
    r"(?:[\w-]+\s+)?"
)


def _joined_on(word: str, claim: str) -> bool:
    """Whether ``word`` comes in a phrase ``claim`` joins on with a conjunction, a comma or
    a preposition, rather than inside a phrase of its own clause."""
    return re.search(rf"{_JOINS}{re.escape(word)}\b", claim, re.IGNORECASE) is not None


def _stands_for_left_out(stated: str, words: Sequence[str], restated: Sequence[str]) -> bool:
    """Whether a claim's word of its own may stand for a word of the passage clause(s) it
    restates: one of them says a content word the claim leaves out."""
    return any(_left_out(stated, _restated_clauses(words, s)) for s in restated)


def check(
    claim: str,
    passages: Sequence[str],
    sentences: Sequence[str],
    context: str = "",
    question: str = "",
    headings: Sequence[str] = (),
    floor: float = 0.0,
    similar: Callable[[str, str], float] | None = None,
) -> Support:
    """How well ``passages`` (their texts) support ``claim``. ``sentences``: the passages'
    sentences (the values must be in those the claim restates; the quote; the polarity
    check); ``headings``: their titles and sections (a name there counts); ``context``: the
    verified sentence before the claim; ``question``: its names need no passage (the
    question's "Northwind" when a passage says "the company"). ``floor``: a coverage below
    it ends the check there (the score says no; values and polarity are not looked at)."""
    found = values(claim)
    # an opening clause that only answers the question is not checked against the passage
    stated = stating_clauses(claim, question)
    words = _claim_words(stated)
    held = _words_of("\n".join(passages))
    said_before = _words_of(context) if context else None
    # "similar protection", "the same rule": what the sentence before said, named again
    referred = set(_REFERS_BACK.findall(claim.lower())) if context else set()
    # "MFA" for the passage's "multi-factor authentication", "single sign-on" for its "SSO"
    referred |= _acronym_words(claim, "\n".join(passages))
    unmatched = [
        w
        for w in words
        if not matches(w, held)
        and not (said_before and matches(w, said_before))
        and w not in referred
    ]
    coverage = 1.0 - len(unmatched) / len(words) if words else 1.0
    # a rewording in other words is looked at closer only when a similarity can judge it
    reworded = (
        similar is not None
        and len(unmatched) <= MAX_REWORDED
        and len(words) - len(unmatched) >= len(unmatched)
    )
    if not reworded and (coverage < floor or len(unmatched) > MAX_UNMATCHED):
        # most passages of a context, for most claims: no need to look closer
        score = coverage if len(unmatched) <= MAX_UNMATCHED else 0.0
        return Support(score=score, coverage=coverage, unmatched=unmatched)
    restated = _best_sentences(words, found, sentences)
    # A value must be in what the claim restates — the passage sentence(s) it says again, or
    # the headings: "created by the IT team" is not grounded by a passage that names IT in
    # another sentence and says the People team creates the account.
    where = [" ".join(restated), *headings] if restated else list(passages)
    missing = ungrounded(claim, where, [question] if question else (), passages)
    # the actor of an action must be one the passage names for that action, as a team is
    missing += _swapped_actors(stated, sentences)
    # and a value must be said of what the passage says it of
    missing += [v for v in _misplaced_values(stated, sentences) if v not in missing]
    # a version is the one the passage gives that product ("Python 16": Postgres's number)
    missing += _swapped_owners(stated, passages)
    # and is said of what its sentence speaks of, not of another sentence's subject
    missing += [v for v in _told_of_another(stated, sentences, context) if v not in missing]
    # The first word is capitalised anyway, so a name there ("Deabolis named the point") looks
    # like any word: one that no passage, the question or the sentence before uses in any
    # form is taken for a name nobody gave.
    first = WORD.match(claim.lstrip(" \"'“("))
    if first and not missing:
        word = first.group(0)
        low = word.lower()
        if (
            word[:1].isupper()
            and len(low) >= 3
            and low not in _LIGHT
            and low not in _STOPWORDS_EXTRA
            and low not in _OPENERS
            and "'" not in low
            and "’" not in low
            and _content(low)
            and not _INFLECTED.search(low)
            and low not in _SYNONYM_OF  # a word of the language ("Regular backups ..."), no name
            and low not in referred  # an acronym the passage spells out
            and not matches(low, held)
            and not (said_before and matches(low, said_before))
            and not (question and matches(low, _words_of(question)))
            and not _IMPERATIVE.match(claim)
        ):
            missing = [Value("name", word, key=low)]
    # Flipped only against the sentence it restates best and against both together: a negation
    # in a second sentence ("... cannot agree") is not what the claim says the opposite of; nor
    # is one in a clause of that sentence the claim does not restate ("SEV1 means customers
    # cannot ...; SEV2 means ..." restated as "SEV2 means ...").
    is_flipped = bool(restated) and all(
        flipped(stated, _restated_clauses(words, src)) for src in {restated[0], " ".join(restated)}
    )
    # "merge before the build is green" against "a green build is required before a pull
    # request can be merged": the same two events, in the other order
    is_flipped = is_flipped or _order_flipped(stated, restated)
    # "flights longer than six hours" where the sentence holding six hours for what the
    # claim speaks of says "under"
    is_flipped = is_flipped or _bound_flipped(stated, sentences)
    if unmatched and len(restated) > 1:
        # A word the passage lacks is a rewording of what one sentence says; in a claim
        # pieced together from two ("The incident commander is whoever is the secondary
        # on-call when the alert fires") it is a fact neither says.
        told = _words_of("\n".join([restated[0], *headings]))
        pieced = [
            w
            for w in words
            if not matches(w, told)
            and matches(w, _words_of(restated[1]))
            and not (said_before and matches(w, said_before))
        ]
        # when the second sentence gives the subject the claim says it of ("The incident
        # commander is ..."); its other words may match by chance ("start" for "starting",
        # "pull requests" where "change" means one)
        if set(pieced) & set(_subject_words(stated)):
            missing.append(Value("name", unmatched[0], key=unmatched[0]))
    # One word the passage lacks is a rewording ("copies" for "backups"); two are a phrase it
    # never says ("railway locomotives" swapped in): the claim says something else.
    score = 0.0 if missing or is_flipped or len(unmatched) > MAX_UNMATCHED else coverage
    if (
        score
        and unmatched
        and restated
        and _joined_on(unmatched[0], stated)
        and not _stands_for_left_out(stated, words, restated)
    ):
        # ... but not when it comes in a phrase joined on to the clause ("... from a code
        # owner and a security reviewer", "after six weeks of shadowing") and stands for no
        # word the restated clause says and the claim does not: the whole clause said again
        # plus a participant, object or qualifier of its own adds something. A word inside
        # the clause's own phrase ("the backup job runs") names what the passage names.
        score = 0.0
    similarity = None
    if (
        reworded
        and not missing
        and not is_flipped
        and (score < floor or score == 0.0)
        and restated
        and len(unmatched) <= len(_left_out(stated, _restated_clauses(words, restated[0])))
    ):
        # its words are not the passage's, but every value and name is, nothing is negated or
        # reordered, each word it says the passage does not stands for one the passage says
        # and it does not, and it means what the sentence it restates means: a rewording
        assert similar is not None
        # against the clauses of the sentence it restates ("SEV3 means a minor issue with a
        # workaround", not the whole list of severity levels)
        similarity = similar(stated, _restated_clauses(words, restated[0]))
        score = similarity if similarity >= REWORDED_SIMILARITY else 0.0
    return Support(
        score=score,
        coverage=coverage,
        missing=[v.text for v in missing],
        flipped=is_flipped,
        unmatched=unmatched,
        quote=restated[0] if restated else "",
        similarity=similarity,
    )
