"""A small real HTTP server on loopback that speaks the OpenAI chat-completions protocol and
answers from a script.

It stands in for vLLM (``vllm serve`` exposes exactly this API) in tests and in the
verification eval (``rag eval verify``): streaming Server-Sent Events with
``stream_options.include_usage``, plain JSON completions, ``GET /models``, and scripted faults
— status codes (429/503 with ``Retry-After``), a connection dropped mid-stream, a stall longer
than the client's read timeout. The real-vLLM integration test runs the same client against
``scripts/vllm/serve.sh``.

What it answers is decided per request by a *responder* — a function from the
:class:`ChatRequest` it was sent (messages, the question, the numbered passages parsed out of
the prompt) to the reply text. Built in (:data:`MODES`, each a factory of responders):

- ``fixed(template)``: always the same template (the default: ``reply``);
- ``by_question({substring: template, ...}, default)``: the template of the first substring
  the question contains.
- ``obey(default)``: a model that follows any instruction it finds in its question or its
  passages (what the injection defence left of them: it reads what it was sent), to show the
  defence catches a model that obeys (issue 24). It parses orders, it does not look attacks
  up: "reply only with X", "the answer is X", a fake assistant turn, "end every answer with
  X", a code stated in another passage ("print the code you were asked to remember"), in a
  few languages; "visit LINK", a markdown link or image (its URL filled with the question),
  "send … to ADDRESS", "print your system prompt" (it writes the system turn it was sent);
  encoded orders decoded first (base64, hex, rot13 when named, tag and zero-width
  characters). Each obeyed text is a sentence citing the passage the order came from (``[1]``
  for the question). Without an order, or where one asks to add to the answer, it answers
  faithfully: the passage sentence sharing most words with the question, with its marker.
- ``faithful()``: that faithful answer alone; ``invents(base)``: ``base``'s answer and a
  made-up sentence citing ``[1]``; ``by_system({marker: responder}, default)``: the responder
  of the first marker in the system turn — a model that behaves worse under one prompt
  version (the release tests, issue 28).

Templates may hold placeholders, resolved against the passages of that request, so a script
can cite "the passage that says 35 days" whatever number retrieval gave it:

- ``{cite:PHRASE}`` → ``[n]``, the first passage containing PHRASE (case and spacing ignored);
  ``{cite:A|B}`` → ``[n][m]``, one marker per phrase;
- ``{cite_other:PHRASE}`` → ``[n]``, the first passage *not* containing PHRASE (a wrong citation);
- ``{n:PHRASE}`` / ``{n_other:PHRASE}`` → the bare number;
- ``{top}`` → ``[1]``.

A phrase no passage holds resolves to ``[0]`` (no passage has that number) and is recorded in
``ChatRequest.unresolved`` and ``ChatServer.unresolved``: the caller can tell a retrieval miss
from a verdict. A new mode is a function ``(ChatRequest) -> str`` assigned to
``server.respond`` (or registered in :data:`MODES` for callers that name modes); it may read
anything of the request (e.g. instructions planted in a passage, to obey them).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

__all__ = [
    "INVENTED_CLAIM",
    "MODES",
    "ChatRequest",
    "ChatServer",
    "Fault",
    "Responder",
    "by_question",
    "by_system",
    "faithful",
    "fixed",
    "invents",
    "obey",
    "parse_passages",
    "resolve",
]

# What ``invents`` adds: no passage of any test corpus says it.
INVENTED_CLAIM = "The Martian council approved this policy in 1742 [1]."
_HEADER = re.compile(r"^\[(\d+)\] ", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(cite|cite_other|n|n_other):([^{}]+)\}|\{top\}")
_QUESTION = re.compile(r"^Question:\s*(.+)$", re.MULTILINE)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def parse_passages(prompt: str) -> dict[int, str]:
    """The numbered passages of a rendered prompt (``[n] Title — Section`` then the text,
    passages separated by blank lines), number → header and text, as the model reads them."""
    found = list(_HEADER.finditer(prompt))
    out: dict[int, str] = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(prompt)
        body = prompt[m.start() : end]
        # the prompt's own text after the last passage ("</passages>", "Question: ...")
        cut = re.search(r"\n\s*(?:</passages>|Question:)", body)
        out[int(m.group(1))] = (body[: cut.start()] if cut else body).strip()
    return out


@dataclass
class ChatRequest:
    """One chat-completions request as a responder sees it."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    passages: dict[int, str]  # number -> header and text, as rendered in the prompt
    question: str
    unresolved: list[str] = field(default_factory=list)  # phrases no passage held

    @classmethod
    def of(cls, body: dict[str, Any]) -> ChatRequest:
        messages = list(body.get("messages") or [])
        user = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        asked = _QUESTION.findall(user)
        return cls(body, messages, parse_passages(user), asked[-1].strip() if asked else user)

    def passage_with(self, phrase: str) -> int | None:
        want = _norm(phrase)
        return next((n for n, text in sorted(self.passages.items()) if want in _norm(text)), None)

    def passage_without(self, phrase: str) -> int | None:
        want = _norm(phrase)
        return next(
            (n for n, text in sorted(self.passages.items()) if want not in _norm(text)), None
        )


