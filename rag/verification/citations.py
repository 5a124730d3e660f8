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

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rag.contracts import AnswerSentence, PackedContext, Passage, VerifiedAnswer
from rag.core.config import CitationSettings
from rag.core.errors import VerificationError
from rag.core.sentences import MARKER as _MARKER
from rag.core.sentences import passage_segments, split_sentences
from rag.guards.injection import output_check
from rag.verification.answer_types import (
    WORD,
    RelevanceFeatures,
    about_something_else,
    answers_yes_no,
    question_parts,
    relevance,
    stem,
    type_match,
)
from rag.verification.grounding import spells, values
from rag.verification.support import STOPWORDS as _STOPWORDS
from rag.verification.support import Support, content_words, split_clauses
from rag.verification.support import check as check_support

__all__ = [
    "AnswerSentence",
    "AnswerVerifier",
    "StreamingVerifier",
    "SupportScorer",
    "VerifiedAnswer",
    "content_words",
    "model_abstained",
    "relevance_features",
    "sections_below_title",
    "split_sentences",
    "verify_answer",
]

Embed = Callable[[list[str]], np.ndarray]
# Texts -> the vector stored for each at ingest, None where there is none.
StoredVectors = Callable[[Sequence[str]], Sequence[np.ndarray | None]]

# The mark a sentence no passage supports carries with ``generation.verify.unsupported: mark``
# (the default, ``drop``, leaves it out of the answer altogether).
UNVERIFIED_MARK = "[unverified]"


# A sentence that is only a courtesy: thanks for the question, a wish that it helps, an offer
# of more help.
_COURTESY = re.compile(
    r"\W*(?:(?:that(?:'|’)?s\s+an?\s+|what\s+an?\s+|an?\s+)?(?:good|great|excellent|fair|nice|"
    r"interesting|common)\s+question|thanks\s+for\s+asking|glad\s+you\s+asked|happy\s+to\s+help|"
    r"(?:i\s+)?hope\s+(?:this|that|it)\s+helps|let\s+me\s+know\s+if\s+[^.!?]*|"
    r"(?:no\s+problem|you(?:'|’)?re\s+welcome|sure\s+thing|of\s+course|happy\s+to)"
    r")(?:\s*,?\s*(?:too|as\s+well))?\W*",
    re.IGNORECASE,
)


def has_values(text: str) -> bool:
    """Whether ``text`` states a number, date, code name, address or proper name."""
    return bool(values(text))


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


_ACRONYM = re.compile(r"[A-Z]{2,5}s?")


# A question written as a fragment or an instruction ("MFA requirements for new starters?",
# "Dev environment setup steps.", "Summarise the backup policy."): it opens with no
# question word or auxiliary. It reads as "what are the X of Y": its head noun or verb
# names the form of the answer, as "what" does, not something the answer must say; and
# its informal words are often clipped ("dev" for "development", "env", "repo", "prod").
_ASKS_PROPERLY = re.compile(
    r"^\W*(?:who|whom|whose|when|where|which|what|how|why|is|are|was|were|am|do|does|did|"
    r"can|could|should|would|will|must|may|might|shall|has|have|had|in|on|at|by|for|from|"
    r"to|with|after|before|during|if)\b",
    re.IGNORECASE,
)
_ANSWER_FORM = frozenset(
    stem(w)
    for w in """
    step steps requirement requirements rule rules guidance guideline guidelines standard
    standards process procedure procedures detail details option options overview summary
    info information instruction instructions list summarise summarize explain describe
    outline give tell show
    """.split()  # noqa: SIM905 - a word list reads best as words
)


# What a chatty question wraps around what it asks: "I'm", "do I need to", "how quickly"
# (the adverb after "how" names the form of the answer, a time, as "when" does; not "how
# big/many/much": what is measured is part of what is asked — "How big can a burst be on the
# free tier?" is not answered by the business tier's burst).
_CHATTY = re.compile(
    r"\b(?:i|you|we|they|it)['’](?:m|re|ve|d|ll|s)\b"
    r"|\b(?:do|does|did|will|would|should|must|can)\s+(?:i|we|you)\s+(?:need|have|got)\s+to\b"
    r"|\b(?:need|needs|have|has)\s+to\b|\b(?:set|sets|setting|get|gets|getting)\s+up\b"
    r"|(?<=\bhow\s)(?:quickly|fast|soon|long|often|frequently|early|late)\b",
    re.IGNORECASE,
)


