"""Verify citations: every ``[n]`` must name a passage of the context that supports its sentence.

Support of a sentence by a passage (:class:`SupportScorer`) combines, with weights fitted on
SQuAD 2.0 by ``benchmarks/calibrate_support.py`` (which also reports precision/recall):

- ``novel``: share of the sentence's content words that are *not* in the question and are
  found in the passage — what the sentence adds to the question must come from the passage;
- ``coverage``: share of all its content words found in the passage;
- ``keys``: share of its numbers and capitalised names found in the passage;
- ``cosine``: the best embedding similarity between the sentence and a passage sentence
  (the index's own embedder, so no extra model).

Then (:func:`verify_answer`): markers naming no passage are removed; a marker whose passage
does not support the sentence is removed; a sentence left without a marker gets the passage
that supports it best, if one does; sentences nothing supports are flagged. A supported
sentence *answers* when it is also relevant to the question (:mod:`rag.verification.answer_types`: of the
type the question asks for — a duration for "how long", a person or team for "who" — and
likely enough to answer it, ``min_relevance``). When no sentence answers, the answer is an
abstention (and the chain hands over to its next backend): a supported sentence that does
not address the question is not an answer. Markers are renumbered 1..k in order of first use,
and only the passages actually cited are returned, each with its best-supporting sentence as
the quote.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.contracts import AnswerSentence, PackedContext, Passage, VerifiedAnswer
from rag.core.config import CitationSettings
from rag.core.errors import VerificationError
from rag.guards.injection import output_check
from rag.verification.answer_types import (
    WORD,
    RelevanceFeatures,
    about_something_else,
    question_parts,
    relevance,
    stem,
    type_match,
)

__all__ = [
    "AnswerSentence",
    "AnswerVerifier",
    "StreamingVerifier",
    "SupportScorer",
    "VerifiedAnswer",
    "content_words",
    "model_abstained",
    "relevance_features",
    "split_sentences",
    "verify_answer",
]

Embed = Callable[[list[str]], np.ndarray]

# Fitted by benchmarks/calibrate_support.py on squad2 (logistic regression, features that
# got a negative weight dropped and the rest refitted; threshold min_support = 0.75 for
# precision >= 0.95 on the fitting half). Held-out articles: precision 0.969, recall 0.987;
# a swapped answer citing the right paragraph is accepted 2.2% of the time, a right claim
# citing a sibling paragraph 1.0%. Coverage and cosine add nothing over ``novel`` and ``keys``
# there (cosine alone: precision 0.94 at recall 0.50), so they weigh 0 and verification needs
# no embedding. Re-run the script after changing the features or the embedder.
SUPPORT_WEIGHTS: dict[str, float] = {
    "intercept": -18.8812,
    "novel": 12.214,
    "coverage": 0.0,
    "keys": 8.4588,
    "cosine": 0.0,
}

_STOPWORDS = frozenset(
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
    )
)
_NUMBERS = r"\d+(?:\s*[,;]\s*\d+)*"
# A citation marker: "[1]", "[1, 3]". Brackets glued to a name are its index ("argv[0] is the
# script name"), unless the sentence or clause ends right after them ("... 5 minutes[1].").
_MARKER = re.compile(
    rf"\s*(?:(?<![\w\])])|(?=\[{_NUMBERS}\](?:\s*[.,;:!?)]|\s*\[|\s*$)))\[({_NUMBERS})\]"
)
# A sentence ends at . ! or ? (closing quotes/brackets and [n] markers stay with it) before
# whitespace and a capital or digit; paragraph breaks and list items end one too.
_SENTENCE_END = re.compile(
    r"[.!?][\"')\]]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*(?=\s+[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)"
)
_LIST_NUMBER = re.compile(r"\d{1,3}[.)]")
_ABBREVIATIONS = (
    "e.g.",
    "i.e.",
    "etc.",
    "vs.",
    "Dr.",
    "Mr.",
    "Mrs.",
    "Ms.",
    "St.",
    "No.",
    "Fig.",
    "al.",
    "approx.",
)


def content_words(text: str) -> list[str]:
    return [stem(w) for w in WORD.findall(text) if w.lower() not in _STOPWORDS]


def key_terms(text: str) -> set[str]:
    """Numbers and capitalised names (not the first word of the sentence)."""
    words = WORD.findall(text)
    keys = set()
    for i, w in enumerate(words):
        if any(c.isdigit() for c in w) or (
            i > 0 and w[0].isupper() and w.lower() not in _STOPWORDS
        ):
            keys.add(stem(w))
    return keys


def _prefixes(words: Sequence[str]) -> set[str]:
    # Five letters: "approvals"/"approving", "merging"/"merge" meet; the stems alone do not.
    return {w[:5] for w in words}


def relevance_features(
    question: str,
    sentence: str,
    cosine: float,
    headings: Sequence[str] = (),
    passage: str | None = None,
) -> RelevanceFeatures:
    """The signals :func:`rag.verification.answer_types.relevance` weighs, for ``sentence`` as an answer.

    ``headings``: the title and section names of the passage it comes from; a question word
    they hold counts as found ("What is the API rate limit?" meets "The free tier allows 60
    requests per minute" under "Public API Rate Limits > Default limits"). ``passage``: its
    text; a passage that never mentions most of the names the question uses is a miss, as a
    missing answer type is (:func:`rag.verification.answer_types.about_something_else`)."""
    asked = _prefixes(content_words(question))
    text = " ".join([sentence, *headings])
    # "git-fetch - Download objects ..." says "git" and "fetch" too
    said = _prefixes(content_words(text)) | _prefixes(content_words(text.replace("-", " ")))
    match = type_match(question, sentence)
    # (the sentence is the passage's own, or a rewording checked against it for support)
    if passage is not None and about_something_else(question, "\n".join([passage, *headings])):
        match = False
    return RelevanceFeatures(
        cosine=float(cosine),
        overlap=len(asked & said) / len(asked) if asked else 0.0,
        type_miss=1.0 if match is False else 0.0,
        type_hit=1.0 if match is True else 0.0,
    )


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, markers kept with the sentence they close."""
    protected = text
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbr, abbr.replace(".", f"\x00{i}\x00"))
    parts: list[str] = []
    cursor = 0
    for m in _SENTENCE_END.finditer(protected):
        parts.append(protected[cursor : m.end()])
        cursor = m.end()
    parts.append(protected[cursor:])
    parts = [p for p in parts if p.strip()]
    out: list[str] = []
    for part in parts:
        for i, abbr in enumerate(_ABBREVIATIONS):
            part = part.replace(abbr.replace(".", f"\x00{i}\x00"), abbr)
        part = part.strip()
        # "... 1889. [1]" — a sentence that is only markers belongs to the previous one.
        if (out and _LIST_NUMBER.fullmatch(out[-1])) or (
            out and _MARKER.sub("", part).strip(" .") == ""
        ):  # "1." of a numbered list opens its item
            out[-1] = f"{out[-1]} {part}"
        elif out and part[:1] == "[" and (lead := _MARKER.match(part)):
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            rest = part[lead.end() :].strip()
            if rest:
                out.append(rest)
        else:
            out.append(part)
    return out