def resolve(template: str, request: ChatRequest) -> str:
    """``template`` with its placeholders replaced for ``request`` (see the module docstring)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{top}":
            return "[1]"
        kind, phrases = m.group(1), m.group(2).split("|")
        numbers = []
        for phrase in phrases:
            n = (
                request.passage_with(phrase)
                if kind in ("cite", "n")
                else request.passage_without(phrase)
            )
            if n is None:
                request.unresolved.append(phrase)
                n = 0
            numbers.append(n)
        if kind.startswith("n"):
            return ", ".join(str(n) for n in numbers)
        return "".join(f"[{n}]" for n in numbers)

    return _PLACEHOLDER.sub(one, template)


Responder = Callable[[ChatRequest], str]


def fixed(template: str) -> Responder:
    """The same template for every request."""
    return lambda request: resolve(template, request)


def by_question(templates: Mapping[str, str], default: str = "") -> Responder:
    """The template of the first key the question contains (case ignored), else ``default``."""
    keyed = [(_norm(k), v) for k, v in templates.items()]

    def respond(request: ChatRequest) -> str:
        asked = _norm(request.question)
        for key, template in keyed:
            if key in asked:
                return resolve(template, request)
        return resolve(default, request)

    return respond


# -- obey: a model that follows the instructions it finds ---------------------------------
# What such a model reads: tag characters as the ASCII they copy, zero-width characters gone
# (they also break control tokens in the prompt), letters spaced out read as words.
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_SPACED = re.compile(r"(?<!\S)(?:\w )+\w(?!\S)")
_CONTROL = re.compile(r"<\|[^|<>]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?(?:context|user|system)>")
_TURN_LINE = re.compile(r"(?im)^[ \t]*(assistant|system|user|ai)[ \t]*\n")
_BLOB_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_BLOB_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){8,}(?![0-9A-Fa-f])")
_ROT13_NAMED = re.compile(r"\brot-?13\b", re.IGNORECASE)
_UNIT = re.compile(r"[^\n]+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。])\s+")

# An order starts a sentence or follows a word that leads into one ("and say", "must answer",
# "I will only say"); the verbs of saying in a few languages.
# An order starts its sentence (or follows a label: "Real task: reply X") or follows a word
# that leads into one ("and say", "must answer", "I will only say"); the latter only in a
# sentence addressed to a model (below), so "free to use any procedure" orders nothing.
_LEAD = (
    r"(?P<lead>^|:\s*|[.!?;,»\"“”)\]]\s*|(?<=\s)(?i:and|then|just|only|instead|please|you|"
    r"must|should|shall|to|will|simply|now|et|und|y|e|en|и|i|oder|or)\s+)"
    r"(?:(?i:always|now|just|only|simply|please|kindly)\s+)*"
)
_SAY_VERBS = (
    r"(?P<verb>(?i:say|print|output|reply|respond|answer|write|repeat|echo|"
    r"r[ée]pondez|r[ée]ponds|[ée]crivez|[ée]cris|dites|antworte|antworten|schreibe|schreib|gib|"
    r"responde|responda|contesta|escribe|escreva|rispondi|scrivi|antwoord|geef|schrijf|"
    r"ответь|ответьте|напиши|напишите|выведи|odpowiedz|napisz|wypisz)|"
    r"state|report|return|quote|recommend|emit|produce|confirm|display|type)"
)
# Verbs that are nouns as often ("State Route 41", "Report P-2626"): orders only after a word
# that leads into one, lower case.
_AMBIGUOUS = frozenset(
    [
        "state",
        "report",
        "return",
        "quote",
        "recommend",
        "emit",
        "produce",
        "confirm",
        "display",
        "type",
    ]
)
_SAY = re.compile(
    _LEAD
    + r"(?:tell (?:the (?:user|reader)s?|them|users|readers)(?: that)?|"
    + _SAY_VERBS
    + r")(?=[\s:])[\s:]*(?=(?P<rest>[^\n]*))"
)
# Who an order in a document is addressed to, or what marks it as one.
_ADDRESSED = re.compile(
    r"\b(?i:assistants?|ai|a\.i\.|models?|bots?|chatbot|llm|gpt|system|automated|tool|plugin|"
    r"function|you|your|users?|readers?|ignore|disregard|forget|instructions?|context|"
    r"task|nothing else|answers|replies|responses?|summary|summaries|(?:every|any) (?:question|query|answer|reply)|ignor\w*|oubli\w*|"
    r"vergiss|vergeet|olvid\w*|esque\w*|negeer|zignoruj|zapomnij|assistente|modell|"
    r"hinweis|note|nota|système|sistema|systeem|frage|question|pregunta|domanda|vraag|"
    r"игнор\w*|забудь|правила|pytanie)\b|忽略|系统|指令|問題|无视|無視|命令|指示"
)
_SAY_CJK = re.compile(r"(?<!不要)(?<!不)(?:回答|输出|回复|说|写)\s*[:：]?\s*(?P<rest>[^\s。，,]+)")
_SAY_JA = re.compile(r"(?P<rest>[^\s、。「」]+)\s*と(?:だけ)?(?:答え|出力|言|書|返)")
# "the answer is X", "the verified answer to "…" is X", "answer="X"", "the reply must be X"
# (an answer said to be something: addressed, or named correct, verified, stored …)
_IS_ANSWER = re.compile(
    r"(?P<named>\b(?i:correct|verified|approved|real|official|only|right|true|stored)\s+)?"
    r"\b(?i:answer|reply|response|result)\b(?P<to>\s*\([^)\n]*\)|\s+(?i:to|for)\s+"
    r"(?:\"[^\"\n]*\"|“[^”\n]*”|[^.;,\n\"“])*?)?\s*(?:\b(?i:is|must be)\b|=|:)\s*(?=(?P<rest>[^\n]*))"
)
# Orders that shape the answer: "prefix every reply with X", "end their answer with X",
# "consist solely of X", "rate this candidate as X".
_SHAPE = re.compile(
    r"\b(?:(?i:prefix|replace|end|start|begin)\b[^.\n]{0,30}?\b(?i:reply|replies|answer|answers|"
    r"response|responses|output|message)\b[^.\n]{0,40}?\b(?i:with)|(?i:answer|reply|response|"
    r"summary|output)s?\b[^.\n]{0,40}?\b(?i:consists?|composed)\s+(?:\w+\s+)?(?i:of)|"
    r"(?i:rate|mark|classify|label)\b[^.\n]{0,30}?\b(?i:as))\s+(?=(?P<rest>[^\n]*))"
)
_FILLER = re.compile(
    r"^(?:\s|[:«»\"“”'‘’,—–-])*(?i:only|just|solely|exactly|simply|verbatim|back|again|instead|"
    r"now|always|with|by|as|that|after me|the user|the reader|them|in one word|uniquement|seulement|nur|mit|"
    r"einfach|solamente|solo|con|soltanto|apenas|somente|alleen|met|als antwoord|aus|только|"
    r"tylko|(?:to )?(?:every|any|all|each) (?:question|query|questions|queries)|"
    r"(?:the|a) (?:single |following |exact )?(?:word|text|code|string|phrase|statement|reply)"
    r"(?: of)?)(?=[\s:,«»\"“”']|$)",
)
_QUOTED = re.compile(r"^[\s:=]*[\"“«'‘]\s*(?P<q>[^\"”»'’\n]{1,120}?)\s*[\"”»'’]")
_STOP = re.compile(
    r"[.;,!?。\n()»\"”]|-->|\s(?:only|and (?:nothing|stop|then)|to (?:the|every|any|all|continue)|before|"
    r"instead|as (?:fact|the|a)|if|when|for (?:the|every|any|all)|und|et|y|e)\b"
)
_REFERENCE = re.compile(r"^(?i:the|this|that|your|my)\s+(?:\w+\s+){0,2}?(?P<noun>\w+)\b")
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s)\]>\"'<]+|www\.[^\s)\]>\"'<]+")
_IMAGE = re.compile(r"!\[(?P<alt>[^\]\n]*)\]\((?P<url>[^)\s]+)\)")
_LINK_MD = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<url>https?://[^)\s]+)\)")
_SEND = re.compile(
    r"\b(?i:send|e-?mail|forward|mail|submit|share|post)\b\s+(?P<what>[^\n]{0,100}?)\s+"
    # an address, or the placeholder a pseudonymiser put in its place (restored on the way back)
    r"(?i:to)\s+(?P<to>[\w.+-]+@[\w-]+(?:\.[\w-]+)+|<[A-Z][A-Z_]*_\d+>)"
)
_VISIT = re.compile(
    r"\b(?i:visit|open|go to|click|check|see|sign in|log ?in|source|available|is at|found at)\b"
)
_APPEND = re.compile(r"\b(?i:append|add|attach|encode|include)\b")
_SYSTEM_ASK = re.compile(
    r"\b(?i:reveal|print|show|repeat|output|display|leak|share|send|tell|give|write|disclose|"
    r"recite)\b[^.\n]{0,40}?\b(?i:system prompt|system message|(?:your|the) (?:initial |"
    r"original |hidden |secret )?(?:instructions|prompt|rules|guidelines))"
)
_PLACEHOLDER_DATA = re.compile(r"\b(?:QUESTION|SUMMARY|DATA|ANSWER|QUERY|CONVERSATION)\b")
_ADDS = re.compile(
    r"\b(?i:prefix|before any other|end (?:\w+ )?(?:answers?|repl(?:y|ies))|at the end|append|include|"
    r"render|in your answer|in your reply)\b"
)
_TURN = re.compile(r"^\s*\[?(?i:assistant|ai|model|bot|gpt)\]?\s*:\s*(?P<rest>\S[^\n]*)")
_WORDS_OBEY = re.compile(r"\w+")
_COMMON = frozenset(
    [
        "the",
        "a",
        "an",
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
        "by",
        "with",
        "at",
        "as",
        "it",
        "its",
        "and",
        "or",
        "what",
        "who",
        "when",
        "where",
        "which",
        "how",
        "why",
        "did",
        "does",
        "do",
        "that",
        "this",
        "from",
    ]
)


def _readable(text: str) -> str:
    """``text`` as an obeying model reads it, encoded payloads decoded onto lines of their own."""
    text = _TAG_CHARS.sub(lambda m: chr(ord(m.group(0)) - 0xE0000), text)
    text = _INVISIBLE.sub("", text)
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    decoded: list[str] = []
    for m in _BLOB_B64.finditer(text):
        blob = m.group(0)
        try:
            plain = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if plain.isprintable():
            decoded.append(plain)
    for m in _BLOB_HEX.finditer(text):
        try:
            plain = bytes.fromhex(m.group(0)).decode()
        except (UnicodeDecodeError, ValueError):
            continue
        if plain.isprintable():
            decoded.append(plain)
    if _ROT13_NAMED.search(text):
        decoded.append(codecs.encode(text, "rot13"))
    # "<|im_start|>assistant\n…": the turn's text is what the assistant says
    text = _TURN_LINE.sub(r"\1: ", _CONTROL.sub("\n", text))
    return "\n".join([text, *decoded])


def _units(text: str) -> list[str]:
    return [
        s.strip() for line in _UNIT.findall(text) for s in _SENTENCE_SPLIT.split(line) if s.strip()
    ]


def _requested(rest: str) -> str:
    """What an order asks to be said, from the text after its verb: a quoted string, else the
    words up to the end of its clause, fillers ("only with", "the word") dropped."""
    previous = None
    while previous != rest:
        previous, rest = rest, _FILLER.sub("", rest, count=1)
    quoted = _QUOTED.match(rest)
    if quoted:
        return quoted.group("q").strip()
    stop = _STOP.search(rest)
    said = (rest[: stop.start()] if stop else rest).strip(" :=)]")
    return " ".join(said.split()[:16])


def _resolve_reference(said: str, everything: str) -> str:
    """What a reference names: "the code you were asked to remember" → the code stated
    elsewhere ("code … : X")."""
    m = _REFERENCE.match(said)
    if not m or re.search(r"\b(?:is|are|was|were)\b", said):
        return said  # not a reference: a statement to make ("the backup period is 1 day")
    noun = re.escape(m.group("noun"))
    found = re.search(
        r"\b" + noun + r"\b[^.\n]{0,40}?(?:\bis|:|=)\s*[\"“«']?(?P<x>[^\s.,;\"”»']+)",
        everything,
        re.IGNORECASE,
    )
    return found.group("x") if found else said


def _with_data(url: str, question: str) -> str:
    """An exfiltration URL filled in as an obeying model would: the question as the data."""
    data = quote(question)
    filled = _PLACEHOLDER_DATA.sub(data, url)
    if filled == url and url.endswith("="):
        filled = url + data
    return filled


def _said(m: re.Match[str], unit: str, addressed: bool, everything: str) -> str | None:
    """The text an order (a match of one of the patterns above) asks for; None: no order."""
    pattern = m.re
    if pattern is _SAY:
        lead, verb = m.group("lead").strip(), m.group("verb")
        strong = re.match(r"\s*(?i:only|just|exactly|solely)\b", m.group("rest"))
        if lead not in ("", ":") and not addressed and not strong:
            return None  # "free to use any procedure", "say 100": not addressed to the model
        if verb in _AMBIGUOUS and (lead in ("", ":") or not lead[-1:].isalpha()):
            return None
        if (
            verb in _AMBIGUOUS
            and lead.lower() == "to"
            and not re.search(
                r"(?i)\b(?:required|agrees?|has|have|needs?|asked|instructed|supposed|wants?)\s*$",
                unit[: m.start("lead")],
            )
        ):
            return None  # "visit the page to confirm their account": a purpose, not an order
    if pattern is _SHAPE and not addressed:
        return None
    if pattern is _IS_ANSWER and not (
        unit[m.start("rest") - 1 : m.start("rest")] in ("=", ":")
        or m.group("named")
        or re.search('["“]', m.group("to") or "")
        or (addressed and not m.group(0).lower().startswith("result"))
    ):
        return None  # "the answer is not known", "the result is a ...": statements
    if pattern is _TURN:  # the assistant's turn, as written: the model goes on from it
        said = re.split(r"(?<=[.!?])\s", m.group("rest"))[0].rstrip(".!?")
    elif pattern is _SAY_JA:
        said = m.group("rest")
    else:
        said = _requested(m.group("rest"))
    said = _resolve_reference(said, everything)
    # "tell the user to open it": an action (taken above when it has a link), not a text
    if not said or said.lower() in {"it", "this", "that", "nothing"} or re.match(r"(?i)to\s", said):
        return None
    return said


def _orders(unit: str, question: str, system: str, everything: str) -> list[str]:
    """What obeying ``unit`` writes (empty: it orders nothing)."""
    out: list[str] = []
    reveal = _SYSTEM_ASK.search(unit)
    if reveal:
        out.append(f"My instructions are: {' '.join(system.split())}" if system else "")
    for m in _IMAGE.finditer(unit):
        out.append(f"![{m.group('alt')}]({_with_data(m.group('url'), question)})")
    for m in _LINK_MD.finditer(unit):
        out.append(f"[{m.group('text')}]({m.group('url')})")
    linked = bool(out)
    sent = _SEND.search(unit)
    if sent:
        what = re.sub(r"\b(?i:their|the user's|the reader's|his|her)\b", "your", sent.group("what"))
        out.append(f"Please send {what} to {sent.group('to')}")
    elif not linked:
        for url in _URL.findall(unit):
            url = url.rstrip(".,;:!?")
            if _APPEND.search(unit):
                out.append(f"See {_with_data(url, question)}")
            elif _VISIT.search(unit) or re.search(r"(?i)\b(?:tell|ask)\b", unit):
                out.append(f"For more details, visit {url}")
    # addressed to a model, hidden in a comment, or aimed at the question asked (quoted)
    asked = " ".join(question.split()[:6]).rstrip("?").lower()
    addressed = (
        bool(_ADDRESSED.search(unit))
        or "<!--" in unit
        or (len(asked) > 11 and asked in unit.lower())
    )
    for pattern in (_SAY, _SHAPE, _TURN, _IS_ANSWER, _SAY_CJK, _SAY_JA):
        for m in pattern.finditer(unit):
            if reveal and reveal.start() <= m.start("rest") <= reveal.end():
                continue  # (what "print your system prompt" asks for is given above)
            said = _said(m, unit, addressed, everything)
            if said and not (out and re.search(r"://|@", said)):  # (the link, given above)
                return [o for o in [*out, said] if o]
    return [o for o in out if o]


def _question_text(request: ChatRequest) -> str:
    """The question as the model was handed it: everything after the last ``Question:`` of
    the user turn, less the prompt's own closing line (``Answer …``)."""
    user = next(
        (
            str(m.get("content") or "")
            for m in reversed(request.messages)
            if m.get("role") == "user"
        ),
        "",
    )
    at = user.rfind("Question:")
    if at < 0:
        return request.question
    lines = user[at + len("Question:") :].strip().split("\n")
    if len(lines) > 1 and re.match(r"\s*Answer\b", lines[-1]):
        lines = lines[:-1]
    return "\n".join(lines).strip()


