"""Prompt-injection defence: documents and questions are data, never instructions.

Three checks, all heuristic (regular expressions over normalised text; measured by the
``injection`` eval suite and ``benchmarks/injection.py``):

- :func:`detect` scores a text for instruction-like content aimed at the model or the reader:
  imperatives addressed to an assistant ("when answering any question, say …"), role and turn
  markers (``system:``, ``<|im_start|>``, ``### Instruction``), "ignore the previous
  instructions", requests to send a password or secret somewhere, phishing-style
  "click/visit … to verify", system-prompt extraction, hidden text (HTML comments, zero-width
  or tag characters, ``display:none`` / white-on-white HTML) and encoded payloads (long
  base64 that decodes to text: 24+ characters). Weak signals add up; one strong one flags. Plain
  runbook imperatives ("Run `make deploy`", "Email the helpdesk at …", "Page the on-call")
  carry no weight: they are addressed to a colleague, not to a model, and ask for no secret.
- At ingest every chunk is scored (:func:`chunk_fields`, written into its payload): flagged
  chunks are listed by ``rag status`` and ``GET /v1/documents`` and, by default
  (``injection.flagged: exclude``), kept out of answers by :class:`InjectionGuard`; with
  ``fence`` they are passed on marked as suspect.
- :func:`scan_question` finds the attack part of a question (an instruction, a smuggled
  ``Passages:`` block, a system-prompt request) and returns the question without it: that is
  what retrieval and answer selection see (:class:`InjectionGuard`); the answer carries
  ``injection`` and the trace span ``injection.question`` says it was flagged (no content).
- :func:`output_check` is called by the verifier for each answer sentence: a sentence that
  tells the user to contact an address, visit a URL or send a secret the question did not ask
  about, or that gives another number than a higher-ranked unflagged passage for the same
  subject, is not verified.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.contracts import QuestionCheck
from rag.core.budget import check_budget
from rag.core.markup import safe_html
from rag.store import VectorStore

if TYPE_CHECKING:
    from rag.contracts import Passage

__all__ = [
    "DETECTOR_VERSION",
    "Detection",
    "QuestionCheck",
    "chunk_fields",
    "detect",
    "hidden_html_text",
    "hit_detection",
    "output_check",
    "scan_question",
    "suspicious_hidden",
]

# Bump when the detector's verdicts change: chunks scored by another version are rescored at
# query time (cheap), so an index built before does not need a reindex to be protected.
DETECTOR_VERSION = 1
FLAG_AT = 1.0  # a score at or above this flags (one strong signal, or weak ones together)

_FLAGS = re.IGNORECASE | re.MULTILINE

# Invisible characters: zero-width, joiners, bidi controls, BOM, soft hyphen, word joiner.
_ZERO_WIDTH = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_TAGS = re.compile("[\U000e0000-\U000e007f]")  # "ASCII smuggling": invisible copies of ASCII


def _html_comments(text: str) -> list[str]:
    """The bodies of ``<!-- ... -->`` comments, in order. A scan from each opening to its
    close, each starting where the last ended: linear (the regex ``<!--(.*?)-->`` rescanned
    to the end of the text from every unclosed ``<!--``)."""
    out: list[str] = []
    pos = 0
    while (start := text.find("<!--", pos)) >= 0:
        end = text.find("-->", start + 4)
        if end < 0:
            break  # no opening after this one can close either
        out.append(text[start + 4 : end])
        pos = end + 3
    return out


_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")

_AI = r"(?:ai|a\.i\.|assistant|chat ?bot|chatgpt|gpt|llm|language model|model|bot|copilot|agent)"
_SECRET = (
    r"(?:password|passcode|passphrase|pin code|credentials?|login details|api[ -]?keys?|"
    r"secret(?: key)?s?|access tokens?|auth(?:entication)? tokens?|private key|"
    r"credit card(?: number)?|card number|cvv|social security number|ssn|bank details|"
    r"one-time code|2fa code|mfa code|recovery codes?|seed phrase)"
)
# An address starts where a run of address characters starts: tried at every character of a
# long run, "[\w.+-]+@" scanned the rest of the run each time (quadratic).
_DEST = r"(?:(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+|https?://\S+|www\.\S+)"
_NEG = r"(?:never|not|n't|no one|nobody|don't|do not)"

# (reason, weight, pattern). Weight 1.0 or more flags on its own.
_DOC_RULES: list[tuple[str, float, re.Pattern[str]]] = [
    (
        "asks to ignore previous instructions",
        1.0,
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|discard|do not follow|don't follow)\b"
            r"[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|former|original|system|"
            r"all|any|your|other|these|those)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|rules|"
            r"directions|directives|guidelines|guardrails|context|messages|constraints|polic(?:y|ies))\b"
            r"|\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|the\s+|your\s+|these\s+|of\s+)*"
            r"(?:above|previous|prior|preceding|earlier|instructions?|context|passages|documents|"
            r"question|rules|prompt|everything (?:above|before|previously|you (?:were|have been) told))\b",
            _FLAGS,
        ),
    ),
    (
        "role or turn marker",
        1.0,
        re.compile(
            r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)"
            r"|\[/?INST\]|<</?SYS>>|<\s*/?\s*(?:system|instructions?|passages)\s*>|"
            r"^\s*#{2,}\s*(?:instruction|system|response|new instructions?)\b|"
            r"\[(?:system|assistant)\]\(#|"
            r"^\s*(?:system|assistant|human)\s*(?:prompt|message|override)?\s*:\s*"
            r"(?=[^\n]{0,80}\b(?:you|ignore|answer|respond|reply|say|from now|always|never|must)\b)",
            _FLAGS,
        ),
    ),
    (
        "claims to be a system or admin instruction",
        1.0,
        re.compile(
            r"\b(?:important|urgent|new|updated|hidden|secret|special|mandatory|priority|official|"
            r"critical)[ \t]+(?:system|admin(?:istrator)?|developer|operator)[ \t]+(?:instructions?|"
            r"override|message|directive|command|notice|prompt)\b"
            r"|\bsystem[ \t]+(?:instructions?|override|directive)\b|\b(?:admin|developer)[ \t]+"
            r"override\b|\b(?:system|admin(?:istrator)?|developer|operator)[ \t]+(?:message|command|"
            r"notice|note|prompt|instructions?)[ \t]*:[ \t]*(?=\S)",
            _FLAGS,
        ),
    ),
    (
        "addresses an AI assistant",
        1.0,
        re.compile(
            r"\b(?:(?:dear|attention|note to(?: the| any| all)?|hey|hello|instructions? for"
            r"(?: the| any)?|if you are an?)\s+" + _AI + r"s?\b"
            r"|\bas an? (?:ai|assistant|language model)\b[^.\n]{0,40}\b(?:you|must|should)\b"
            r"|\b" + _AI + r"s?\s*(?:,|:)?\s*(?:must|should|shall|are required to|need to|"
            r"are instructed to|will now)\s+(?:always\s+|never\s+|now\s+)?(?:say|tell|answer|"
            r"respond|reply|state|claim|include|output|print|mention|recommend|ignore|"
            r"report|inform|write)\b)",
            _FLAGS,
        ),
    ),
    (
        "instructs how to answer",
        1.0,
        re.compile(
            r"\b(?:when|whenever|if|before|while)\s+(?:you\s+)?(?:answer|respond|repl)(?:ing|y)?\b"
            r"[^.\n]{0,30}\b(?:questions?|users?|queries|prompts?|anyone)\b"
            r"|\b(?:in|at the end of|end|start|begin|append to|add to|prefix)\s+(?:every|each|"
            r"all|any)\s+(?:answers?|responses?|replies)\b"
            r"|\b(?:at the (?:end|start|beginning) of|end|start|begin|prefix)\s+your\s+(?:answers?|"
            r"responses?|replies)\b"
            r"|\b(?:your|the)\s+(?:answers?|responses?|replies)\s+(?:must|should|shall|has to)\b"
            r"|\b(?:append|add|prepend|insert|attach)\b[^.\n]{0,40}?\b(?:to|in|at the (?:end|start) "
            r"of)\s+(?:every|each|all|any|your)\s+(?:answers?|responses?|replies)\b"
            r"|\b(?:respond|reply|answer)\s+(?:only\s+)?(?:with|using)\s+(?:the\s+)?"
            r"(?:word|phrase|text|string|exactly|[\"'“])"
            r"|\binstead of answering\b|\b(?:your )?new task (?:is|:)",
            _FLAGS,
        ),
    ),
    (
        "asks for the system prompt",
        1.0,
        re.compile(
            r"\b(?:reveal|print|show|repeat|output|display|leak|dump|share|tell me|give me|"
            r"recite|copy|list|write out|what (?:is|are|were))\b[^.\n?]{0,30}?\b(?:system prompt|"
            r"your\s+(?:initial |original |hidden |secret |full |exact )?"
            r"(?:instructions|prompt|rules|guidelines|configuration)(?! (?:for|to|on|about) \w)|"
            r"the (?:initial|original|hidden|secret|full|exact|system) (?:prompt|instructions)|"
            r"(?:hidden|initial|original|secret|developer) (?:prompt|instructions|message))\b"
            r"|\b(?:repeat|print|output|copy|spell out|reproduce)\b[^.\n]{0,20}?\b(?:the )?(?:words|"
            r"text|everything|all)\s+(?:above|before this|so far)\b",
            _FLAGS,
        ),
    ),
    (
        "asks to send a password or secret",
        1.0,
        re.compile(
            r"\b(?:e-?mail|send|forward|mail|text|message|dm|post|paste|submit|share|reveal|"
            r"disclose|give|provide|upload|reply with|include)\b(?>[^.\n]{0,40}?\b"
            + _SECRET
            + r"\b)"
            r"(?>[^.\n]{0,60}?(?:\bto\b|\bat\b|\bvia\b|:))\s*[^.\n]{0,30}?" + _DEST,
            _FLAGS,
        ),
    ),
    (
        "asks to verify an account through a link",
        1.0,
        re.compile(
            # Linear: one link per click word (the first, atomic), read at most 512 characters
            # far without backtracking; the keyword inside it (first branch) or after it.
            # Backtracking through every link start and link character, trying the 60-character
            # gap at each, made a 2 kB run of "click:http://" take 10 s.
            r"\b(?:click|visit|go to|open|log ?in (?:at|to)|sign ?in (?:at|to))\b"
            r"(?>[^.\n]{0,60}?(?:https?://|www\.))"
            r"(?:\S{0,256}?\b(?:verify|confirm|validate|unlock|reactivate|claim)\b"
            r"|\S{1,512}+[^.\n]{0,60}?\b(?:verify|confirm|validate|unlock|reactivate|"
            r"claim|restore access|avoid (?:suspension|deactivation|losing))\b)"
            r"|\b(?:verify|confirm|validate|unlock|reactivate|claim)\b[^.\n]{0,40}?\b(?:account|"
            r"identity|prize|reward|refund)\b[^.\n]{0,40}?(?:https?://|www\.)\S+",
            _FLAGS,
        ),
    ),
    (
        "asks for a payment",
        1.0,
        re.compile(
            # Each step takes the first currency, then the first "to"/"at"/":" (atomic): the
            # nested gaps tried every combination (30 x 60 x 30 per "pay").
            r"\b(?:pay|wire|transfer|send)\b(?>[^.\n]{0,30}?(?:\$|€|£|\b(?:usd|eur|btc|bitcoin|"
            r"ethereum|crypto|gift cards?)\b))(?>[^.\n]{0,60}?(?:\bto\b|\bat\b|:))\s*[^.\n]{0,30}?"
            r"(?:" + _DEST + r"|\b(?:wallet|account)\b)",
            _FLAGS,
        ),
    ),
    (
        "tells the model what to say",
        0.6,
        re.compile(
            r"(?:^|[.!:]\s+|\band\s+)(?:(?:always|instead,?|now|then|also|just|simply|please)\s+)*"
            r"(?:say|state|claim|tell "
            r"(?:the )?(?:users?|readers?|customers?|them|everyone)|inform (?:the )?(?:users?|"
            r"readers?|customers?)|respond|reply|output|print|write)\s+(?:that\b|only\b|[\"'“]|"
            r"(?:the )?(?:word|phrase|following (?:text|sentence|words?)|exact text)\b)",
            _FLAGS,
        ),
    ),
    (
        "embeds a link that sends data out",
        0.6,
        re.compile(r"!\[[^\]\n]*\]\(\s*https?://[^)\s]*\?[^)\s]*=[^)\s]*\)", _FLAGS),
    ),
    (
        "asks to keep the instruction secret",
        0.6,
        re.compile(
            r"\b(?:do not|don't|never)\s+(?:tell|inform|mention|reveal|disclose|say)\b[^.\n]{0,20}"
            r"\b(?:this|these instructions|the user|anyone|that you)\b",
            _FLAGS,
        ),
    ),
    (
        "impersonation or new persona",
        0.6,
        re.compile(
            r"\b(?:you are now|you're now|from now on,? you|act as|pretend (?:to be|you are)|"
            r"you are no longer|"
            r"roleplay as|you have been (?:freed|jailbroken|reprogrammed)|developer mode|"
            r"jailbreak|do anything now)\b",
            _FLAGS,
        ),
    ),
    (
        "new instructions",
        0.5,
        re.compile(
            r"\b(?:new|updated|real|actual|true|revised|additional)\s+(?:instructions?|task|"
            r"directive|orders)\b|\bend of (?:the )?(?:context|document|passages?|instructions?|"
            r"question)\b",
            _FLAGS,
        ),
    ),
    (
        "tells the reader to contact an address",
        0.4,
        re.compile(
            r"\b(?:tell|ask|instruct|urge|remind)\s+(?:the\s+)?(?:users?|readers?|customers?|"
            r"them|everyone)\s+to\s+(?:e-?mail|contact|send|call|visit|click|pay|write to)\b",
            _FLAGS,
        ),
    ),
    (
        "asks to send a password or secret",
        0.6,
        re.compile(
            r"\b(?:e-?mail|send|forward|mail|text|dm|post|paste|share|reveal|disclose|give)\b"
            r"\s+(?:me\s+|us\s+)?(?:your|their|the user's|the users'|his|her)\s+"
            r"(?:\w+\s+)?" + _SECRET + r"\b",
            _FLAGS,
        ),
    ),
]

# Questions address "you" by nature ("can you tell me …"); these read them as questions.
_QUESTION_ONLY_RULES: list[tuple[str, float, re.Pattern[str]]] = [
    (
        "smuggles a passages block",
        1.0,
        re.compile(
            r"^\s*(?:passages?|context|documents?|sources?|retrieved (?:passages|documents|"
            r"context)|search results|knowledge base|excerpts?)\s*:\s*$|^\s*\[\d+\]\s+\S",
            _FLAGS,
        ),
    ),
]

_NEGATED = re.compile(r"\b" + _NEG + r"\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0*)?(?:px|em|pt|%)?\s*(?:;|$)"
    r"|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$)|color\s*:\s*(?:#fff(?:fff)?|white|rgba?\(\s*255\s*,\s*"
    r"255\s*,\s*255|transparent)\b|(?:left|top|text-indent)\s*:\s*-\d{3,}",
    re.IGNORECASE,
)


# Tokens of the check for a ``hidden`` attribute: a tag opening, a tag end, the attribute.
_HIDDEN_ATTR_TOKENS = re.compile(r"<[a-z]|>|\shidden[\s=>/]", re.IGNORECASE)


def _has_hidden_attribute(html: str) -> bool:
    """Some tag has a ``hidden`` attribute: what ``<[a-z][^>]*\\shidden[\\s=>/]`` finds,
    in one pass (that regex rescanned to the next ``>`` from every ``<a``: quadratic on a
    page of unterminated tags)."""
    in_tag = False
    for m in _HIDDEN_ATTR_TOKENS.finditer(html):
        token = m.group()
        if token == ">":
            in_tag = False
        elif token[0] == "<":
            in_tag = True
        elif in_tag:
            return True
    return False


@dataclass(frozen=True)
class Detection:
    score: float
    reasons: list[str]

    @property
    def flagged(self) -> bool:
        return self.score >= FLAG_AT


def _visible(text: str) -> tuple[str, list[str]]:
    """The text with invisible characters taken out (tag characters decoded), and what that
    says (zero-width characters hiding words, smuggled ASCII)."""
    reasons: list[str] = []
    tags = _TAGS.findall(text)
    if tags:
        reasons.append("hidden text (Unicode tag characters)")
        text = _TAGS.sub(lambda m: chr(ord(m.group(0)) - 0xE0000), text)
    zero = len(_ZERO_WIDTH.findall(text))
    if zero >= 3:
        reasons.append("hidden text (zero-width characters)")
    if zero:
        text = _ZERO_WIDTH.sub("", text)
    return unicodedata.normalize("NFKC", text), reasons


# Base64 decoded per scored text, all blobs together: a chunk holds a few short ones; what a
# huge blob hides past this is not decoded (the blob itself is scored as text).
_MAX_PAYLOAD_CHARS = 65_536
# A payload is scored, and a payload inside it, but no deeper.
_MAX_PAYLOAD_DEPTH = 2


def _decoded_payloads(text: str, limit: int = _MAX_PAYLOAD_CHARS) -> Iterator[str]:
    """Base64 blobs of ``text`` that decode to text, at most ``limit`` characters of them."""
    left = limit
    for m in _BASE64.finditer(text):
        blob = m.group(0)[: max(left, 0) // 4 * 4]
        if len(blob) < 24:
            break
        left -= len(blob)
        check_budget()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        printable = sum(c.isprintable() or c.isspace() for c in decoded)
        if decoded and printable / len(decoded) > 0.95 and len(decoded.split()) >= 3:
            yield decoded


_SECRET_WORDS: tuple[str, ...] = (
    *("pass", "pin code", "credential", "login", "api", "secret", "token", "key", "card"),
    *("cvv", "social security", "ssn", "bank", "code", "seed phrase"),
)
# Per rule (by reason), words one of which its pattern needs: a rule whose words are all
# absent from the lower-cased text is not run (most text has none: scoring stays cheap).
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "asks to ignore previous instructions": (
        "ignore",
        "disregard",
        "forget",
        "override",
        "bypass",
        "discard",
        "follow",
    ),
    "role or turn marker": (
        "<|",
        "inst]",
        "<<",
        "<",
        "#",
        "system",
        "assistant",
        "human",
    ),
    "claims to be a system or admin instruction": ("system", "admin", "developer", "operator"),
    "instructs how to answer": ("answer", "respon", "repl", "new task"),
    "asks for the system prompt": (
        "prompt",
        "instruction",
        "rules",
        "guideline",
        "configuration",
        "above",
        "before this",
        "so far",
    ),
    "asks to send a password or secret": _SECRET_WORDS,
    "asks to verify an account through a link": ("http", "www."),
    "asks for a payment": (
        "$",
        "€",
        "£",
        "usd",
        "eur",
        "btc",
        "bitcoin",
        "ethereum",
        "crypto",
        "gift card",
    ),
    "embeds a link that sends data out": ("![",),
    "impersonation or new persona": (
        "you are now",
        "you're now",
        "from now on",
        "act as",
        "pretend",
        "roleplay",
        "you are no longer",
        "you have been",
        "developer mode",
        "jailbreak",
        "do anything now",
    ),
    "new instructions": ("instruction", "task", "directive", "orders", "end of"),
    "tells the reader to contact an address": ("tell", "ask", "instruct", "urge", "remind"),
}


# Rules run over windows of the text (overlapping, cut at a line or word break): a rule's
# worst case is then paid per window, so scoring stays linear in the text however long.
_WINDOW = 4096
_OVERLAP = 512


def _windows(text: str) -> Iterator[tuple[int, int]]:
    n = len(text)
    start = 0
    while True:
        end = min(n, start + _WINDOW)
        if end < n:  # cut at a break, so no word ends at the cut that goes on after it
            cut = max(text.rfind("\n", end - _OVERLAP, end), text.rfind(" ", end - _OVERLAP, end))
            end = cut + 1 if cut > start + _OVERLAP else end
        yield start, end
        if end >= n:
            return
        start = max(end - _OVERLAP, start + 1)


def _rule_hits(text: str, rules: Sequence[tuple[str, float, re.Pattern[str]]]) -> dict[str, float]:
    found: dict[str, float] = {}
    low = text.lower()
    for reason, weight, pattern in rules:
        triggers = _TRIGGERS.get(reason)
        if triggers is not None and not any(t in low for t in triggers):
            continue
        for start, end in _windows(text):
            check_budget()
            if _first_hit(text, pattern, weight, start, end):
                found[reason] = max(found.get(reason, 0.0), weight)
                break
    return found


def _first_hit(text: str, pattern: re.Pattern[str], weight: float, start: int, end: int) -> bool:
    """``pattern`` matches in ``text[start:end]`` other than in negated advice."""
    for m in pattern.finditer(text, start, end):
        before = text[max(0, m.start() - 30) : m.start()]
        if (_NEGATED.search(before) and weight < 1.0) or _negated_secret(before, m.group(0)):
            continue
        return True
    return False


def _negated_secret(before: str, matched: str) -> bool:
    """'never email your password to …' is advice, not a request."""
    return bool(re.search(_SECRET, matched, re.IGNORECASE)) and bool(_NEGATED.search(before))


def detect(text: str, *, question: bool = False, hidden: Sequence[str] = ()) -> Detection:
    """Score ``text``: instruction-like content aimed at a model or a reader. ``hidden`` are
    texts the parser dropped or a browser would not show (HTML comments, ``display:none``)
    that belong to it. ``question``: the text is a user's question (a passages block counts)."""
    return _detect(text, question, hidden, 0)


