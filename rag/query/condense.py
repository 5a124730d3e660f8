"""Follow-up questions into standalone questions: the ``condense`` stage, first on the query path.

Contract of :func:`condense` (rules, no model, well under a millisecond):

- in: the question, and the conversation before it (:class:`~rag.core.types.Turn` s, oldest
  first: the user's questions and the assistant's answers);
- out: a :class:`Condensed` whose ``question`` reads on its own. It is what retrieval,
  answer selection and verification see, what the answer cache is keyed by, and what the
  answer reports as ``standalone_question``;
- never raises; at worst the question comes back as it was asked.

What the rules do, each earlier user turn first (so a chain of follow-ups keeps its subject):

- **no history**, or a **complete question** (no pronoun, no fragment: a topic shift, or a
  follow-up that names its own subject): unchanged — old turns never pollute a new question
  ("whats the cap on hotels" only gets its apostrophe back: "What is the cap on hotels?");
- **a topic-shift marker** ("Separate question:", "different topic -", "ok different
  question,", "Unrelated:"): dropped, and what follows it stands as a new question;
- **ellipsis** — "And the business tier?", "What about monthly snapshots?", "For admins?",
  "How fast?": the fragment takes the place of its counterpart in the previous (already
  standalone) question: the phrase with the same head noun ("the free tier rate limit of the
  public API" → "the business tier rate limit of the public API"), the phrase after the same
  preposition ("for flights under six hours" → "for flights longer than six hours"), the
  question word ("Who do I tell if …" → "How fast do I tell if …"), else the previous
  question's subject ("How long are backups retained?" → "How long are monthly snapshots
  retained?");
- **pronouns** — it, its, they, them, their, this, that, these, those, one/ones — become the
  last turn's subject: the phrase the previous follow-up was resolved to (the conversation's
  topic), else the name an answer gave to a "which module / class / program …?" question, else
  the previous question's noun phrases in order (its subject first — the one after its
  auxiliary, "does *the postmortem* have to happen", before a noun of a clause ahead of it; one
  that agrees in number first, "a password" agreeing with "they" as "passwords"; "this"/"that"
  take the most recent). Expletive "it" ("how long does it take to …",
  "is it safe to …") refers to nothing and stays.

With ``condense.rewrite: model`` a generative backend of the chain rewrites the question
(LlamaIndex's condense-question chat engine does the same); the rules' result stands whenever
the model fails, times out, is over budget or writes something that is no question
(:class:`Condense`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from rag.contracts import QueryState
from rag.core.config import Settings
from rag.core.textguard import neutralise_special_tokens
from rag.core.types import StreamEvent, Turn

if TYPE_CHECKING:
    from rag.contracts import Generator
    from rag.generate import GeneratorChain
    from rag.query.costs import CostController

__all__ = ["Condense", "Condensed", "condense", "rewrite_prompt"]

log = logging.getLogger(__name__)

Method = Literal["none", "unchanged", "rules", "model"]


@dataclass(frozen=True)
class Condensed:
    """The question to answer, and how it was reached."""

    question: str  # the standalone question
    asked: str  # the question as asked
    method: Method  # none: no history; unchanged: it needs none; rules; model
    reason: str  # what the rules found: "ellipsis", "pronoun", "topic shift", ...
    topic: str | None = None  # the phrase the question is about, for the next follow-up

    @property
    def changed(self) -> bool:
        return self.question != self.asked


# -- words ---------------------------------------------------------------------------------
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WH = _words("what which who whom whose when where why how")
_WH_MODIFIERS = _words(
    "many much long often far big fast quickly soon old large small late early frequently"
)
_AUX = _words(
    "is are was were be been being am do does did can could should must will would may might "
    "shall has have had don't doesn't didn't can't cannot isn't aren't wasn't won't shouldn't "
    "couldn't wouldn't mustn't hasn't haven't"
)
_PREP = _words(
    "of for in on at to from with by about after before during under over into onto within "
    "without per via between through than like across against since until upon among around "
    "behind beside beyond inside outside near toward towards versus vs"
)
_DET = _words(
    "the a an this that these those my your our their its his her each every any some all no "
    "another other such both either neither"
)
_PERSONAL = _words("i me my mine we us our ours you your yours he him his she her hers")
_CONJ = _words("and or but nor so then plus")
_SUBJECTS = _words("i we you they")  # a question's subject pronoun ("how do I …")
_ADVERBS = _words(
    "not also only just again instead still already usually always never often ever even too "
    "very really exactly actually there here now then"
)
_LEADS = (  # a follow-up's opening that asks "the same, for this"
    ("and", "what", "about"),
    ("and", "how", "about"),
    ("but", "what", "about"),
    ("what", "about"),
    ("how", "about"),
    ("what", "of"),
    ("same", "for"),
    ("same", "with"),
    ("and", "also"),
    ("and",),
    ("but",),
    ("or",),
    ("also",),
    ("plus",),
)
_NAME_NOUNS = _words(
    "module modules class classes function functions method methods program programs tool "
    "tools library libraries package packages command commands option options exception "
    "exceptions statement statements keyword keywords variable variables attribute "
    "attributes setting settings parameter parameters argument arguments type types "
    "format formats protocol protocols service services product products file files"
)
_CONTRACTIONS = {"'s": "is", "’s": "is", "'re": "are", "’re": "are"}
_CONTRACTED = _words("what where how who when it that there which")
# The same typed without its apostrophe ("whats the cap on hotels"): a question word and "is"
_UNMARKED_CONTRACTIONS = {"whats": "what", "wheres": "where", "hows": "how", "whos": "who"}
# Verbs that questions about documentation use (base forms; their -s, -ed and -ing forms and
# the irregular ones below are verbs too). Nouns in a question are what is left.
_VERBS_BASE = _words(
    "accept access acknowledge activate add affect allow apply approve ask assign avoid back "
    "become begin book break bring build buy call cancel cause change check choose clear "
    "close collect come compare compile configure connect consist contain convert copy cost "
    "count cover create deactivate deal decide declare decode define delete deliver deploy "
    "describe design destroy detect determine differ disable display do encode encrypt end "
    "enable ensure enter exceed exist exit expire explain export extend fail feel fetch fill "
    "find finish fire fit fix fly follow forget format generate get give go grant grow guard "
    "handle happen hash help hide hold host implement import include increase install join "
    "keep know last launch lead learn leave let limit list live load lock log look lose make "
    "manage match mean measure meet merge miss modify move name need notice notify offer "
    "open operate order own page parse pass pay pick place plan point prefer prepare "
    "prevent print process produce protect provide publish pull push put raise reach read "
    "receive record recover reduce refer register reject release remain remember remove "
    "rename repeat replace report request require reset resolve respond restart restore "
    "retain retry return review revoke rotate run save say schedule search see select send "
    "serialize serve set share show shut sign sort specify split start stay stop store "
    "submit support switch take talk tell test think time track transfer trigger try turn "
    "understand unpickle update upgrade use validate verify view wait want warn wipe work "
    "write"
)
_VERBS_IRREGULAR = _words(
    "began begun broke broken brought built bought chose chosen came did done drew drawn felt "
    "found flew flown forgot forgotten gave given went gone grew grown held hid hidden kept "
    "knew known led left lent lost made meant met paid put ran read said saw seen sent set "
    "shown shut spent split stood took taken told thought understood won wrote written"
)
_NOT_VERBS = _words(
    "need speed feed seed embed hundred bed red shed process access address class business "
    "less unless status bus news series"
)
_GENERIC_HEADS = _words("thing things way ways one ones")
_FUNCTION_WORDS = (
    _WH | _AUX | _PREP | _DET | _PERSONAL | _CONJ | _ADVERBS | _words("if whether because unless")
)


def _verb_form(word: str) -> str | None:
    """ "base" (a listed verb as it is), "s" (its -s form), "part" (-ed or an irregular
    participle), "ing", or None: no verb we know."""
    w = word.lower()
    if w in _NOT_VERBS and w not in _VERBS_BASE:
        return None
    if w in _VERBS_BASE:
        return "base"
    if w in _VERBS_IRREGULAR:
        return "part"
    if len(w) < 4:
        return None
    for suffix, restore, form in (
        ("ies", "y", "s"),
        ("es", "", "s"),
        ("s", "", "s"),
        ("ied", "y", "part"),
        ("ed", "", "part"),
        ("ed", "e", "part"),
        ("d", "", "part"),
        ("ing", "", "ing"),
        ("ing", "e", "ing"),
    ):
        if w.endswith(suffix):
            base = w[: -len(suffix)] + restore
            if base in _VERBS_BASE:
                return form
            if form != "s" and len(base) > 2 and base[-1] == base[-2] and base[:-1] in _VERBS_BASE:
                return form  # stopped, running
    # A past participle of a verb not listed ("retained", "exceeded"): -ed after 3+ letters.
    return "part" if w.endswith("ed") and len(w) > 5 else None


# Base forms that are their own past participle: "How often is a restore test run?"
_SAME_PARTICIPLES = _words("run set put read cut let shut split cost come become hit quit")
_DO_MODALS = _words(
    "do does did can could should must will would may might shall don't doesn't didn't "
    "can't cannot won't shouldn't couldn't wouldn't mustn't"
)
_DEMONSTRATIVE_WORDS = _words("this that these those")
_PREDICATIVE = _words(
    "efficient safe secure possible available necessary required mandatory optional valid "
    "suitable true false enough fast slow faster slower better worse allowed supported "
    "deprecated empty different same correct ok okay mutable immutable free expensive cheap "
    "reliable encrypted public private visible enabled disabled"
)
_POSSESSIVE_DETERMINERS = _words("my your our his")
_SUBORDINATORS = _words("if whether because unless while although though once as so than")
_NUMERALS = _words("one two three four five six seven eight nine ten several many few")
_PARTICLES = _words("out up off down away over back")


def _roles(tokens: Sequence[str]) -> list[str]:
    """What each word is: wh, whmod ("How *many*"), aux, pron, det, prep, conj, adv, verb,
    noun or punct — by small word lists and where a word stands (a question's subject follows
    its auxiliary; its verb follows the subject after "do" or a modal; "the free tier rate
    limit" is all noun, "do new engineers join" ends at the verb)."""
    roles: list[str] = []
    verb_expected = False  # after "do"/a modal, or a wh-noun subject: the next verb is the verb
    seen_be = False
    n = len(tokens)
    for i, word in enumerate(tokens):
        w = _low(word)
        prev = roles[-1] if roles else "start"
        nxt = _low(tokens[i + 1]) if i + 1 < n else "?"
        if _is_punct(word):
            roles.append("punct")
        elif w in _WH:
            roles.append("wh")
        elif w in _WH_MODIFIERS and prev in ("wh", "whmod"):
            roles.append("whmod")
        elif w in _AUX:
            roles.append("aux")
            verb_expected = w in _DO_MODALS
            seen_be = seen_be or not verb_expected
        elif w in _POSSESSIVE_DETERMINERS and i + 1 < n and not _is_punct(tokens[i + 1]):
            roles.append("det")  # "my laptop"
        elif w in _PERSONAL or w in _PRONOUNS:
            roles.append("pron")
        elif (
            w in _DEMONSTRATIVE_WORDS
            and prev in ("aux", "prep", "start", "wh", "verb", "conj")
            and (
                nxt in ("?", ".", "!")
                or nxt in _AUX
                or nxt in _PREP
                or nxt in _ADVERBS
                or (verb_expected and _verb_form(nxt) is not None)
            )
        ):
            roles.append("pron")  # "What does that mean?", "for that instead", "Is that true?"
        elif w in _DET:
            roles.append("det")
        elif w in _PREP:
            roles.append("prep")
        elif w in _CONJ or w in _SUBORDINATORS:
            roles.append("conj")
        elif w in _ADVERBS or w in _PARTICLES:
            roles.append("adv")
        elif (
            w.endswith("ly")
            and len(w) > 4
            and not (
                i + 1 < n
                and nxt not in _FUNCTION_WORDS
                and not _is_punct(tokens[i + 1])
                and _verb_form(nxt) in (None, "base")
            )
        ):
            roles.append("adv")  # "regularly", but "monthly snapshots" is a noun phrase
        else:
            form = _verb_form(w)
            next_nounish = (
                i + 1 < n
                and not _is_punct(tokens[i + 1])
                and nxt not in _FUNCTION_WORDS
                and _verb_form(nxt) in (None, "base")
            )
            if (
                form is None
                and verb_expected
                and prev == "pron"
                and _low(tokens[i - 1]) in _SUBJECTS
            ):
                # "how do i serialise …", "how can I annotate …": after "do I" comes the verb,
                # whether or not the word lists know it
                role = "verb"
            elif form is None:
                role = "noun"
            elif prev == "prep" and _low(tokens[i - 1]) == "to" and form == "base":
                role = "verb"  # "to review"
            elif form in ("part", "ing"):
                # "the installed packages", "are approved expense claims": an adjective
                adjective = next_nounish and (
                    prev in ("det", "aux", "prep", "start", "whmod", "conj")
                    or (i > 0 and (_low(tokens[i - 1]) in _NUMERALS or tokens[i - 1].isdigit()))
                )
                role = "noun" if adjective else "verb"
            elif prev in ("det", "prep", "aux", "whmod"):
                role = "noun"  # a subject after its auxiliary, an object after a preposition
            elif verb_expected and prev in ("noun", "pron"):
                role = "verb"
            elif prev == "noun" and form == "base":
                last = nxt in ("?", ".", "!") or i + 1 == n
                role = "verb" if last and seen_be and w in _SAME_PARTICIPLES else "noun"
            else:
                role = "verb"
            if role == "verb":
                verb_expected = False
            roles.append(role)
        # a wh-noun is a subject: its verb follows ("Which items need a receipt?")
        if (
            roles[-1] == "noun"
            and all(r in ("wh", "whmod", "noun") for r in roles)
            and roles[0] == "wh"
        ):
            verb_expected = True
    return roles


_TOKEN = re.compile(r"[^\s,;:?!()\"“”]+|[,;:?!()\"“”]")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for raw in _TOKEN.findall(" ".join(text.split())):
        word = raw
        if len(word) > 1 and word.endswith(".") and word.count(".") == 1:
            out += [word[:-1], "."]  # a sentence's full stop, not a dotted name
            continue
        low = word.lower()
        if low in _UNMARKED_CONTRACTIONS:
            out += [word[: len(_UNMARKED_CONTRACTIONS[low])], "is"]
            continue
        for short, long in _CONTRACTIONS.items():
            if low.endswith(short) and low[: -len(short)] in _CONTRACTED:
                out += [word[: -len(short)], long]
                break
        else:
            out.append(word)
    return out


def _text(tokens: Sequence[str]) -> str:
    text = " ".join(tokens)
    text = re.sub(r"\s+([,;:?!.)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return text.strip()


def _sentence(tokens: list[str]) -> str:
    """Tokens as a question: capitalised, one question mark at the end."""
    words = [t for t in tokens if t not in ("?", "!", ".")]
    while words and words[-1] in (",", ";", ":"):
        words.pop()
    if not words:
        return ""
    first = words[0]
    words[0] = first[:1].upper() + first[1:]
    return _text(words) + "?"


def _low(word: str) -> str:
    return word.lower().strip("'\"“”’")


def _is_punct(word: str) -> bool:
    return not any(c.isalnum() for c in word)


_SINGULAR_PRONOUNS = _words("it itself")
_PLURAL_PRONOUNS = _words("they them themselves")
_POSSESSIVES = {"its": "sing", "their": "plur"}
_DEMONSTRATIVES = {"this": "sing", "that": "sing", "these": "plur", "those": "plur"}
_PRONOUNS = _SINGULAR_PRONOUNS | _PLURAL_PRONOUNS | frozenset(_POSSESSIVES)


def _plural(head: str) -> bool:
    w = head.lower()
    if w in ("people", "data", "children", "media", "criteria"):
        return True
    return (
        len(w) > 2
        and w.endswith("s")
        and not w.endswith(("ss", "us", "is", "'s", "’s"))
        and w not in _NOT_VERBS
    )


def _singular(word: str) -> str:
    w = word
    if w.lower().endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.lower().endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if _plural(w):
        return w[:-1]
    return w


# -- noun phrases ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chunk:
    start: int  # token indexes into the question, end exclusive
    end: int
    head: int  # the head noun's index (of the first part, before "of ...")
    wh: bool  # the noun of the question's wh-phrase ("Which module", "How many reviews")

    def words(self, tokens: Sequence[str]) -> list[str]:
        return list(tokens[self.start : self.end])

    def plural(self, tokens: Sequence[str]) -> bool:
        return _plural(tokens[self.head])


def _chunks(tokens: Sequence[str], roles: Sequence[str] | None = None) -> list[_Chunk]:
    """Noun phrases: runs of nouns (a determiner opens one), "X of Y" joined."""
    roles = roles if roles is not None else _roles(tokens)
    spans: list[list[int]] = []
    current: list[int] = []
    for i, role in enumerate(roles):
        if role == "det":
            if current:
                spans.append(current)
            current = [i]
        elif role == "noun" or (role == "pron" and _low(tokens[i]) in ("one", "ones") and current):
            current.append(i)
        else:
            if current:
                spans.append(current)
            current = []
    if current:
        spans.append(current)
    # "Are lists efficient as queues?": a predicative adjective ends no noun phrase
    spans = [s[:-1] if len(s) > 1 and _low(tokens[s[-1]]) in _PREDICATIVE else s for s in spans]
    spans = [s for s in spans if any(roles[i] == "noun" for i in s)]
    chunks: list[_Chunk] = []
    for span in spans:
        start, end = span[0], span[-1] + 1
        head = span[-1]
        joined = chunks and chunks[-1].end + 1 == start and _low(tokens[chunks[-1].end]) == "of"
        if joined:
            prev = chunks[-1]
            chunks[-1] = _Chunk(prev.start, end, prev.head, prev.wh)
            continue
        wh = start > 0 and roles[start - 1] in ("wh", "whmod")
        chunks.append(_Chunk(start, end, head, wh))
    return chunks


def _wh_phrase_end(tokens: Sequence[str]) -> int:
    """Where the question's opening wh-phrase ends ("How many approving reviews | does ...",
    "Who | schedules ..."); 0 when it does not open with one."""
    roles = _roles(tokens)
    if not roles or roles[0] != "wh":
        return 0
    i = 1
    while i < len(roles) and roles[i] == "whmod":
        i += 1
    for chunk in _chunks(tokens, roles):
        if chunk.start == i and chunk.wh:
            return chunk.end
    return i


# -- what the previous turn was about ------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    question: list[str]  # the previous user turn, standalone, as tokens
    topic: str | None  # what the previous follow-up was resolved to
    answer: str  # the assistant's answer to it ("" when none)
    # What the name a "Which module creates virtual environments?" was answered with is
    # about ("virtual environments"): "one" means one of those, never the name ("venv")
    kind: str | None = None


_USE_INSTEAD = re.compile(
    r"\b(?:use|using)\s+(?:the\s+|an?\s+)?([A-Za-z_][\w.]*)(?:\(\))?(?:\s+([a-z]+))?\s+instead\b"
)
_ASKS_WHAT_TO_USE = re.compile(
    r"^what\s+(?:should|can|could|do|would|must)\s+(?:i|we|you)\s+use\b", re.IGNORECASE
)
_CALLED = re.compile(r"\b(?:called|named)\s+([A-Za-z_][\w.]*)")
_CODE_LIKE = re.compile(
    r"^(?:[A-Za-z_]\w*\.[A-Za-z_][\w.]*|[A-Za-z_]\w*\(\)|_*[a-z]+_\w*|[a-z]+\d\w*|"
    r"[A-Z][a-z]+[A-Z]\w*)$"
)


def _answer_name(ctx: _Context) -> str | None:
    """The name the answer gave to a "which module / class / program ...?" question:
    "the heapq module", "a program called pip", "sqlite3", "ArgumentParser"."""
    end = _wh_phrase_end(ctx.question)
    if not end or not ctx.answer:
        return None
    noun = _low(ctx.question[end - 1])
    answer = re.sub(r"\s*\[\d+\]", "", ctx.answer)
    asked = {_low(t) for t in ctx.question}
    if noun not in _NAME_NOUNS:
        if _ASKS_WHAT_TO_USE.match(_text(ctx.question)):
            # "What should I use instead of lists as queues?" — "To implement a queue, use
            # collections.deque ...", "use secrets instead": it is the name the answer gives
            recommended = next(
                (
                    m.group(1)
                    for m in _USE_INSTEAD.finditer(answer)
                    if _low(m.group(1)) not in asked
                ),
                None,
            )
            return recommended or next(
                (w for w in _tokens(answer) if _CODE_LIKE.match(w) and _low(w) not in asked),
                None,
            )
        return None
    # "The getopt module is a parser ...; consider using the argparse module instead": the
    # name the answer recommends is the answer, not the first one it mentions
    for recommended in _USE_INSTEAD.finditer(answer):
        name, kind = recommended.group(1), (recommended.group(2) or "").lower()
        if name.lower() not in asked and kind in ("", noun, _singular(noun)):
            return name
    found = _CALLED.search(answer)
    if found and found.group(1).lower() not in asked:
        return found.group(1).rstrip(".")
    words = _tokens(answer)
    singular = _singular(noun)
    for i, word in enumerate(words[1:], start=1):
        if _low(word) in (noun, singular):
            name = words[i - 1]
            low = _low(name)
            if (
                low in asked
                or low in _FUNCTION_WORDS
                or low in _DESCRIBING
                or _is_punct(name)
                or _verb_form(low) is not None
            ):
                continue
            if name[:1].isupper() and not _CODE_LIKE.match(name):
                return f"{name} {word}"  # "Business class"
            return name  # "the heapq module": heapq
    for word in words:
        if _CODE_LIKE.match(word) and _low(word) not in asked:
            return word
    return None


# Words before "module", "class" ... that describe rather than name it.
_DESCRIBING = _words(
    "new old same other standard built-in builtin main core common useful special simple "
    "basic following previous next whole given separate original default external internal "
    "public private helper third-party low-level high-level own such first second last"
)


def _definite(words: list[str]) -> list[str]:
    """A phrase mentioned again: "a virtual environment" → "the virtual environment"."""
    if words and _low(words[0]) in ("a", "an"):
        return ["the", *words[1:]]
    if words and _low(words[0]) in _DET:
        return [words[0].lower(), *words[1:]]
    return list(words)


def _indefinite_singular(words: list[str], head_offset: int) -> list[str]:
    """ "API keys" → "an API key"; "the virtual environments" → "a virtual environment"."""
    body = list(words)
    if body and _low(body[0]) in _DET:
        body = body[1:]
        head_offset -= 1
    if not body:
        return body
    head_offset = max(0, min(head_offset, len(body) - 1))
    body[head_offset] = _singular(body[head_offset])
    article = "an" if body[0][:1].lower() in "aeiou" else "a"
    return [article, *body]


def _described(question: list[str], wh: _Chunk) -> list[str]:
    """The wh-phrase's noun with what the question says of it: "Which module should I use to
    parse command-line options?" → "the module I use to parse command-line options"."""
    rest = [t for t in question[wh.end :] if not _is_punct(t) or t == ","]
    if rest and _low(rest[0]) in _DO_MODALS:
        rest = rest[1:]  # "does the module use" → "the module ... use"
        return ["the", *question[wh.start : wh.end], *rest]
    return ["the", *question[wh.start : wh.end], "that", *rest]


def _candidates(
    ctx: _Context,
    exclude: set[str],
    number: str | None,
    recent_first: bool,
    kinds_only: bool = False,
) -> list[list[str]]:
    """Antecedents for a pronoun, best first (see the module docstring)."""
    out: list[list[str]] = []
    if kinds_only and ctx.kind:
        out.append(_tokens(ctx.kind))  # "turn a list into one": one heap queue, not heapq
    if ctx.topic and not (kinds_only and ctx.kind):
        topic = _tokens(ctx.topic)
        topic_chunks = _chunks(topic)
        topic_plural = topic_chunks[0].plural(topic) if topic_chunks else False
        if number is None or (number == "plur") == topic_plural:
            out.append(topic)
    name = _answer_name(ctx)
    if name and number != "plur":
        out.append([name])
    excluded = exclude | {_singular(w) for w in exclude}
    chunks = [
        c
        for c in _chunks(ctx.question)
        if _singular(_low(ctx.question[c.head])) not in excluded
        and _low(ctx.question[c.head]) not in _GENERIC_HEADS
    ]
    plain = [c for c in chunks if not c.wh]
    roles = _roles(ctx.question)
    subject = next((c for c in plain if _inverted_subject(ctx.question, roles, c)), None)
    if subject is not None:
        # "How soon after an incident is resolved does the postmortem ...?": the postmortem
        plain = [subject, *(c for c in plain if c is not subject)]
    if recent_first:
        plain.reverse()

    def agrees(c: _Chunk) -> bool:
        if number is None or (number == "plur") == c.plural(ctx.question):
            return True
        # the subject said with "a" is any one: "How long must a password be?" — "they" are
        # passwords (an object is not: "Which items need a receipt?" — "they" are the items)
        return number == "plur" and c is subject and _low(ctx.question[c.start]) in ("a", "an")

    agreeing = [c for c in plain if agrees(c)]
    rest = [c for c in plain if c not in agreeing]
    wh = [
        c
        for c in chunks
        if c.wh and (number is None or (number == "plur") == c.plural(ctx.question))
    ]
    asks_name = any(_low(ctx.question[c.head]) in _NAME_NOUNS for c in wh)
    if asks_name and not kinds_only:
        # "Which module measures ...?": it is "the module that measures ..."
        out.append(_described(ctx.question, wh[0]))
        wh = []
    for c in [*agreeing, *wh, *rest]:
        words = _whole_of_part(c.words(ctx.question), c.head - c.start)
        if len(words) < c.end - c.start:  # "a given position of a list": the list
            out.append(_definite(words))
            continue
        if number == "plur" and c is subject and not c.plural(ctx.question) and agrees(c):
            out.append(_generic_plural(words, c.head - c.start))
            continue
        out.append(
            _definite(words) if _low(words[0]) in _DET else ["the", *words] if c.wh else words
        )
    if recent_first and ctx.topic and out and out[0] == _tokens(ctx.topic):
        out.append(out.pop(0))  # "that" is what was said last, before the topic
    return out


# Nouns that name a part or a place of something ("the end of a list", "a given position of
# a list"): a pronoun that comes back to such a phrase means the whole, the thing after "of".
_PART_NOUNS = _words(
    "end ends start beginning front back top bottom middle position positions index part parts "
    "rest side head tail edge"
)


def _whole_of_part(words: list[str], head_offset: int) -> list[str]:
    """ "a given position of a list" → "a list"; any other phrase as it is."""
    if not 0 <= head_offset < len(words) - 2 or _low(words[head_offset]) not in _PART_NOUNS:
        return words
    if _low(words[head_offset + 1]) != "of":
        return words
    return words[head_offset + 2 :]


def _inverted_subject(tokens: Sequence[str], roles: Sequence[str], chunk: _Chunk) -> bool:
    """Whether ``chunk`` is the question's subject after its auxiliary ("... does *the
    postmortem* have to happen?", "How many characters must *a password* have?"), not a noun
    of a clause before it ("after an incident is resolved")."""
    at = chunk.start - 1
    return at > 0 and roles[at] == "aux" and _low(tokens[at]) in _DO_MODALS


def _generic_plural(words: list[str], head_offset: int) -> list[str]:
    """ "a password" → "passwords": a plural pronoun's antecedent said with "a"."""
    body = list(words[1:])
    at = head_offset - 1
    if not 0 <= at < len(body):
        return list(words)
    head = body[at]
    low = head.lower()
    if low.endswith("y") and len(low) > 2 and low[-2] not in "aeiou":
        body[at] = head[:-1] + "ies"
    elif low.endswith(("s", "x", "ch", "sh")):
        body[at] = head + "es"
    else:
        body[at] = head + "s"
    return body


# -- pronouns ----------------------------------------------------------------------------------
_TAKE = _words("take takes took taking")
_BE = _words("is was isn't wasn't are were")
_EXPLETIVE_AFTER = _words("seems seem seemed appears appear matters matter")


def _expletive_it(tokens: Sequence[str], i: int) -> bool:
    """ "how long does it take to ...", "is it safe to ...", "it is possible that ..."."""
    after = [_low(t) for t in tokens[i + 1 : i + 5]]
    before = _low(tokens[i - 1]) if i > 0 else ""
    clause = ("to", "that", "if", "whether")
    if after[:1] and (after[0] in _TAKE or after[0] in _EXPLETIVE_AFTER):
        return True
    if len(after) >= 3 and after[0] in ("is", "was", "be") and after[2] in clause:
        return True  # "it is possible to ..."
    # "is it safe to ...", not "does it need to ..."
    return before in _BE and len(after) >= 2 and after[1] in clause


def _pronoun_kind(tokens: Sequence[str], roles: Sequence[str], i: int) -> str | None:
    """What the word at ``i`` is as an anaphor: "it", "they", "its", "their", "this", "these",
    "one" — or None when it is none (a numeral, a determiner, a relative "that", expletive "it")."""
    w = _low(tokens[i])
    nxt_role = roles[i + 1] if i + 1 < len(roles) else "punct"
    nxt_low = _low(tokens[i + 1]) if i + 1 < len(tokens) else "?"
    if w in _SINGULAR_PRONOUNS:
        return None if w == "it" and _expletive_it(tokens, i) else "it"
    if w in _PLURAL_PRONOUNS:
        return "they"
    if w in _POSSESSIVES:
        return w if nxt_role == "noun" else None
    if w in _DEMONSTRATIVES:
        if roles[i] != "pron":  # a determiner ("that tier") or a relative ("requests that ...")
            return None
        return "this" if _DEMONSTRATIVES[w] == "sing" else "these"
    if w in ("one", "ones"):
        if nxt_low == "of":
            return None  # "one of them"
        if i + 1 < len(tokens) and not _is_punct(tokens[i + 1]) and nxt_low not in _FUNCTION_WORDS:
            form = _verb_form(nxt_low)
            after = tokens[i + 2] if i + 2 < len(tokens) else "?"
            if form is None or (form in ("ing", "part") and not _is_punct(after)):
                return None  # a numeral: "one approving review", "one thing"
        return "one"
    return None


def _bound_here(tokens: Sequence[str], roles: Sequence[str], i: int, number: str) -> bool:
    """Whether a noun phrase of the question itself, before a subordinate clause that holds
    the pronoun at ``i``, is what the pronoun means ("How can a module tell whether it ...")."""
    clause = max((j for j in range(i) if roles[j] == "conj"), default=-1)
    if clause < 0:
        return False
    return any(
        not c.wh and c.end <= clause and (number == "plur") == c.plural(tokens)
        for c in _chunks(tokens, roles)
    )


def _resolve_pronouns(tokens: list[str], ctx: _Context) -> tuple[list[str], str | None, bool]:
    """(tokens with their anaphors replaced, the phrase they became, whether any was)."""
    roles = _roles(tokens)
    out: list[str] = []
    topic: str | None = None
    found = False
    own = {_low(t) for t in tokens}
    own_wh = [c for c in _chunks(tokens, roles) if c.wh]
    i = 0
    while i < len(tokens):
        kind = _pronoun_kind(tokens, roles, i)
        word = tokens[i]
        if kind is None:
            out.append(word)
            i += 1
            continue
        exclude = own - _DET - _WH - _AUX - _PREP
        prev_role = roles[i - 1] if i > 0 else "start"
        if kind == "one":
            plural = word.lower() == "ones"
            if prev_role in ("det", "noun") and own_wh:
                out.append(word)  # "Which region is the primary one?": its own noun
                i += 1
                continue
            found = True
            if prev_role == "wh":  # "which one" → "which function"
                wh_chunks = [c for c in _chunks(ctx.question) if c.wh]
                noun = ctx.question[wh_chunks[0].head] if wh_chunks else None
                if noun is None:
                    picks = _candidates(ctx, set(), None, False)
                    noun = picks[0][-1] if picks else None
                out.append((noun if plural else _singular(noun)) if noun else word)
                i += 1
                continue
            picks = _candidates(ctx, set(), None, False, kinds_only=True)
            if not picks:
                out.append(word)
                i += 1
                continue
            pick = picks[0]
            if prev_role in ("det", "noun"):
                # "the business one", "incremental ones": the antecedent's head noun
                head = pick[-1]
                out.append(head if plural else _singular(head))
            else:  # "remove one", "if one is leaked": an indefinite antecedent
                phrase = _definite(pick) if plural else _indefinite_singular(pick, len(pick) - 1)
                out += phrase
                topic = _text(_definite(phrase))
            i += 1
            continue
        number: str | None = "plur" if kind in ("they", "their") else "sing"
        if kind in ("this", "these"):
            number = None  # "for that": what was said last, whatever its number
        if kind in ("it", "they") and number and _bound_here(tokens, roles, i, number):
            out.append(word)  # "How can a module tell whether it is run as a script?"
            i += 1
            continue
        found = True
        recent = kind in ("this", "these")
        picks = _candidates(ctx, exclude, number, recent)
        if not picks:
            picks = _candidates(ctx, exclude, None, recent)
        if not picks:
            out.append(word)
            i += 1
            continue
        phrase = _definite(picks[0])
        if kind in ("its", "their"):
            # "its action items" → "the action items of the blameless postmortem"
            j = i + 1
            owned: list[str] = []
            while j < len(tokens) and roles[j] == "noun":
                owned.append(tokens[j])
                j += 1
            out += ["the", *owned, "of", *phrase]
            i = j
        else:
            out += phrase
            i += 1
        topic = _text(phrase)
    return out, topic, found


def _instead(tokens: list[str], ctx: _Context) -> list[str]:
    """A trailing "instead" without an object: "instead of" what the last turn was about."""
    words = [t for t in tokens if t != "?"]
    if not words or _low(words[-1]) != "instead":
        return tokens
    picks = _candidates(ctx, {_low(t) for t in words}, None, False)
    if not picks:
        return tokens
    # "Are lists efficient as queues?" — "What should I use instead?": instead of lists, as
    # queues (the use the last turn was about, unless this question names its own)
    purpose: list[str] = []
    if not {_low(t) for t in words} & _PURPOSE:
        purpose = _purpose_phrase(ctx.question)
    return [*words, "of", *_definite(picks[0]), *purpose]


_PURPOSE = _words("as for")


def _purpose_phrase(question: list[str]) -> list[str]:
    """The question's closing "as queues" / "for security purposes" (a noun phrase after "as"
    or "for" that ends it), or nothing."""
    body = [t for t in question if not _is_punct(t)]
    roles = _roles(body)
    for i in range(len(body) - 2, 0, -1):
        if _low(body[i]) in _PURPOSE:
            tail = roles[i + 1 :]
            if tail and all(r in ("det", "noun") for r in tail) and "noun" in tail:
                return body[i:]
            return []
    return []


# -- ellipsis ----------------------------------------------------------------------------------
def _lead(tokens: list[str]) -> tuple[int, bool]:
    """How many opening words ask "the same, for this" ("And", "What about"), and whether
    they say "about"/"same" (then even a full clause after them is a fragment)."""
    low = [_low(t) for t in tokens]
    for lead in _LEADS:
        if tuple(low[: len(lead)]) == lead:
            return len(lead), len(lead) > 1 and lead[-1] in ("about", "of", "for", "with")
    return 0, False


def _is_fragment(tokens: list[str], after_lead: bool) -> bool:
    """No clause: no auxiliary nor verb ("Monthly snapshots?", "How fast?", "For admins?").
    After "And"/"What about" a short phrase is one whatever its words look like."""
    words = [t for t in tokens if not _is_punct(t)]
    if not words or len(words) > 8:
        return False
    roles = _roles(words)
    if any(r == "aux" for r in roles):
        return False
    if after_lead and roles[0] != "wh":
        return True
    return len(words) <= 6 and not any(r == "verb" for r in roles)


def _replace_wh(fragment: list[str], previous: list[str]) -> list[str]:
    """ "How fast?" after "Who do I tell if my laptop is stolen?" → "How fast do I tell if my
    laptop is stolen?"; after a yes/no question ("Is pickle secure?") it goes in front."""
    words = [t for t in fragment if not _is_punct(t)]
    end = _wh_phrase_end(previous)
    rest = [t for t in previous[end:] if t != "?"]
    if not end and rest:
        rest = [rest[0].lower() if _low(rest[0]) in _AUX else rest[0], *rest[1:]]
    return [*words, *rest]


def _replace_pp(fragment: list[str], previous: list[str]) -> list[str]:
    """ "And for flights longer than six hours?" → the previous question's "for ..." phrase
    replaced; no such phrase: its last one; none at all: added at its end."""
    words = [t for t in fragment if not _is_punct(t)]
    body = [t for t in previous if t != "?"]
    prep = _low(words[0])
    start_wh = _wh_phrase_end(body)
    positions = [i for i, t in enumerate(body) if i >= start_wh and _low(t) in _PREP]
    same = [i for i in positions if _low(body[i]) == prep]
    top = [i for i in positions if _low(body[i]) != "of"]
    at = same[-1] if same else (top[-1] if top else None)
    if at is None:
        return [*body, *words]
    roles = _roles(body)
    end = at + 1
    while end < len(body) and roles[end] not in ("aux", "wh", "conj", "verb", "punct"):
        end += 1
    # "to the end of a list" → "at a given position": of a list still (what it is a part of)
    owner = next((i for i in range(at + 1, end) if _low(body[i]) == "of"), None)
    if owner is not None and "of" not in {_low(w) for w in words}:
        return [*body[:at], *words, *body[owner:end], *body[end:]]
    return [*body[:at], *words, *body[end:]]


def _replace_np(
    fragment: list[str], previous: list[str], ctx: _Context
) -> tuple[list[str], str | None]:
    """ "And the business tier?" → the previous question with its phrase of the same head
    noun ("the free tier rate limit ...") re-modified, else its subject replaced."""
    words = [t for t in fragment if not _is_punct(t)]
    body = [t for t in previous if t != "?"]
    chunks = _chunks(body)
    plain = [c for c in chunks if not c.wh]
    target = plain[0] if plain else (chunks[0] if chunks else None)
    if ctx.topic:  # the phrase the conversation is about, when the question still holds it
        topic = [_low(t) for t in _tokens(ctx.topic)]
        low = [_low(t) for t in body]
        at = next(
            (i for i in range(len(low) - len(topic) + 1) if low[i : i + len(topic)] == topic), None
        )
        if at is not None and len(topic) > 1:
            target = _Chunk(at, at + len(topic), at + len(topic) - 1, False)
        else:
            topic_chunks = _chunks(_tokens(ctx.topic))
            topic_head = _low(_tokens(ctx.topic)[topic_chunks[0].head]) if topic_chunks else ""
            target = next(
                (c for c in plain if topic_head in {_low(t) for t in body[c.start : c.end]}),
                target,
            )
    if words and _low(words[-1]) in ("one", "ones") and target is not None:
        # "incremental ones": the head noun of the phrase it stands for
        head = body[target.head]
        words[-1] = _singular(head) if _low(words[-1]) == "one" else head
    if not words:
        return body, None
    head = _low(words[-1])
    for c in plain:
        for i in range(c.start, c.end):
            if _low(body[i]) in (head, _singular(head), head + "s"):
                first = c.start
                if _low(body[first]) in _DET and _low(words[0]) not in _DET:
                    first += 1
                new = [*body[:first], *words, *body[i + 1 :]]
                end = c.end - (i + 1 - first) + len(words)
                return new, _text(new[c.start : end])
    if target is None:
        return ["What", "about", *words], None
    new = [*body[: target.start], *words, *body[target.end :]]
    return new, _text(words)


def _replace_predicate(fragment: list[str], previous: list[str]) -> list[str] | None:
    """ "And parse such a string back?" after "How do I format a datetime as a string?" → "How
    do I parse such a string back?": a fragment opening with a verb (in its base form) is a
    new action for the previous question's subject; None when that question asks no "how do
    I <verb> …" or the fragment opens with no verb."""
    words = [t for t in fragment if not _is_punct(t)]
    if not words or _verb_form(words[0]) != "base":
        return None
    body = [t for t in previous if t != "?"]
    roles = _roles(body)
    verb = next((i for i, r in enumerate(roles) if r == "verb"), None)
    if verb is None or verb < 2 or roles[verb - 1] != "pron" or roles[verb - 2] != "aux":
        return None
    return [*body[:verb], *words]


def _possessive_fragment(words: list[str], ctx: _Context) -> list[str] | None:
    """ "And its price?" → "What is the price of <subject>?"."""
    low = [_low(w) for w in words]
    if not low or low[0] not in _POSSESSIVES:
        return None
    resolved, _, _ = _resolve_pronouns(words, ctx)
    verb = "are" if _plural(words[-1]) else "is"
    return ["What", verb, *resolved]


# -- topic shifts ------------------------------------------------------------------------------
# An opening that announces a new topic ("Separate question:", "different topic -", "ok
# different question,", "Unrelated:"): the words before its colon, dash or comma, all of them
# from these, one of them naming the shift.
_SHIFT_WORDS = _words(
    "ok okay so now and also separate different unrelated new another other totally "
    "completely quick question topic subject btw aside note on a"
)
_SHIFT_NAMES = _words("question topic subject unrelated btw aside")
_SHIFT_STOPS = frozenset((":", "-", "–", "—", ","))


def _shift_marker(tokens: Sequence[str]) -> int:
    """How many opening tokens announce a topic shift (0: none); what follows them is a
    complete question of its own, and the marker is no part of it."""
    for i, token in enumerate(tokens[:6]):
        if token in _SHIFT_STOPS:
            words = {_low(t) for t in tokens[:i]}
            rest = [t for t in tokens[i + 1 :] if not _is_punct(t)]
            if words and words <= _SHIFT_WORDS and words & _SHIFT_NAMES and rest:
                return i + 1
            return 0
        if _is_punct(token):
            return 0
    return 0


# -- the rules, one turn ---------------------------------------------------------------------------
def _one(question: str, ctx: _Context | None) -> Condensed:
    asked = " ".join(question.split())
    if ctx is None or not ctx.question:
        return Condensed(asked, asked, "none", "no history")
    tokens = _tokens(asked)
    if shift := _shift_marker(tokens):
        # "Separate question: what's the hotel cap?": a new question; old turns stay out of it
        standalone = _sentence(tokens[shift:])
        return Condensed(standalone or asked, asked, "rules", "topic shift")
    skip, about = _lead(tokens)
    rest = tokens[skip:]
    body = [t for t in rest if not _is_punct(t) or t in (",",)]
    reason = "unchanged"
    topic: str | None = None
    if skip and not body:
        return Condensed(asked, asked, "unchanged", "nothing after the conjunction")
    fragment = (skip and (about or _is_fragment(rest, True))) or (
        not skip and _is_fragment(tokens, False)
    )
    if fragment:
        words = [t for t in rest if not _is_punct(t)]
        first = _low(words[0]) if words else ""
        if first in _WH:
            built = _replace_wh(words, ctx.question)
            reason = "ellipsis (question word)"
            topic = ctx.topic
        elif first in _PREP:
            built = _replace_pp(words, ctx.question)
            reason = "ellipsis (phrase)"
            topic = ctx.topic
        elif (possessive := _possessive_fragment(words, ctx)) is not None:
            built, reason = possessive, "ellipsis (possessive)"
        elif (predicate := _replace_predicate(words, ctx.question)) is not None:
            built, reason = predicate, "ellipsis (action)"
        else:
            built, topic = _replace_np(words, ctx.question, ctx)
            reason = "ellipsis"
        resolved, found_topic, found = _resolve_pronouns(built, ctx)
        standalone = _sentence(resolved)
        return Condensed(standalone or asked, asked, "rules", reason, found_topic or topic)
    words = list(rest) if skip else tokens
    resolved, topic, found = _resolve_pronouns(words, ctx)
    resolved = _instead(resolved, ctx)
    if not found and resolved == words:
        if any(_low(t) in _UNMARKED_CONTRACTIONS for t in asked.split()):
            # "whats the cap on hotels" → "What is the cap on hotels?": the question word is
            # what answer selection reads the answer type from
            return Condensed(_sentence(words) or asked, asked, "rules", "contraction")
        return Condensed(asked, asked, "unchanged", "complete question (topic shift or new)")
    standalone = _sentence(resolved)
    if skip and not found and standalone:
        return Condensed(standalone, asked, "rules", "conjunction", None)
    return Condensed(standalone or asked, asked, "rules", "pronoun", topic)


def _kind(done: Condensed, before: _Context | None, answer: str) -> str | None:
    """What "one" means after this turn (``_Context.kind``): the thing a "which module / class
    ...?" question answered with a name asks about ("Which module implements a heap queue?":
    a heap queue), kept while follow-ups refer back; gone with a new complete question."""
    tokens = _tokens(done.question)
    ctx = _Context(tokens, done.topic, answer)
    end = _wh_phrase_end(tokens)
    if end and _low(tokens[end - 1]) in _NAME_NOUNS and _answer_name(ctx) is not None:
        roles = _roles(tokens)
        chunks = [c for c in _chunks(tokens, roles) if not c.wh]
        obj = next((c for c in chunks if not _inverted_subject(tokens, roles, c)), None)
        if obj is not None:
            return _text(obj.words(tokens))
    if before is not None and done.method == "rules" and done.reason != "topic shift":
        return before.kind
    return None


def condense(question: str, history: Sequence[Turn], max_turns: int = 8) -> Condensed:
    """The question as it reads on its own, given the conversation before it (see the module
    docstring). Only the last ``max_turns`` user questions (and their answers) are read."""
    exchanges: list[tuple[str, str]] = []  # (user question, the answer that followed)
    for turn in history:
        text = " ".join(turn.content.split())
        if not text:
            continue
        if turn.role == "user":
            exchanges.append((text, ""))
        elif turn.role == "assistant" and exchanges:
            q, a = exchanges[-1]
            exchanges[-1] = (q, f"{a} {text}".strip())
    exchanges = exchanges[-max_turns:] if max_turns > 0 else []
    ctx: _Context | None = None
    try:
        for earlier, answer in exchanges:
            done = _one(earlier, ctx)
            ctx = _Context(_tokens(done.question), done.topic, answer, _kind(done, ctx, answer))
        return _one(question, ctx)
    except Exception as exc:  # noqa: BLE001 - the question as asked is always a fallback
        log.warning("condense: rules failed (%s); the question is answered as asked", exc)
        asked = " ".join(question.split())
        return Condensed(asked, asked, "unchanged", "rules failed")


# -- the model rewrite -------------------------------------------------------------------------
_REWRITE_SYSTEM = (
    "You rewrite the last question of a conversation so that it can be understood without "
    "the conversation. Replace pronouns and fill in what a short follow-up leaves out, using "
    "the earlier turns. If the last question already stands on its own, repeat it unchanged. "
    "Answer with the rewritten question only, on one line; never answer it."
)


def rewrite_prompt(
    question: str, history: Sequence[Turn], max_words: int = 60
) -> list[dict[str, str]]:
    """The messages that ask a model for the standalone question (LlamaIndex's condense
    prompt, shortened: earlier answers cut at ``max_words``)."""
    lines = []
    for turn in history:
        text = re.sub(r"\s*\[\d+\]", "", " ".join(turn.content.split()))
        if turn.role == "assistant":
            text = " ".join(text.split()[:max_words])
        if text:
            lines.append(f"{'User' if turn.role == 'user' else 'Assistant'}: {text}")
    user = (
        "Conversation:\n"
        + "\n".join(lines)
        + f"\n\nLast question: {question}\n\nStandalone question:"
    )
    return [{"role": "system", "content": _REWRITE_SYSTEM}, {"role": "user", "content": user}]


def _usable(text: str, asked: str, abstain_text: str) -> str | None:
    """The model's rewrite when it is one question of sensible length, else None."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(
        r"^(?:standalone question|question|rewritten question)\s*:\s*", "", line, flags=re.I
    )
    line = line.strip().strip('"“”').strip()
    if not line or abstain_text.lower()[:30] in line.lower():
        return None
    if len(line) > max(3 * len(asked), len(asked) + 200) or re.search(r"\[\d+\]", line):
        return None
    if len(line.split()) < 2:
        return None
    return line


class Condense:
    """The ``condense`` stage: ``state.question`` (and ``state.asked``) become the standalone
    question before anything reads them; ``state.standalone`` keeps it for the answer
    (``standalone_question``). A query without history passes untouched.

    ``condense.rewrite: model``: the chain's first generative backend rewrites the question
    (``rewrite_prompt``), within ``condense.timeout_seconds`` and ``condense.max_tokens``; a
    failure, a timeout, a spent budget or an unusable rewrite leaves the rules' result. Its
    call is counted in the answer's usage (``usage.backends``) and charged like any other."""

    name = "condense"

    def __init__(
        self,
        settings: Settings,
        chain: GeneratorChain | None = None,
        costs: CostController | None = None,
    ):
        self.settings = settings.condense
        self.tenant = settings.tenant
        self.abstain_text = settings.generation.abstain_text
        self.chain = chain
        self.costs = costs

    def warm_up(self) -> None:
        return None

    def _model(self) -> Generator | None:
        if self.settings.rewrite != "model" or self.chain is None:
            return None
        return next((g for g in self.chain.generators if g.uses_llm), None)

    def cheap(self, state: QueryState) -> bool:
        """Whether this query's condensing is cheap enough for an event loop (no model call):
        ``QueryPipeline.prepare`` runs the stages before the answer cache there."""
        return not (self.settings.enabled and state.query.history and self._model() is not None)

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        history = state.query.history
        if not self.settings.enabled or not history:
            return
        result = condense(state.question, history, self.settings.max_turns)
        model = self._model()
        if model is not None:
            result = self._rewrite(state, model, history, result)
        with state.tracer.span("condense.question", state) as span:
            span.set(
                condense_method=result.method,
                condense_reason=result.reason,
                condense_changed=result.changed,
                condense_history_turns=len(history),
            )
        state.condensed = result
        state.standalone = result.question
        state.question = state.asked = result.question
        yield from ()

    def _rewrite(
        self, state: QueryState, model: Generator, history: Sequence[Turn], rules: Condensed
    ) -> Condensed:
        from rag.generate import GenerationRequest
        from rag.generate.base import Usage, close_quietly
        from rag.generate.chain import attempt_usage
        from rag.query.pack import PackedContext

        tenant = state.query.tenant or self.tenant
        if self.costs is not None:
            reason = self.costs.skip_reason(tenant, model)
            if reason:
                return replace(rules, reason=f"{rules.reason}; model skipped: {reason}")
        assert self.chain is not None
        special = self.chain.special_tokens()
        safe = [Turn(t.role, neutralise_special_tokens(t.content, special)) for t in history]
        messages = rewrite_prompt(neutralise_special_tokens(rules.asked, special), safe)
        request = GenerationRequest(
            messages=messages,
            question=rules.asked,
            context=PackedContext([], "", 0, 0),
            max_tokens=self.settings.max_tokens,
            temperature=0.0,
            deadline=time.monotonic() + self.settings.timeout_seconds,
            extra={"stream": False, "purpose": "condense"},
        )
        pieces: list[str] = []
        usage: Usage | None = None
        outcome = "answered"
        error: str | None = None
        try:
            items = model.stream(request)
            try:
                for item in items:
                    if isinstance(item, Usage):
                        usage = item
                    else:
                        pieces.append(item)
                    request.check_deadline(model.name)
            finally:
                close_quietly(items)
        except Exception as exc:  # noqa: BLE001 - the rules' result stands
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        entry = attempt_usage(model, usage, request, pieces, outcome)
        state.extras.setdefault("condense_calls", []).append(entry)
        if self.costs is not None:
            self.costs.charge_calls([entry], tenant)
        if error is not None:
            log.info("condense: the model rewrite failed (%s); the rules' question stands", error)
            return replace(rules, reason=f"{rules.reason}; model failed")
        text = _usable("".join(pieces), rules.asked, self.abstain_text)
        if text is None:
            return replace(rules, reason=f"{rules.reason}; model rewrite unusable")
        return Condensed(text, rules.asked, "model", "model rewrite", rules.topic)