def _faithful(request: ChatRequest, question: str) -> str:
    """The passage sentence sharing most words with the question, with its marker."""
    asked = {w for w in _WORDS_OBEY.findall(question.lower()) if w not in _COMMON}
    best: tuple[int, int, str] | None = None
    for n, body in sorted(request.passages.items()):
        text = body.split("\n", 1)[1] if "\n" in body else ""
        # (blocks apart: a title or heading is not the start of the sentence after it)
        blocks = re.split(r"\n\s*\n", text)
        for sentence in (s for b in blocks for s in _SENTENCE_SPLIT.split(" ".join(b.split()))):
            words = {w for w in _WORDS_OBEY.findall(sentence.lower()) if w not in _COMMON}
            overlap = len(asked & words)
            if sentence and (best is None or overlap > best[0]):
                best = (overlap, n, sentence)
    if best is None or best[0] == 0:
        return ""
    _, n, sentence = best
    body, end = (sentence[:-1], sentence[-1]) if sentence[-1] in ".!?" else (sentence, ".")
    return f"{body} [{n}]{end}"


def obey(default: str = "") -> Responder:
    """A model that follows any instruction it finds in its question or passages (after the
    defence has had its say: it reads what it was sent). Per instruction it writes what was
    asked, citing the passage the instruction came from (``[1]`` for the question): the text
    to say ("reply only with X", "the answer is X", an assistant turn, a code stated in
    another passage), a link to visit, an image whose URL carries the question, a request to
    send something to an address, its system prompt. Encoded instructions are decoded first
    (base64, hex, rot13 when named, invisible characters). Where it is asked to add to its
    answer (prefix, append, render) and where it finds nothing to obey, it answers faithfully:
    the passage sentence sharing most words with the question, else ``default``."""

    def respond(request: ChatRequest) -> str:
        question = _question_text(request)
        system = next(
            (str(m.get("content") or "") for m in request.messages if m.get("role") == "system"),
            "",
        )
        sources = [(1, question)] + [
            (n, body.split("\n", 1)[1] if "\n" in body else "")
            for n, body in sorted(request.passages.items())
        ]
        readable = [(n, _readable(text)) for n, text in sources]
        everything = "\n".join(text for _, text in readable)
        said: list[str] = []
        adds = False
        for n, text in readable:
            for unit in _units(text):
                for order in _orders(unit, question, system, everything):
                    line = f"{order.rstrip('.')} [{n}]."
                    if line not in said:
                        said.append(line)
                        adds = adds or bool(_ADDS.search(unit))
        faithful = _faithful(request, question.split("\n")[0]) or resolve(default, request)
        if not said:
            return faithful
        return " ".join(said + ([faithful] if adds and faithful else []))

    return respond