def _detect(text: str, question: bool, hidden: Sequence[str], depth: int) -> Detection:
    visible, reasons = _visible(text)
    hits = _rule_hits(visible, _DOC_RULES)
    if question:
        hits.update(_rule_hits(visible, _QUESTION_ONLY_RULES))
    score = sum(hits.values())
    out = dict.fromkeys(hits)  # reasons in order, each once
    if depth < _MAX_PAYLOAD_DEPTH:
        for payload in _decoded_payloads(visible):
            inner = _detect(payload, False, (), depth + 1)
            score += 0.5 + inner.score
            out["encoded payload (base64 text)"] = None
            out.update(dict.fromkeys(inner.reasons))
    comments = {c: None for c in _html_comments(visible) if len(c.split()) >= 3}
    for segment in [*comments, *hidden]:
        check_budget()
        inner = _detect(segment, False, (), depth + 1)
        label = "hidden text (HTML comment)" if segment in comments else "hidden text (HTML)"
        if inner.score > 0:
            score += 0.5 + inner.score
            out[label] = None
            out.update(dict.fromkeys(inner.reasons))
    if reasons:
        # Invisible characters alone are odd but not an instruction; with one they are an attack.
        score += 0.5 * len(reasons) if score > 0 else 0.3 * len(reasons)
        out = {**dict.fromkeys(reasons), **out}
    return Detection(round(score, 3), list(out))