def _fragment(question: str) -> bool:
    return _ASKS_PROPERLY.match(question) is None


def _clipped(word: str, said: Sequence[str]) -> bool:
    """``word`` (3-4 letters) cut from a longer word ``said`` holds ("dev": "development")."""
    return 3 <= len(word) <= 4 and any(len(s) >= len(word) + 3 and s.startswith(word) for s in said)


def _prefixes(words: Sequence[str]) -> set[str]:
    # Five letters: "approvals"/"approving", "merging"/"merge" meet; the stems alone do not.
    return {w[:5] for w in words}


def relevance_features(
    question: str,
    sentence: str,
    cosine: float,
    headings: Sequence[str] = (),
    passage: str | None = None,
    in_section: bool = False,
) -> RelevanceFeatures:
    """The signals :func:`rag.verification.answer_types.relevance` weighs, for ``sentence`` as an answer.

    ``headings``: the title and section names of the passage it comes from; a question word
    they hold counts as found ("What is the API rate limit?" meets "The free tier allows 60
    requests per minute" under "Public API Rate Limits > Default limits"). ``passage``: its
    text; a passage that never mentions most of the names the question uses is a miss, as a
    missing answer type is (:func:`rag.verification.answer_types.about_something_else`).
    ``in_section``: the passage sits under a section heading below its document title
    (:func:`sections_below_title`): documentation, where the sentence holding the type asked
    for is more often the answer than in prose."""
    fragment = _fragment(question)
    asked_words = content_words(_CHATTY.sub(" ", question))
    if fragment:
        asked_words = [w for w in asked_words if w.lower() not in _ANSWER_FORM]
    asked = _prefixes(asked_words)
    text = " ".join([sentence, *headings])
    # "git-fetch - Download objects ..." says "git" and "fetch" too
    said_words = content_words(text) + content_words(text.replace("-", " "))
    said = _prefixes(said_words)
    # a word typed short ("ack a page", "my dev environment"): the longer word said holds
    low = [w.lower() for w in said_words]
    said |= {a for a in asked if _clipped(a, low)}
    # an acronym of the question the text spells out: "PRs" by "pull requests"
    said |= _prefixes(
        [stem(w) for w in WORD.findall(question) if _ACRONYM.fullmatch(w) and spells(w, text)]
    )
    match = type_match(question, sentence)
    # (the sentence is the passage's own, or a rewording checked against it for support)
    if passage is not None and about_something_else(question, "\n".join([passage, *headings])):
        match = False
    return RelevanceFeatures(
        cosine=float(cosine),
        overlap=len(asked & said) / len(asked) if asked else 0.0,
        type_miss=1.0 if match is False else 0.0,
        type_hit=1.0 if match is True else 0.0,
        type_hit_in_section=1.0 if match is True and in_section else 0.0,
    )


def sections_below_title(title: str | None, section: Sequence[str]) -> list[str]:
    """A passage's section names below its document title (none in plain prose)."""
    return [h for h in section if h and h != (title or "")]


def _markers(sentence: str) -> tuple[str, list[int]]:
    numbers: list[int] = []
    for m in _MARKER.finditer(sentence):
        numbers.extend(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1)))
    bare = _MARKER.sub("", sentence).strip()
    # the space a marker left before the full stop; not the dot that opens a name (".venv")
    bare = re.sub(r"\s+([.,;:!?])(?=[\s\"')\]]|$)", r"\1", bare)
    return bare, numbers


@functools.lru_cache(maxsize=4096)
def _passage_sentences(text: str) -> tuple[str, ...]:
    # every claim of an answer is checked against every passage: split each once. With the
    # sentences as the extractive backend says them: a definition with its label
    # ("list.clear()\nRemove all items from the list."), whose label is a value it states
    sentences = split_sentences(text) or [text]
    return tuple(dict.fromkeys([*sentences, *passage_segments(text)]))


def _with_headings(passage: Passage) -> str:
    return "\n".join([passage.title or "", *passage.section, passage.text])