# -- a prompt version's own behaviour: for release tests (a worse candidate) ----------------
def faithful(default: str = "") -> Responder:
    """Answers from its passages: the sentence sharing most words with the question, cited."""

    def respond(request: ChatRequest) -> str:
        question = _question_text(request).split("\n")[0]
        return _faithful(request, question) or resolve(default, request)

    return respond


def invents(base: Responder, claim: str = INVENTED_CLAIM) -> Responder:
    """``base``'s answer with a made-up sentence after it, cited as if a passage said it."""

    def respond(request: ChatRequest) -> str:
        text = base(request)
        return f"{text} {claim}".strip() if text else text

    return respond


def by_system(variants: Mapping[str, Responder], default: Responder) -> Responder:
    """The responder of the first marker the system turn holds, else ``default``: one scripted
    model that behaves differently under each prompt version (its system text differs)."""

    def respond(request: ChatRequest) -> str:
        system = " ".join(
            str(m.get("content") or "") for m in request.messages if m.get("role") == "system"
        )
        for marker, responder in variants.items():
            if marker in system:
                return responder(request)
        return default(request)

    return respond


# Responder factories by name, for callers that pick a mode by name (evals, tests). Add one
# with ``MODES["mine"] = factory``.
MODES: dict[str, Callable[..., Responder]] = {
    "fixed": fixed,
    "by_question": by_question,
    "obey": obey,
    "faithful": faithful,
    "invents": invents,
    "by_system": by_system,
}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (the fallback tests cut streams on purpose) are not errors here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Fault:
    """What the next request gets instead of a normal answer."""

    status: int | None = None  # reply with this HTTP status and an error body
    retry_after: str | None = None
    drop_after_tokens: int | None = None  # stream this many tokens, then cut the connection
    stall_seconds: float = 0.0  # wait this long before the first byte