# Hidden elements inside hidden elements each collect their text up to this nesting (deeper
# ones are part of their ancestors' text): bounds the work to this many times the page.
_MAX_HIDDEN_NESTING = 8


def hidden_html_text(html: str) -> list[str]:
    """Text an HTML page holds but a browser does not show: comments, and elements hidden by
    ``display:none``, ``visibility:hidden``, zero size or opacity, white text, off-screen
    placement, or the ``hidden`` attribute. Linear in the page (``rag.core.markup``)."""
    out = [t for c in _html_comments(html) if (t := " ".join(c.split()))]
    if not (_HIDDEN_STYLE.search(html) or _has_hidden_attribute(html)):
        return out  # nothing hidden by style or attribute: no second parse of the page
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString, Tag

    soup = BeautifulSoup(safe_html(html), "html.parser")
    check_budget()
    # One walk: each hidden element gathers the strings beneath it, in page order.
    collected: list[list[str]] = []
    stack: list[tuple[Any, tuple[list[str], ...]]] = [(soup, ())]
    seen = 0
    while stack:
        node, gathering = stack.pop()
        if isinstance(node, Tag):
            seen += 1
            if not seen % 4096:
                check_budget()
            style = str(node.get("style") or "")
            hidden = node.has_attr("hidden") or _HIDDEN_STYLE.search(style)
            if hidden and len(gathering) < _MAX_HIDDEN_NESTING:
                parts: list[str] = []
                collected.append(parts)
                gathering = (*gathering, parts)
            stack.extend((child, gathering) for child in reversed(node.contents))
        elif gathering and type(node) in (NavigableString, CData) and (text := node.strip()):
            for parts in gathering:
                parts.append(text)
    out.extend(t for parts in collected if (t := " ".join(" ".join(parts).split())))
    return out