def _markers(sentence: str) -> tuple[str, list[int]]:
    numbers: list[int] = []
    for m in _MARKER.finditer(sentence):
        numbers.extend(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1)))
    bare = _MARKER.sub("", sentence).strip()
    bare = re.sub(r"\s+([.,;:!?])", r"\1", bare)
    return bare, numbers


@dataclass
class SupportFeatures:
    novel: float
    coverage: float
    keys: float
    cosine: float

    def as_list(self) -> list[float]:
        return [self.novel, self.coverage, self.keys, self.cosine]


class SupportScorer:
    """Scores how well a passage supports a sentence, in [0, 1]. Thread-safe; caches embeddings."""

    FEATURES = ("novel", "coverage", "keys", "cosine")

    def __init__(
        self, embed: Embed | None, weights: dict[str, float] | None = None, cache_size: int = 20000
    ):
        self.embed = embed
        self.weights = dict(weights or SUPPORT_WEIGHTS)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- embeddings (cached: passages repeat across queries) -------------------------
    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        if self.embed is None or not texts:
            return np.zeros((len(texts), 1), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = self.embed(missing)
            with self._lock:
                for t, v in zip(missing, fresh, strict=False):
                    self._cache[t] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            return np.stack(
                [self._cache[t] if t in self._cache else self.embed([t])[0] for t in texts]
            )

    def relevance(
        self,
        question: str,
        sentence: str,
        headings: Sequence[str] = (),
        passage: str | None = None,
    ) -> float:
        """How likely ``sentence`` answers ``question``, in [0, 1] (:func:`rag.verification.answer_types.relevance`);
        ``headings`` and ``passage``: those of the passage(s) it cites.

        Without an embedder the similarity is unknown: only the answer-type check applies
        (1.0 unless the sentence lacks the type the question asks for)."""
        if self.embed is None:
            return 0.0 if type_match(question, sentence) is False else 1.0
        parts = question_parts(question)
        vecs = self.vectors([*parts, sentence])
        return max(
            relevance(
                relevance_features(part, sentence, float(vecs[-1] @ vecs[i]), headings, passage)
            )
            for i, part in enumerate(parts)
        )

    def passage_sentences(self, passage: Passage) -> list[str]:
        return split_sentences(passage.text) or [passage.text]

    # -- features and score ----------------------------------------------------------
    def features(
        self,
        sentence: str,
        passage_text: str,
        passage_sentences: Sequence[str],
        question: str = "",
        with_cosine: bool | None = None,
    ) -> SupportFeatures:
        """``with_cosine``: None = only when it has a weight (it costs an embedding per sentence)."""
        words = content_words(sentence)
        passage_words = set(content_words(passage_text))
        question_words = set(content_words(question))
        coverage = sum(w in passage_words for w in words) / len(words) if words else 0.0
        novel_words = [w for w in words if w not in question_words]
        novel = (
            sum(w in passage_words for w in novel_words) / len(novel_words)
            if novel_words
            else coverage
        )
        keys = key_terms(sentence) - (
            key_terms(question) | {stem(w) for w in WORD.findall(question)}
        )
        passage_stems = (
            passage_words | {stem(w) for w in WORD.findall(passage_text)} if keys else passage_words
        )
        key_share = sum(k in passage_stems for k in keys) / len(keys) if keys else 1.0
        cosine = 0.0
        if with_cosine is None:
            with_cosine = bool(self.weights.get("cosine"))
        if with_cosine and self.embed is not None and passage_sentences:
            vecs = self.vectors([sentence, *passage_sentences])
            cosine = float(np.max(vecs[1:] @ vecs[0]))
        return SupportFeatures(novel, coverage, key_share, cosine)

    def score_features(self, f: SupportFeatures) -> float:
        w = self.weights
        z = w["intercept"] + sum(
            w[name] * value for name, value in zip(self.FEATURES, f.as_list(), strict=False)
        )
        return 1.0 / (1.0 + math.exp(-z))

    def support(self, sentence: str, passage: Passage, question: str = "") -> tuple[float, str]:
        """(score, the passage sentence most like ``sentence``) — the quote for a citation."""
        sents = self.passage_sentences(passage)
        f = self.features(sentence, passage.text, sents, question)
        return self.score_features(f), self.best_sentence(sentence, sents)

    def best_sentence(self, sentence: str, candidates: Sequence[str]) -> str:
        """The candidate that says most of what ``sentence`` says (shared words, then meaning)."""
        if len(candidates) <= 1:
            return candidates[0] if candidates else ""
        mine = set(content_words(sentence))
        overlap = np.array(
            [len(mine & set(content_words(c))) / max(1, len(mine)) for c in candidates]
        )
        if self.embed is not None:
            vecs = self.vectors([sentence, *candidates])
            overlap = overlap + vecs[1:] @ vecs[0]
        return candidates[int(np.argmax(overlap))]


def _is_abstention(text: str, abstain_text: str) -> bool:
    norm = re.sub(r"[^a-z ]", "", text.lower())
    target = re.sub(r"[^a-z ]", "", abstain_text.lower())
    return bool(target) and (
        target in norm
        or norm.startswith(
            (
                "the documents dont",
                "the passages dont",
                "the passages do not",
                "the documents do not",
            )
        )
    )


def model_abstained(answer: str, abstain_text: str) -> bool:
    """The model said only that the documents do not answer (in the prompt's words or close)."""
    sentences = [_markers(" ".join(s.split()))[0] for s in split_sentences(answer)]
    return bool(sentences) and all(not t or _is_abstention(t, abstain_text) for t in sentences)


class AnswerVerifier:
    """Checks an answer one sentence at a time, in the order the model wrote them.

    ``add(raw)`` checks one sentence (``None`` when it is dropped: a repeat, an abstention,
    only headings and question words); ``render(sentence)`` gives its text with markers
    renumbered to the citations returned (in order of first use); ``result()`` is the whole
    :class:`VerifiedAnswer`. ``verify_answer`` is all three over a finished text; the query
    stream uses them as sentences complete, so what it releases is what ``result()`` says.
    """

    def __init__(
        self,
        context: PackedContext,
        scorer: SupportScorer,
        settings: CitationSettings,
        question: str = "",
        abstain_text: str = "The documents don't contain an answer to this.",
        output_check: bool = True,
    ):
        self.passages = context.by_number
        # rag.guards.injection.output_check on each sentence; (sentence, why) of those it refused.
        self.output_check = output_check
        self.refused: list[tuple[str, str]] = []
        self.scorer = scorer
        self.settings = settings
        self.question = question
        self.abstain_text = abstain_text
        self.checked: list[AnswerSentence] = []
        self._quotes: dict[int, tuple[float, str]] = {}
        self._renumber: dict[int, int] = {}
        # Words that say nothing new: the question's and the passages' titles and headings. A
        # small model looping on a passage header ("Backup Policy — Backup Policy") is not an
        # answer.
        self._known = set(content_words(question))
        for p in self.passages.values():
            self._known.update(content_words(" ".join([p.title or "", *p.section])))
        self._seen: set[str] = set()

    @property
    def supported(self) -> bool:
        return any(s.supported for s in self.checked)

    @property
    def answered(self) -> bool:
        """Some supported sentence addresses the question: the answer stands."""
        return any(s.answers for s in self.checked)

    def _cite(self, sentence: AnswerSentence, n: int, score: float, quote: str) -> None:
        sentence.cited.append(n)
        if score > self._quotes.get(n, (-1.0, ""))[0]:
            self._quotes[n] = (score, quote)

    def add(self, raw: str) -> AnswerSentence | None:
        text, markers = _markers(" ".join(raw.split()))
        if not text or _is_abstention(text, self.abstain_text):
            return None
        words = content_words(text)
        key = " ".join(words) or text.lower()
        if key in self._seen or (words and set(words) <= self._known):
            return None  # a repeat, or only headings and question words: dropped, not flagged
        self._seen.add(key)
        needs = len(words) >= self.settings.min_content_words
        sentence = AnswerSentence(text=text, cited=[], supported=False, needs_support=needs)
        for n in dict.fromkeys(markers):
            passage = self.passages.get(n)
            if passage is None:
                sentence.dropped_markers.append(n)
                continue
            score, quote = self.scorer.support(text, passage, self.question)
            sentence.scores[n] = score
            if score >= self.settings.min_support:
                self._cite(sentence, n, score, quote)
            else:
                sentence.dropped_markers.append(n)
        if not sentence.cited and needs:
            best: tuple[float, int, str] | None = None
            for n, passage in self.passages.items():
                if n in sentence.scores:
                    continue
                score, quote = self.scorer.support(text, passage, self.question)
                sentence.scores[n] = score
                if score >= self.settings.min_support and (best is None or score > best[0]):
                    best = (score, n, quote)
            if best is not None:
                self._cite(sentence, best[1], best[0], best[2])
        sentence.supported = bool(sentence.cited)
        if self.output_check and needs and self._refused(sentence):
            return None  # an instruction, or contradicted by a better passage: not said
        if sentence.supported:
            floor = self.settings.min_relevance
            headings = [
                h
                for n in sentence.cited
                for h in (self.passages[n].title or "", *self.passages[n].section)
                if h
            ]
            cited_text = " ".join(self.passages[n].text for n in sentence.cited)
            sentence.relevance = (
                self.scorer.relevance(self.question, text, headings, cited_text)
                if floor > 0
                else 1.0
            )
            sentence.relevant = sentence.relevance >= floor
        self.checked.append(sentence)
        return sentence

    def _refused(self, sentence: AnswerSentence) -> bool:
        """Prompt injection's output check (:func:`rag.guards.injection.output_check`)."""
        flagged = {n for n, p in self.passages.items() if p.flagged}
        why = output_check(
            sentence.text,
            self.question,
            [self.passages[n] for n in sentence.cited],
            list(self.passages.values()),
            flagged,
        )
        if why is not None:
            self.refused.append((sentence.text, why))
        return why is not None

    def render(self, sentence: AnswerSentence) -> str:
        if not sentence.cited:
            return sentence.text
        for n in sentence.cited:
            self._renumber.setdefault(n, len(self._renumber) + 1)
        marks = "".join(f"[{self._renumber[n]}]" for n in sentence.cited)
        text = sentence.text
        body, end = (text[:-1], text[-1]) if text[-1] in ".!?" else (text, "")
        return f"{body} {marks}{end}"

    def citations(self) -> list[dict[str, Any]]:
        out = []
        for old, new in self._renumber.items():
            passage = self.passages[old]
            quote = self._quotes.get(old, (0.0, passage.text))[1]
            cit = passage.as_citation(quote=quote, verified=True)
            cit["n"] = new
            out.append(cit)
        return out

    def result(self, rendered: list[str] | None = None) -> VerifiedAnswer:
        """The verdict; ``rendered`` are the sentences already rendered, in order (the rest
        are rendered now). No sentence that answers: the abstention."""
        if not self.answered:
            return VerifiedAnswer(
                answer=self.abstain_text, abstained=True, citations=[], sentences=self.checked
            )
        done = list(rendered or [])
        done.extend(self.render(s) for s in self.checked[len(done) :])
        return VerifiedAnswer(
            answer=" ".join(done),
            abstained=False,
            citations=self.citations(),
            sentences=self.checked,
            passages=list(self._renumber),
        )


def verify_answer(
    answer: str,
    context: PackedContext,
    scorer: SupportScorer,
    settings: CitationSettings,
    question: str = "",
    abstain_text: str = "The documents don't contain an answer to this.",
) -> VerifiedAnswer:
    verifier = AnswerVerifier(context, scorer, settings, question, abstain_text)
    for raw in split_sentences(answer):
        verifier.add(raw)
    return verifier.result()


_UNCLOSED_OR_MARKER = re.compile(r"\[[^\]]*\]?")


def _opens_a_sentence(part: str) -> bool:
    """Whether the last split part has begun a new sentence (not a marker or list number that
    still belongs to the one before it)."""
    return any(c.isalpha() for c in _UNCLOSED_OR_MARKER.sub("", part))


class StreamingVerifier:
    """Releases an answer being generated sentence by sentence, each once verified.

    ``feed(piece)`` takes model text and returns the text that may be shown now; ``close()``
    checks what is left once the backend finished, and ``drain()`` then returns the rest.
    Sentences before the first supported one are held back: when none is supported the
    answer is the abstention, and nothing else was shown. "Supported" here means answering:
    supported and relevant to the question (:attr:`AnswerVerifier.answered`). The released
    texts, concatenated, are ``result().answer`` exactly.
    """

    def __init__(self, make: Callable[[], AnswerVerifier]):
        self._make = make
        self.reset()

    def reset(self) -> None:
        """Start over (the next backend's answer)."""
        self.verifier = self._make()
        self.raw = ""
        self.closed = False
        self.released: list[str] = []  # rendered sentences shown, in order
        self._held: list[str] = []
        self._ready: list[str] = []
        self._consumed = 0  # split parts of ``raw`` checked so far

    @property
    def has_released(self) -> bool:
        return bool(self.released)

    def _check(self, parts: list[str]) -> None:
        for raw in parts:
            sentence = self.verifier.add(raw)
            if sentence is None:
                continue
            self._held.append(self.verifier.render(sentence))
            if self.verifier.answered:
                self._release(self._held)
                self._held = []

    def _release(self, rendered: list[str]) -> None:
        for text in rendered:
            self._ready.append(text if not self.released else " " + text)
            self.released.append(text)

    def feed(self, piece: str) -> list[str]:
        if self.closed:
            raise VerificationError("feed() after close(): reset() first")
        self.raw += piece
        parts = split_sentences(self.raw)
        if len(parts) >= 2 and _opens_a_sentence(parts[-1]):
            self._check(parts[self._consumed : len(parts) - 1])
            self._consumed = len(parts) - 1
        return self.drain()

    def close(self) -> VerifiedAnswer:
        if not self.closed:
            self._check(split_sentences(self.raw)[self._consumed :])
            self.closed = True
            if not self.verifier.answered:
                self._ready.append(self.verifier.abstain_text)
        return self.result()

    def drain(self) -> list[str]:
        ready, self._ready = self._ready, []
        return ready

    def result(self) -> VerifiedAnswer:
        if not self.verifier.answered:
            return self.verifier.result()
        return self.verifier.result(self.released + self._held)