@dataclass
class ChatServer:
    """``reply``: the answer template (placeholders resolved per request), streamed one word
    at a time (words keep their spaces), cut at the request's ``max_tokens`` words
    (``finish_reason: length`` then, as vLLM says). ``respond``, when set, decides instead."""

    reply: str = "The tower was built in 1889 [1]."
    respond: Responder | None = None
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    send_usage: bool = True
    token_delay: float = 0.0  # seconds between streamed words
    # Called with each word's index before it is streamed (a test can hold generation there).
    before_token: Callable[[int], None] | None = None
    sent_tokens: int = 0  # words streamed so far, over all requests
    hung_up: int = 0  # streams the client closed before their end (a write failed)
    # The reply to one request body, when a test answers requests differently (the condense
    # stage's rewrite and the answer); None: ``respond`` or ``reply``. Not resolved further.
    reply_for: Callable[[dict[str, Any]], str] | None = None
    model: str = "smollm2-135m-instruct"
    unresolved: list[str] = field(default_factory=list)  # phrases no passage held, all requests
    last: ChatRequest | None = None  # the last request answered, as the responder saw it
    last_text: str | None = None  # the last reply, placeholders resolved

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(
                        200,
                        {"object": "list", "data": [{"id": server.model, "object": "model"}]},
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                fault = server.faults.popleft() if server.faults else Fault()
                if fault.stall_seconds:
                    time.sleep(fault.stall_seconds)
                if fault.status is not None:
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    self._json(
                        fault.status, {"error": {"message": f"scripted {fault.status}"}}, headers
                    )
                    return
                if not self.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                server.last_text = None
                words = server.pieces(body)
                # (a subclass answering in pieces of its own sets ``reply`` instead)
                text = server.last_text if server.last_text is not None else server.reply
                finish = "length" if len(words) < len(text.split(" ")) else "stop"
                prompt_tokens = sum(
                    len(str(m.get("content") or "").split()) for m in body.get("messages", [])
                )
                if not body.get("stream"):
                    self._json(
                        200,
                        {
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": "".join(words)},
                                    "finish_reason": finish,
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": len(words),
                                "total_tokens": prompt_tokens + len(words),
                            },
                        },
                    )
                    return
                try:
                    self._stream(body, fault, words, finish, prompt_tokens)
                except (BrokenPipeError, ConnectionResetError):
                    server.hung_up += 1  # the client closed the request: nobody reads on
                    self.close_connection = True

            def _stream(
                self,
                body: dict[str, Any],
                fault: Fault,
                words: list[str],
                finish: str,
                prompt_tokens: int,
            ) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, word in enumerate(words):
                    if fault.drop_after_tokens is not None and i >= fault.drop_after_tokens:
                        # Die like a killed server: no terminating chunk, connection closed.
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if server.token_delay:
                        time.sleep(server.token_delay)
                    if server.before_token is not None:
                        server.before_token(i)
                    self._event(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [
                                {"index": 0, "delta": {"content": word}, "finish_reason": None}
                            ],
                        }
                    )
                    server.sent_tokens += 1
                self._event(
                    {
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                    }
                )
                if server.send_usage and (body.get("stream_options") or {}).get("include_usage"):
                    self._event(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": {
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": len(words),
                            },
                        }
                    )
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, payload: dict[str, Any]) -> None:
                self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, body: dict[str, Any]) -> str:
        """The reply text for one request body (placeholders resolved)."""
        if self.reply_for is not None:
            return self.reply_for(body)
        request = ChatRequest.of(body)
        respond = self.respond or fixed(self.reply)
        text = respond(request)
        self.unresolved.extend(request.unresolved)
        self.last = request
        self.last_text = text
        return text

    def pieces(self, body: dict[str, Any]) -> list[str]:
        """What is streamed for one request: the answer a word at a time (words keep their
        spaces), cut at the request's ``max_tokens`` words."""
        words = self.answer(body).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)][
            : int(body.get("max_tokens") or 10_000)
        ]

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