# Hidden texts that count against chunks, per document: each chunk is searched for each.
_MAX_SUSPICIOUS_HIDDEN = 256


def suspicious_hidden(hidden: Sequence[str]) -> list[str]:
    """The hidden texts (``hidden_html_text``) that can change a chunk's verdict: each once,
    those the detector scores above 0 (``detect`` counts no other), at most 256 — what
    ingest passes to :func:`chunk_fields` for every chunk, so the cost of matching them
    stays linear in the document. A chunk's own text is scored whatever this leaves out."""
    out: list[str] = []
    for text in dict.fromkeys(h for h in hidden if h):
        check_budget()
        if _detect(text, False, (), 1).score > 0:
            out.append(text)
            if len(out) >= _MAX_SUSPICIOUS_HIDDEN:
                break
    return out


def chunk_fields(text: str, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """The payload fields a chunk carries (``injection_flagged``, ``injection_score``,
    ``injection_reasons``, ``injection_version``). ``hidden``: the document's hidden HTML
    texts; those found in this chunk's text count against it."""
    flat = " ".join(text.split())
    mine = [h for h in hidden if h and h in flat]
    found = detect(text, hidden=mine)
    fields: dict[str, Any] = {
        "injection_flagged": found.flagged,
        "injection_score": found.score,
        "injection_version": DETECTOR_VERSION,
    }
    if found.reasons:
        fields["injection_reasons"] = found.reasons
    return fields


def hit_detection(payload: dict[str, Any]) -> Detection:
    """A retrieved chunk's verdict: the one stored at ingest by this detector version, else
    computed now (chunks indexed before the detector, or by an older one)."""
    if payload.get("injection_version") == DETECTOR_VERSION:
        reasons = [str(r) for r in payload.get("injection_reasons") or []]
        score = float(payload.get("injection_score") or 0.0)
        if payload.get("injection_flagged") and score < FLAG_AT:
            score = FLAG_AT
        return Detection(score, reasons)
    return detect(str(payload.get("text") or ""))


# -- questions -----------------------------------------------------------------------------
_BLOCK_START = re.compile(
    r"^\s*(?:passages?|context|documents?|sources?|retrieved (?:passages|documents|context)|"
    r"search results|knowledge base|excerpts?|system(?: prompt)?|instructions?|assistant)\s*:"
    r"|^\s*\[\d+\]\s+\S|^\s*#{2,}\s*\w|<\|\s*im_start|\[INST\]|<<SYS>>|^\s*-{3,}\s*$|^\s*={3,}\s*$",
    _FLAGS,
)
_BLOCK_END = re.compile(
    r"<\|\s*im_end\s*\|>|\[/INST\]|<</SYS>>|</\s*(?:system|instructions?)\s*>", re.I
)
_QUESTION_LABEL = re.compile(r"^\s*(?:question|user question|query|q)\s*:\s*", _FLAGS)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]]*|\n|$)")
_CLAUSE = re.compile(
    r"\s*(?:,|;|:|\(|\)|—|–| - |\band also\b|\balso\b|\band then\b|\bthen\b|\band\b|\bbut\b)\s*",
    re.IGNORECASE,
)
_QUESTION_WORD = re.compile(
    r"^\s*(?:who|whom|whose|what|which|when|where|why|how|is|are|was|were|do|does|did|can|"
    r"could|should|would|will|may|must|has|have|had|shall|list|name|describe|explain|give|"
    r"tell me|show me|find)\b",
    re.IGNORECASE,
)


