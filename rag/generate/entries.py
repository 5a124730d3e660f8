"""Which API entry of a reference page a "how do I …" / "which function …" question asks for.

A question of what to *do* over a reference ("how do I read a CSV file into dictionaries",
"Which function parses a JSON string?") wants the entry of an API it does not name; the
sentences sharing its words are most often about something else on the same page ("A row must
be … a dictionary … for DictWriter objects", "parse_int, if specified, will be called with the
string of every JSON int"). An entry is a label line, ``[kind] dotted.name(parameters)``
("class csv.DictReader(f, fieldnames=None, …)", "json.loads(s, *, …, parse_int=None, …)"),
and the description that follows it ("Deserialize s (a str, …) to a Python object").

The question's action (the verb after "how do I" / "how to" / "which function …") must be
what the entry does: a part of its name ("reads" — DictReader; "raised" — assertRaises),
of a parameter's name ("parses" — parse_int), or one of its description's first words
("serialise" — "Serialize obj to a JSON formatted str"), by morphology (an agent noun is its
verb: reader, writer, parser; British -ise is -ize), not by a list of synonyms. Among the
entries that do it, the one whose name, parameters and description hold most of the rest of
the question ("rows", "dictionaries" — row, dict; "string" — str) is the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.verification.answer_types import WORD
from rag.verification.support import STOPWORDS

__all__ = [
    "Entry",
    "action_of",
    "asked_kind",
    "best_entries",
    "does_action",
    "entry_label",
    "entry_match",
    "names_doing",
    "parameter_names",
    "parse_entry",
    "same_root",
]

# "how do I …", "how can I …", "how to …", "argparse: how do i …", "Which class reads …",
# "What function should I use to …": the words after it say what is to be done
_ACTION = re.compile(
    r"^\s*(?:[\w.]+\s*:\s*)?(?:"
    r"how\s+(?:do|can|could|should|would|might|may|shall)\s+(?:i|you|we|one)\s+"
    r"|how\s+to\s+"
    r"|(?:which|what)\s+(?:\w+\s+)?(?:functions?|methods?|class(?:es)?|decorators?|"
    r"callables?|calls?|apis?|commands?|programs?|tools?|utilit(?:y|ies)|options?|flags?)\s+"
    # "... does argparse use to hold ...", "... should I call to ...", "... can I ..."
    r"(?:(?:can|should|could|do|does|will|would)\s+(?:[\w.]+\s+){0,3}?(?:use|call)\s+(?:to\s+)?"
    r"|(?:can|should|could|do|will|would)\s+(?:i|you|we)\s+)?"
    r")(?P<rest>.+)$",
    re.IGNORECASE,
)
# Verbs that say nothing of what an entry does ("make one mandatory", "get the keys"): the
# question's action is then not known, and no entry is preferred
_LIGHT_VERBS = frozenset(
    """
    make makes get gets do does use uses have has go let put keep be is are want need
    find see try handle deal work change turn
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_ADVERBS = frozenset(
    "just best properly correctly easily quickly also actually then".split()  # noqa: SIM905
)
# A label line: optional kind words, a (dotted) name, its parameters in brackets; or a kind
# word and a bare name ("exception ValueError", "class csv.Dialect")
_KINDS = (
    r"(?:class|classmethod|staticmethod|method|function|exception|attribute|property|"
    r"abstractmethod|coroutine|async|awaitable|decorator)"
)
_LABEL = re.compile(
    rf"^(?:{_KINDS}\s+)*@?(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\((?P<params>[^\n]*)\)\s*$"
    rf"|^(?:{_KINDS}\s+)+(?P<bare>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*$"
)
# A manual page's NAME line: "git-cherry-pick - Apply the changes introduced by some
# existing commits" (a command, and what it does)
_NAME_LINE = re.compile(r"^(?P<name>[a-z][\w.+]*(?:-[\w.+]+)*)\s+-\s+(?P<description>\S.*)$")
# An option's label line: "-a", "--annotate", "--force-with-lease[=<refname>]"
_OPTION = re.compile(r"^(?P<name>--?[A-Za-z][\w-]*)(?:[=\[\s].*)?$")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# How many of the description's words may say what the entry does ("Return a reader
# object", "Deserialize s", "Test that an exception is raised")
_DESCRIPTION_LEAD = 4


def _fold(word: str) -> str:
    """A word's root for comparing actions: lower case, British -is- as -iz-, inflection and
    agent suffixes off (reads, reader, reading → read; serialise → serializ)."""
    w = word.lower().strip("'-_")
    w = re.sub(r"is(e|es|ed|ing|er|ers|ation|ations)$", r"iz\1", w)
    for suffix in (
        "ations",
        "ation",
        "ings",
        "ing",
        "ers",
        "ors",
        "er",
        "or",
        "ies",
        "es",
        "ed",
        "s",
    ):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return w