class SupportScorer:
    """How well passages support a sentence (:func:`rag.verification.support.check`: values
    grounded, polarity kept, words covered), and how relevant it is to the question (the
    embedder's similarity). Thread-safe; caches embeddings.

    ``stored``: the vectors ingestion already made (``rag.indexing.Index.stored_vectors``:
    passage sentences and chunks, None where there is none); looked up before anything is
    embedded, so a question embeds only itself and what no chunk holds."""

    def __init__(
        self, embed: Embed | None, cache_size: int = 20000, stored: StoredVectors | None = None
    ):
        self.embed = embed
        self.stored = stored
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- embeddings (cached: passages repeat across queries) -------------------------
    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        if self.embed is None or not texts:
            return np.zeros((len(texts), 1), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing and self.stored is not None:
            found = self.stored(missing)
            with self._lock:
                for t, v in zip(missing, found, strict=True):
                    if v is not None:
                        self._cache[t] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            missing = [t for t, v in zip(missing, found, strict=True) if v is None]
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

    def remember(self, text: str, vector: Sequence[float] | np.ndarray) -> None:
        """``text``'s vector, known already (the question retrieval searched with): its
        similarities use it instead of embedding ``text`` again. Kept under the text and
        under its whitespace-normalised form (the first of :func:`question_parts`)."""
        if self.embed is None:
            return
        v = np.asarray(vector, dtype=np.float32)
        with self._lock:
            for key in dict.fromkeys((text, " ".join(text.split()))):
                self._cache[key] = v
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def prepare(self, question: str) -> None:
        """Embed ``question`` (and its parts) ahead of the relevance checks: the generate stage
        does it while the model writes, so the first checked sentence does not wait for it."""
        if self.embed is not None:
            self.vectors(question_parts(question))

    def prepare_sentence(self, sentence: str) -> None:
        """Embed an answer sentence ahead of its relevance check (see :meth:`prepare`)."""
        if self.embed is not None:
            self.vectors([sentence])

    def relevance(
        self,
        question: str,
        sentence: str,
        headings: Sequence[str] = (),
        passage: str | None = None,
        in_section: bool = False,
    ) -> float:
        """How likely ``sentence`` answers ``question``, in [0, 1] (:func:`rag.verification.answer_types.relevance`);
        ``headings`` and ``passage``: those of the passage(s) it cites; ``in_section``: one
        of them sits under a section heading (:func:`relevance_features`).

        Without an embedder the similarity is unknown: only the answer-type check applies
        (1.0 unless the sentence lacks the type the question asks for)."""
        if self.embed is None:
            return 0.0 if type_match(question, sentence) is False else 1.0
        parts = question_parts(question)
        vecs = self.vectors([*parts, sentence])
        return max(
            relevance(
                relevance_features(
                    part, sentence, float(vecs[-1] @ vecs[i]), headings, passage, in_section
                )
            )
            for i, part in enumerate(parts)
        )

    def passage_sentences(self, passage: Passage) -> list[str]:
        return list(_passage_sentences(passage.text))

    # -- support ------------------------------------------------------------------------
    def check(
        self,
        sentence: str,
        passages: Sequence[Passage],
        question: str = "",
        context: str = "",
        floor: float = 0.0,
    ) -> Support:
        """How well ``passages`` together support ``sentence`` (their titles and sections
        count as their text); ``context``: the verified sentence before it; ``floor``: a
        coverage below it ends the check early."""
        texts = [_with_headings(p) for p in passages]
        sentences = [s for p in passages for s in self.passage_sentences(p)]
        headings = [h for p in passages for h in (p.title or "", *p.section) if h]
        similar = self.similarity if self.embed is not None else None
        return check_support(
            sentence, texts, sentences, context, question, headings, floor, similar
        )

    def similarity(self, text: str, other: str) -> float:
        """The embedder's cosine of two texts (a claim and the passage sentence it restates:
        the sentence's vector is mostly the one ingestion stored, the claim's the one the
        relevance check made)."""
        vecs = self.vectors([text, other])
        return float(vecs[0] @ vecs[1])

    def support(self, sentence: str, passage: Passage, question: str = "") -> tuple[float, str]:
        """(score, the passage sentence it restates) — the quote for a citation."""
        verdict = self.check(sentence, [passage], question)
        return verdict.score, verdict.quote or self.best_sentence(
            sentence, self.passage_sentences(passage)
        )

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
        # A sentence of only these words is dropped: the question's, and the titles and
        # headings of the passages it cites (of all, when it cites none). Another page's title
        # ("venv — Creation of virtual environments") may well be the value a sentence gives
        # ("A common directory location for a virtual environment is .venv").
        self._headings = {
            n: set(content_words(" ".join([p.title or "", *p.section])))
            for n, p in self.passages.items()
        }
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

    def _context(self) -> str:
        """The sentence before the one being checked, when it was verified: what "it",
        "they" and "this" refer to."""
        if self.checked and self.checked[-1].supported:
            return self.checked[-1].text
        return ""

    def _check(self, text: str, n: int, context: str) -> Support:
        return self.scorer.check(
            text, [self.passages[n]], self.question, context, self.settings.min_support
        )

    def _by_clause(
        self,
        text: str,
        numbers: Sequence[int],
        context: str,
        parts_joined_by_and: bool = False,
    ) -> tuple[Support, list[int]] | None:
        """A sentence that joins facts from several passages ("A is 90 days, while B is 35
        days [1][2]"): each clause supported by one of ``numbers`` (the clauses before it
        are its context). A single clause never combines passages: its value and its
        subject must come from one. ``parts_joined_by_and``: split at a bare "and" too."""
        clauses = split_clauses(text, parts_joined_by_and)
        if len(clauses) < 2:
            return None
        floor = self.settings.min_support
        used: list[int] = []
        worst: Support | None = None
        said = context
        for clause in clauses:
            verdicts = [(self._check(clause, n, said), n) for n in numbers]
            best, n = max(verdicts, key=lambda vn: (vn[0].score, -vn[1]))
            if best.score < floor:
                return None
            if n not in used:
                used.append(n)
            if worst is None or best.score < worst.score:
                worst = best
            said = f"{said} {clause}".strip()
        assert worst is not None
        return worst, used

    def _support(
        self, text: str, numbers: Sequence[int], context: str
    ) -> tuple[Support, list[int]]:
        """The verdict for ``text`` citing ``numbers`` and which of them it keeps: each
        passage that supports it alone, else one per clause (a synthesis citing [1][2])."""
        alone = {n: self._check(text, n, context) for n in numbers}
        floor = self.settings.min_support
        kept = [n for n, v in alone.items() if v.score >= floor]
        if kept:
            return max((alone[n] for n in kept), key=lambda v: v.score), kept
        if len(numbers) > 1:
            joined = self._by_clause(text, numbers, context)
            if joined is not None:
                return joined
            # Two things joined by a bare "and", one from each cited passage ("needs a green
            # CI build and one approving review from a code owner [1][2]"). Each part is
            # still one passage's: a value and the subject it is said of come from one.
            joined = self._by_clause(text, numbers, context, parts_joined_by_and=True)
            if joined is not None:
                return joined
        best = max(alone.values(), key=lambda v: v.score, default=None)
        return best or Support(0.0, 0.0), []

    def _find(self, text: str, tried: Sequence[int], context: str) -> tuple[Support, list[int]]:
        """The passage that supports ``text`` best (the sentence cited none, or the wrong
        ones), else one passage per clause: a right fact cited to the wrong passage is fixed."""
        floor = self.settings.min_support
        singles = {n: self._check(text, n, context) for n in self.passages if n not in tried}
        best = max(singles.items(), key=lambda kv: (kv[1].score, -kv[0]), default=None)
        if best is not None and best[1].score >= floor:
            return best[1], [best[0]]
        joined = self._by_clause(text, list(self.passages), context)
        if joined is not None:
            return joined
        return Support(0.0, 0.0), []

    def add(self, raw: str) -> AnswerSentence | None:
        text, markers = _markers(" ".join(raw.split()))
        if not text or _is_abstention(text, self.abstain_text):
            return None
        words = content_words(text)
        key = " ".join(words) or text.lower()
        cited = [n for n in markers if n in self._headings] or list(self._headings)
        known = self._known.union(*(self._headings[n] for n in cited))
        if key in self._seen or (words and set(words) <= known):
            return None  # a repeat, or only headings and question words: dropped, not flagged
        self._seen.add(key)
        # A value ("It is 35.", "Yes, 4 hours.") always needs a passage, however short; a
        # courtesy ("Good question!", "Hope that helps.") states nothing a passage could hold.
        needs = (
            len(words) >= self.settings.min_content_words or has_values(text)
        ) and not _COURTESY.fullmatch(text)
        sentence = AnswerSentence(text=text, cited=[], supported=False, needs_support=needs)
        context = self._context()
        valid = []
        for n in dict.fromkeys(markers):
            if n in self.passages:
                valid.append(n)
            else:
                sentence.dropped_markers.append(n)
        verdict, kept = self._support(text, valid, context) if valid else (Support(0.0, 0.0), [])
        for n in valid:
            if n not in kept:
                sentence.dropped_markers.append(n)
        if not kept and needs:
            found, kept = self._find(text, valid, context)
            if kept or not valid:
                verdict = found
        for n in kept:
            sentence.scores[n] = verdict.score
            self._cite(sentence, n, verdict.score, verdict.quote or self._quote(text, n))
        sentence.supported = bool(kept)
        if not sentence.supported and verdict.reason:
            sentence.why = verdict.reason
        # Short sentences too: a canary or a link an attack asked for can be one word.
        if self.output_check and self._refused(sentence):
            return None  # an instruction, or contradicted by a better passage: not said
        if sentence.supported and not self.answered:
            # Whether it answers the question matters only until one sentence does.
            self._judge_relevance(sentence, verdict.quote)
        self.checked.append(sentence)
        return sentence

    def _judge_relevance(self, sentence: AnswerSentence, quote: str = "") -> None:
        """Whether ``sentence`` answers the question: relevance >= ``min_relevance``, or
        >= ``min_relevance_typed`` when it has the answer type asked for (or none is asked)
        and its passage is about what the question names. ``quote``: the passage sentence it
        restates — a faithful paraphrase answers whatever that sentence answers (the relevance
        model was fitted on document sentences, not on a model's rewording of them)."""
        floor = self.settings.min_relevance
        if floor <= 0:
            sentence.relevance, sentence.relevant = 1.0, True
            return
        headings = [
            h
            for n in sentence.cited
            for h in (self.passages[n].title or "", *self.passages[n].section)
            if h
        ]
        cited_text = " ".join(self.passages[n].text for n in sentence.cited)
        in_section = any(
            sections_below_title(self.passages[n].title, self.passages[n].section)
            for n in sentence.cited
        )
        said = [sentence.text]
        if quote and quote != sentence.text:
            said.append(quote)
        sentence.relevance = max(
            self.scorer.relevance(self.question, text, headings, cited_text, in_section)
            for text in said
        )
        typed = any(
            type_match(self.question, text) is not False for text in said
        ) and not about_something_else(self.question, "\n".join([cited_text, *headings]))
        if typed:
            floor = min(floor, self.settings.min_relevance_typed)
        sentence.relevant = sentence.relevance >= floor or answers_yes_no(
            self.question, sentence.text, " ".join([*said, *headings])
        )

    def _quote(self, text: str, n: int) -> str:
        passage = self.passages[n]
        return self.scorer.best_sentence(text, self.scorer.passage_sentences(passage))

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

    @property
    def shows_unsupported(self) -> bool:
        """``generation.verify.unsupported: mark``: unsupported sentences are shown, marked."""
        return self.settings.unsupported == "mark"

    def render(self, sentence: AnswerSentence) -> str | None:
        """The sentence as the user sees it: markers renumbered; None when it is not shown (no
        passage supports it, and ``unsupported: drop``); with ``mark``, prefixed with
        :data:`UNVERIFIED_MARK`."""
        if not sentence.cited:
            if sentence.needs_support:
                return f"{UNVERIFIED_MARK} {sentence.text}" if self.shows_unsupported else None
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
        if rendered is None:
            done = [r for r in (self.render(s) for s in self.checked) if r is not None]
        else:
            done = list(rendered)
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
# The end of a sentence, maybe the answer's last: . ! ? then closing quotes and [n] markers.
_LOOKS_FINISHED = re.compile(r"[.!?][\"')\]]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*\s*$")


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

    def __init__(
        self, make: Callable[[], AnswerVerifier], ahead: Callable[[str], object] | None = None
    ):
        """``ahead(text)``: called with a sentence that looks finished (it ends in . ! or ?)
        before the model's next piece says whether it is: the generate stage embeds it in the
        background, so its relevance check at the end of the stream finds it ready."""
        self._make = make
        self._ahead = ahead
        self._ahead_last = ""
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
            shown = self.verifier.render(sentence)
            if shown is not None:  # None: unsupported, and unsupported: drop
                self._held.append(shown)
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
        if self._ahead is not None and parts and not self.verifier.answered:
            last = parts[-1]
            if _LOOKS_FINISHED.search(last):
                text = _markers(" ".join(last.split()))[0]
                if text and text != self._ahead_last:
                    self._ahead_last = text
                    self._ahead(text)
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