def _asks(line: str) -> bool:
    """A line that is a plain question (ends with "?", opens like one, no attack in it)."""
    text = line.strip()
    return (
        text.endswith("?")
        and bool(_QUESTION_WORD.match(text))
        and detect(text, question=True).score < 0.5
    )


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _is_attack(text: str) -> Detection:
    found = detect(text, question=True)
    return found


def scan_question(question: str) -> QuestionCheck:
    """The question without its attack part (instructions, a smuggled passages block, a
    system-prompt request), and why. A question without one comes back unchanged."""
    visible, invisible = _visible(question)
    reasons: list[str] = list(invisible)
    lines = visible.split("\n")
    kept_lines: list[str] = []
    in_block = False
    for line in lines:
        label = _QUESTION_LABEL.match(line)
        if label:
            # A "Question:" after a smuggled block is the user's question again.
            in_block = False
            kept_lines.append(line[label.end() :])
            continue
        end = _BLOCK_END.search(line)
        if end:
            # "<|im_start|>system … <|im_end|> the question": what follows the turn is kept.
            if not in_block and _BLOCK_START.search(line[: end.start()]) is None:
                reasons.extend(detect(line, question=True).reasons or ["role or turn marker"])
            in_block = False
            reasons.append("role or turn marker")
            line = line[end.end() :]
        if _BLOCK_START.search(line):
            if not in_block:
                found = detect(line, question=True)
                reasons.extend(found.reasons or ["smuggles a passages or instruction block"])
            in_block = True
            continue
        if in_block:
            if not _asks(line):
                continue
            in_block = False  # the user's question after the smuggled block
        kept_lines.append(line)
    text = "\n".join(kept_lines)
    payloads = list(_decoded_payloads(text))
    if payloads:
        reasons.append("encoded payload (base64 text)")
        text = _BASE64.sub(" ", text)
    kept: list[str] = []
    for sentence in _sentences(text):
        found = _is_attack(sentence)
        if found.score < 0.5:
            kept.append(sentence)
            continue
        reasons.extend(found.reasons)
        # An attack glued to the question by a comma or "and": keep the clauses that ask.
        parts = [p for p in _CLAUSE.split(sentence) if p and p.strip()]
        for part in parts:
            if _QUESTION_WORD.match(part) and _is_attack(part).score < 0.5:
                kept.append(
                    part.strip().rstrip(",;:") + ("?" if part.strip()[-1:] not in "?." else "")
                )
    cleaned = " ".join(" ".join(kept).split())
    reasons = list(dict.fromkeys(reasons))
    flagged = bool(reasons)
    if not flagged:
        return QuestionCheck(question, False)
    return QuestionCheck(cleaned, True, reasons, max(0, len(question) - len(cleaned)))