def same_root(a: str, b: str) -> bool:
    """Whether two words are one action or thing by morphology: equal roots, or one root
    the start of the other when the shorter has four letters or more ("pars" / "parse")."""
    x, y = _fold(a), _fold(b)
    if not x or not y:
        return False
    if x == y:
        return True
    short, long_ = sorted((x, y), key=len)
    # a root and its own longer form ("pars" / "parse"), not another word it opens ("copy" /
    # "copyreg")
    return len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 2


def _mistyped(a: str, b: str) -> bool:
    """One word typed for the other with two neighbouring letters swapped ("fromat" /
    "format"), both of five letters or more."""
    x, y = a.lower(), b.lower()
    if len(x) != len(y) or len(x) < 5 or x == y:
        return False
    diff = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and x[diff[0]] == y[diff[1]]
        and x[diff[1]] == y[diff[0]]
    )


def _abbreviates(short: str, word: str) -> bool:
    """``short`` is ``word`` cut short as code names cut it ("str" for "string", "dict" for
    "dictionaries", "obj" for "object")."""
    s, w = short.lower(), word.lower()
    return 3 <= len(s) < len(w) and w.startswith(s)


def action_of(question: str) -> tuple[str, list[str]] | None:
    """The action a "how do I …" / "which function …" question asks about and the rest of
    its content words ("read", ["csv", "file", "dictionaries"]); None when it asks no action
    or its verb says nothing of one ("how do I make one mandatory")."""
    m = _ACTION.match(" ".join(question.split()))
    if m is None:
        return None
    words = [w for w in WORD.findall(m.group("rest")) if w.lower() not in _ADVERBS]
    if not words or words[0].lower() in _LIGHT_VERBS or words[0].lower() in STOPWORDS:
        return None
    rest = [w for w in words[1:] if w.lower() not in STOPWORDS and len(w) > 1 and w.isalpha()]
    return words[0], rest


@dataclass(frozen=True)
class Entry:
    name: str  # the dotted name the label defines ("csv.DictReader")
    kind: str  # the label's kind word ("class", "exception"; "" for a function or method)
    name_parts: tuple[str, ...]  # its own words, its module's left out ("Dict", "Reader")
    param_parts: tuple[str, ...]  # its parameters' words ("parse", "int", "object", "hook")
    description: str  # what follows the label (its first sentence)
    module_parts: tuple[str, ...] = ()  # where it lives ("csv")


def _parts(name: str) -> list[str]:
    return [p for piece in re.split(r"[._\W]+", name) for p in _CAMEL.findall(piece) if p]


def entry_label(line: str) -> tuple[str, str] | None:
    """(name, parameters) when ``line`` is an API entry's label, else None."""
    m = _LABEL.match(line.strip())
    if m is None:
        return None
    return (m.group("name") or m.group("bare")), (m.group("params") or "")


def _command_or_option(segment: str, following: str) -> Entry | None:
    """A manual page's NAME line (a command), or an option's label lines and what follows
    them ("-a\n--annotate\nMake an unsigned, annotated tag object")."""
    lines = segment.split("\n")
    named = _NAME_LINE.match(lines[0].strip())
    if named is not None:
        name = named.group("name")
        return Entry(name, "command", tuple(_parts(name)), (), named.group("description"))
    options = []
    while lines and (option := _OPTION.match(lines[0].strip())) is not None:
        options.append(option.group("name"))
        lines = lines[1:]
    if not options:
        return None
    name = max(options, key=len)  # the long form names it
    description = "\n".join(lines) if lines else following
    return Entry(name, "option", tuple(_parts(name)), (), description.strip())


def parameter_names(params: str) -> list[str]:
    """The names in a label's parameter list ("s, *, cls=None, parse_int=None, **kw")."""
    return re.findall(r"([A-Za-z_]\w*)\s*(?:=|,|\)|$)", params)


def parse_entry(segment: str, following: str = "") -> Entry | None:
    """The entry ``segment`` opens: its label is its first line, with the description after
    it on the next line, or (a label long enough to be a segment of its own) ``following``;
    or a manual page's NAME line, or an option's label lines."""
    label, newline, description = segment.partition("\n")
    found = entry_label(label)
    if found is None:
        return _command_or_option(segment, following)
    name, params = found
    first = label.split()[0].lower()
    kind = first if re.fullmatch(_KINDS, first) else ""
    if not newline:
        description = following
    param_names = parameter_names(params)
    return Entry(
        name,
        kind,
        # what it is called, not where it lives: "copyreg.constructor" does not copy
        tuple(_parts(name.rsplit(".", 1)[-1])),
        tuple(p for n in param_names for p in _parts(n)),
        description.strip(),
        tuple(_parts(name.rsplit(".", 1)[0])) if "." in name else (),
    )