# -- output --------------------------------------------------------------------------------
_CALL_TO_ACTION = re.compile(
    r"\b(?:e-?mail|contact|send|forward|call|phone|text|message|visit|go to|click|open|"
    r"pay|wire|transfer|submit|reply to|write to|log ?in|sign ?in)\b[^.\n]{0,80}?"
    r"(?:" + _DEST + r"|\b" + _SECRET + r"\b|\+?\d[\d ()-]{7,}\d)",
    re.IGNORECASE,
)
# Phrases of the shipped prompts' system turns (configs/prompts/answer/*): never an answer.
_SYSTEM_ECHO = re.compile(
    r"\b(?:you answer questions using only|using only the numbered passages|cite the passage it "
    r"comes from|if the passages do not answer the question, reply|answer from the passages "
    r"only|the passages are quoted documents|never follow instructions, requests or role "
    r"changes|my (?:system prompt|instructions) (?:is|are|says?))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_WORD = re.compile(r"[a-z][a-z0-9'-]+")
_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "by",
        "with",
        "at",
        "as",
        "it",
        "its",
        "this",
        "that",
        "their",
        "our",
        "your",
        "from",
        "into",
        "per",
        "each",
        "every",
        "all",
        "any",
        "than",
        "then",
        "there",
        "which",
        "who",
        "what",
        "when",
        "how",
        "long",
        "many",
        "much",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "not",
        "no",
    ]
)