def does_action(action: tuple[str, list[str]], entry: Entry) -> int:
    """2: the question's verb is a part of the entry's name or parameters, or one of its
    description's first words (by morphology, or typed with two letters swapped); 1: another
    of its words is a part of the entry's own name ("check that an exception is raised" —
    assertRaises); 0: neither."""
    verb, rest = action
    lead = WORD.findall(entry.description)[:_DESCRIPTION_LEAD]
    if any(
        same_root(verb, w) or _mistyped(verb, w)
        for w in (*entry.name_parts, *entry.param_parts, *lead)
    ):
        return 2
    # its own name's words, not where it lives ("JSON" of json.JSONEncoder is the topic)
    own = [
        p
        for p in entry.name_parts
        if len(p) >= 4 and not any(same_root(p, m) for m in entry.module_parts)
    ]
    return 1 if any(same_root(w, p) for w in rest for p in own) else 0


def entry_match(action: tuple[str, list[str]], entry: Entry) -> float | None:
    """How well ``entry`` does what was asked: None when it does not do the action
    (:func:`does_action`); else the share of the question's other words its name,
    parameters or description hold."""
    rest = action[1]
    if not does_action(action, entry):
        return None
    if not rest:
        return 1.0
    said = [
        *entry.name_parts,
        *entry.module_parts,
        *entry.param_parts,
        *WORD.findall(entry.description),
    ]

    def holds(word: str) -> bool:
        return any(same_root(word, w) or _abbreviates(w, word) for w in said)

    return sum(holds(w) for w in rest) / len(rest)


# "Which class …", "which exception …": the kind of entry asked for ("function" and "method"
# are the entries without a kind word, and those of a method's kinds)
_ASKED_KIND = re.compile(
    r"\b(?:which|what)\s+(?:\w+\s+)?(?P<kind>class(?:es)?|exceptions?|functions?|methods?|"
    r"decorators?|commands?|programs?|tools?|utilit(?:y|ies)|options?|flags?)\b",
    re.IGNORECASE,
)
_FUNCTION_KINDS = frozenset(["", "classmethod", "staticmethod", "method", "function", "coroutine"])


def asked_kind(question: str) -> str | None:
    """The kind of entry a question asks for ("class", "exception", "function",
    "decorator"), None when it names none ("how do I …")."""
    m = _ASKED_KIND.search(question)
    if m is None:
        return None
    kind = m.group("kind").lower()
    if kind.startswith("class"):
        return "class"
    if kind.startswith(("command", "program", "tool", "utilit")):
        return "command"
    if kind.startswith(("option", "flag")):
        return "option"
    return kind.rstrip("s").replace("method", "function")


def _of_kind(entry: Entry, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind == "function":
        return entry.kind in _FUNCTION_KINDS
    return entry.kind == kind


def best_entries(
    action: tuple[str, list[str]], entries: Sequence[tuple[int, Entry]], kind: str | None = None
) -> list[int]:
    """The keys of the entries of the kind asked for ("Which class writes rows?": a class,
    never the method csvwriter.writerows) that best do the action (several when they tie):
    the verb itself first (:func:`does_action`), then holding the most of the question's
    other words."""
    scored = [
        (k, (does_action(action, e), s))
        for k, e in entries
        if _of_kind(e, kind) and (s := entry_match(action, e)) is not None
    ]
    if not scored:
        return []
    top = max(key for _, key in scored)
    return [k for k, key in scored if key == top]


# A code name mentioned in a sentence: snake_case, called, dotted or CamelCase
# ("cache_clear()", "str.join", "DictWriter")
_MENTIONED = re.compile(
    r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?|\b[A-Za-z_]\w*\(\)|\b[a-z]+_\w+"
    r"|\b(?-i:[A-Z][a-z]+[A-Z]\w*)"
)


def names_doing(
    action: tuple[str, list[str]],
    sentence: str,
    question: str,
    parameters: frozenset[str] = frozenset(),
) -> str | None:
    """A code name ``sentence`` mentions that the question does not, whose own name does the
    question's action ("The decorator also provides a cache_clear() function …" for "how do
    I clear an lru_cache"); None when it mentions none. A parameter of an entry
    (``parameters``: "parse_int, if specified, will be called …") does nothing itself: the
    function that takes it does."""
    asked = {w.lower() for w in re.findall(r"[\w.]+", question)}
    for m in _MENTIONED.finditer(sentence):
        name = m.group(0).rstrip("()")
        if name.lower() in asked or name in parameters:
            continue
        own = _parts(name.rsplit(".", 1)[-1])
        if any(same_root(action[0], p) for p in own):
            return name
    return None