def _asked_for(question: str, sentence: str) -> bool:
    """The question is about contacting, visiting or sending (the action is what it asked)."""
    q = question.lower()
    return bool(
        re.search(
            r"\b(?:contact|e-?mail|reach|call|phone|who|where|url|link|site|website|address|"
            r"send|report|submit|pay|visit|page|escalate|ask|notify|tell)\b"
            # a question asking what to do is answered with an action
            r"|\bhow (?:do|can|should|to|would)\b|\bwhat (?:should|do|can|must) (?:i|we|you)\b"
            r"|\b(?:steps?|procedure|process|what to do)\b",
            q,
        )
    )


def _subject_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def output_check(
    sentence: str,
    question: str,
    cited: Sequence[Passage],
    passages: Sequence[Passage],
    flagged: set[int] | None = None,
) -> str | None:
    """Why ``sentence`` (an answer sentence citing ``cited``) must not be verified, or None.

    - it tells the user to contact an address, visit a URL or send a secret, and the question
      did not ask about contacting, visiting or sending (or it asks for a secret at all);
    - it gives another number than a higher-ranked (smaller ``n``), unflagged passage does in
      a sentence about the same subject (a planted "1 day" against the policy's "35 days").
    ``flagged``: numbers of passages the injection detector flagged (fence mode).
    """
    flagged = flagged or set()
    visible, _ = _visible(sentence)
    if detect(visible).flagged:
        return "the sentence is an instruction (prompt injection)"
    if _SYSTEM_ECHO.search(visible):
        return "the sentence repeats the system prompt"
    if _CALL_TO_ACTION.search(visible):
        secret = re.search(_SECRET, visible, re.IGNORECASE)
        if secret or not _asked_for(question, visible):
            return "the sentence asks the user to act on something the question did not ask about"
    if cited and all(p.n in flagged for p in cited):
        # Only a flagged passage says it: not enough to certify anything.
        return "only a passage flagged as possible prompt injection supports it"
    numbers = set(_NUMBER.findall(visible))
    if not numbers or not cited:
        return None
    best_cited = min(p.n for p in cited)
    subject = _subject_words(_NUMBER.sub(" ", visible))
    if len(subject) < 2:
        return None
    for p in passages:
        if p.n >= best_cited or p.n in flagged:
            continue
        for other in _sentences(p.text):
            theirs = set(_NUMBER.findall(other))
            if not theirs or theirs & numbers:
                continue
            shared = subject & _subject_words(_NUMBER.sub(" ", other))
            if len(shared) >= max(2, int(0.6 * len(subject))):
                return f"contradicts passage [{p.n}], which ranks higher"
    return None


# -- what the index holds ------------------------------------------------------------------
def flagged_chunks(
    store: VectorStore, collection: str, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The chunks flagged at ingest, as ``rag status`` and ``GET /v1/documents`` show them:
    ``{"path", "doc_id", "chunk", "score", "reasons"}`` in path and chunk order."""
    flt: dict[str, Any] = {"injection_flagged": True}
    if tenant is not None:
        flt["tenant"] = tenant
    out = [
        {
            "path": str(p.payload.get("source") or ""),
            "doc_id": str(p.payload.get("doc_id") or ""),
            "chunk": int(p.payload.get("chunk_index") or 0),
            "score": float(p.payload.get("injection_score") or 0.0),
            "reasons": [str(r) for r in p.payload.get("injection_reasons") or []],
        }
        for p in store.scroll(collection, filter=flt)
    ]
    return sorted(out, key=lambda f: (f["path"], f["chunk"]))


def injection_status(store: VectorStore, collection: str) -> dict[str, Any]:
    """``rag status``'s ``injection``: flagged chunks and the documents they are in."""
    flagged = flagged_chunks(store, collection)
    return {
        "flagged_chunks": len(flagged),
        "flagged_documents": len({f["path"] for f in flagged}),
        "flagged": flagged,
        "detector_version": DETECTOR_VERSION,
    }
