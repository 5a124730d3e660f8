"""No LLM: the answer is the context's sentences that best answer the question, each cited.

Every sentence of every passage is scored by :func:`rag.verification.answer_types.relevance` — its
embedding similarity to the question (the index's embedder), the share of the question's
words it holds, and whether it has the kind of answer the question asks for (a duration for
"how long", a person or team for "who", ...) — plus a small prior for the passage it is in
(its own similarity to the question: the best passage, not only the best sentence). The best
sentence at or above ``min_score`` is the answer; nothing there: nothing is said, and the
pipeline abstains.

A second sentence (``max_sentences`` >= 2) is, first, a neighbour of the best one in its
passage when the answer spans the two: the best sentence lacks the answer type and the
neighbour has it, or the neighbour is itself relevant (``min_score``); else the next best
sentence if it reaches ``min_score``. Sentences of one passage are said in their order.
The threshold is calibrated on SQuAD 2.0 by ``benchmarks/calibrate_relevance.py``.

A follow-up in a chat (``request.extra["follow_up"]``, set by the ``generate`` stage) does not
get an earlier answer again (:func:`not_said_again`); one that refers back and finds nothing
at ``min_score`` is answered where the conversation is (:func:`in_conversation_place`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag.contracts import Passage
from rag.core.sentences import MIN_ANSWER_WORDS, without_headings
from rag.core.sentences import passage_segments as segments_of
from rag.generate.base import GenerationRequest, Generator, TokenCounter, Usage
from rag.generate.entries import (
    Entry,
    action_of,
    asked_kind,
    best_entries,
    entry_label,
    entry_match,
    names_doing,
    parameter_names,
    parse_entry,
)
from rag.guards.injection import repeats_suspect
from rag.verification.answer_types import RelevanceFeatures, relevance
from rag.verification.citations import (
    SupportScorer,
    content_words,
    relevance_features,
    sections_below_title,
    split_sentences,
)
from rag.verification.support import claim_words, says

__all__ = [
    "Candidate",
    "ExtractiveGenerator",
    "candidates",
    "in_conversation_place",
    "not_said_again",
    "rank_sentences",
    "select",
]

# Weight of the passage's own similarity to the question next to the sentence's relevance
# (fitted with the relevance weights by benchmarks/calibrate_relevance.py).
PASSAGE_WEIGHT = 0.3
# The relevance a manual page's NAME line of the thing asked about gets at least: above the
# bar and above the SYNOPSIS line that repeats the command's name (0.57 for "do?").
NAME_LINE_RELEVANCE = 0.9
# A manual page's NAME line: "git-blame - Show what revision and author last modified each
# line of a file" — the page's own one-line answer to "What does git blame do?".
_NAME_LINE = re.compile(r"^([a-z][\w.+]*(?:-[\w.+]+)*)\s+-\s+\S")
_WHAT_DOES = re.compile(r"^\s*what\s+(?:does|do)\s+(.+?)\s+\w+\s*\?\s*$", re.IGNORECASE)


def names_what_is_asked(question: str, sentence: str) -> bool:
    """Whether ``sentence`` is the NAME line of the manual page of what a "What does X do?"
    question asks about (its name with hyphens for spaces: "git stash" → "git-stash")."""
    asked, line = _WHAT_DOES.match(question), _NAME_LINE.match(sentence)
    if asked is None or line is None:
        return False
    return "-".join(asked.group(1).lower().split()) == line.group(1).lower()


# "What is checkpoint_timeout?", "What does work_mem limit?", "What is a fast-forward?": the
# thing asked about, one name (words of a command: "git stash pop")
_WHAT_IS = re.compile(r"^\s*what\s+(?:is|are)\s+(?:an?\s+|the\s+)?(\S+)\s*\?\s*$", re.IGNORECASE)
# What opens a definition's label in reference documentation ("class csv.DictReader(f, ...)",
# "classmethod date.today()"), before the name it defines
_LABEL_KINDS = frozenset(
    (
        "class",
        "classmethod",
        "staticmethod",
        "method",
        "function",
        "exception",
        "attribute",
        "data",
        "property",
        "abstractmethod",
        "coroutine",
        "async",
    )
)


def _defined_name(sentence: str) -> str | None:
    """The name a definition's label defines, when ``sentence`` opens with one on a line of its
    own (rag.core.sentences.passage_segments: "work_mem (integer)\nSets the base maximum
    ...", "classmethod date.today()\nReturn the current local date", "pop [--index]
    [<stash>]\nRemove a single stashed state ...")."""
    label, newline, _ = sentence.partition("\n")
    words = label.split()
    if not newline or not words:
        return None
    while len(words) > 1 and words[0].lower() in _LABEL_KINDS:
        words = words[1:]
    name = re.sub(r"\(.*$", "", words[0]).rstrip(":,").lower()
    return name or None


def defines_what_is_asked(question: str, sentence: str, headings: Sequence[str] = ()) -> bool:
    """Whether ``sentence`` is the definition, in reference documentation, of what a "What is
    X?" / "What does X do?" question asks about: its label names X ("checkpoint_timeout
    (integer)", "classmethod date.today()" for "date.today()" or "today"), or the last word
    of X on the page of the rest ("pop [--index] ..." on git-stash(1) for "git stash pop")."""
    asked = _WHAT_DOES.match(question) or _WHAT_IS.match(question)
    name = _defined_name(sentence)
    if asked is None or name is None:
        return False
    words = [w for w in asked.group(1).lower().split() if w not in ("a", "an", "the")]
    if not words:
        return False
    thing = re.sub(r"\(\)$", "", " ".join(words))
    if name == thing or name.endswith("." + thing) or thing.endswith("." + name):
        return True
    place = " ".join(headings).lower()
    return len(words) > 1 and name == words[-1] and all(w in place for w in words[:-1])


# The relevance the API entry a "how do I …" / "which function …" question asks for gets at
# least (rag/generate/entries.py), as a definition whose label names what "What is X?" asks
ENTRY_RELEVANCE = NAME_LINE_RELEVANCE
# ... when the entry holds at least this share of the question's words besides its action
ENTRY_MIN_SHARE = 0.5
# ... when it scores this share of the best sentence at least (an entry far down the ranking
# is about something else: "Compress.copy() Returns a copy of the compression object" for
# "How do I copy an object?"); so does, with no entry doing it, a sentence mentioning a code
# name that does it
NEAR_TOP_SHARE = 0.6

# A follow-up that refers back is answered from the document the previous answer came from
# at this share of ``min_score`` (in_conversation_place): the relevance model was fitted on
# questions that name their subject, and a sentence answering "Where are they stored?" need
# not repeat the subject the conversation already named.
PLACE_SHARE = 0.25
# How much higher a continuing follow-up ranks the sentences of the document its previous
# answer came from (where_the_conversation_is)
PLACE_PRIOR = 0.1
_MIN_WORDS = MIN_ANSWER_WORDS  # shorter "sentences" (headings, list bullets) rarely answer anything
_MARKERS = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True)
class Candidate:
    n: int  # the passage's number in the context
    position: int  # the sentence's index in its passage
    sentence: str
    relevance: float  # rag.verification.answer_types.relevance: how likely it answers the question
    typed: bool | None  # it has the answer type asked for (None: no type asked)
    score: float  # relevance plus the passage prior: the ranking
    features: RelevanceFeatures  # what relevance weighed (for calibration)
    passage_similarity: float  # the passage's own similarity to the question (the prior)

    def as_tuple(self) -> tuple[float, int, str]:
        return (self.score, self.n, self.sentence)


def _without_headings(sentence: str, headings: set[str]) -> str:
    return without_headings(sentence, headings)


def passage_segments(passage: Passage) -> list[str]:
    """The passage's sentences as :func:`rag.core.sentences.passage_segments` cuts them (ingestion
    stores their vectors: rag.indexing.sentence_vectors)."""
    return segments_of(passage.text)


def candidates(question: str, request: GenerationRequest, scorer: SupportScorer) -> list[Candidate]:
    """Every sentence of the context that could answer, in context order, scored."""
    raw: list[tuple[int, int, str, str]] = []  # (n, position, sentence, passage text)
    segments: dict[int, list[str]] = {}  # each passage's sentences, headings taken off
    headings: dict[int, list[str]] = {}
    sectioned: set[int] = set()  # passages under a section heading below the title
    for passage in request.context.passages:
        if passage.flagged:  # injection.flagged: fence — suspect data is never the answer
            continue
        headings[passage.n] = [h for h in (passage.title or "", *passage.section) if h]
        if sections_below_title(passage.title, passage.section):
            sectioned.add(passage.n)
        known = {h.lower() for h in headings[passage.n]}
        # Attack spans are cut out of the text already (injection.flagged: exclude); a
        # passage that still holds one never gives it as the answer.
        clean = passage.text
        for span in passage.suspect:
            clean = clean.replace(span, " ")
        segments[passage.n] = [_without_headings(x, known) for x in passage_segments(passage)]
        for position, sentence in enumerate(segments[passage.n]):
            if passage.suspect and repeats_suspect(sentence, passage.suspect, clean):
                continue
            if sentence.rstrip().endswith("?"):
                continue  # a question in the documents asks; it never answers one
            if len(sentence.split()) >= _MIN_WORDS:
                raw.append((passage.n, position, sentence, passage.text))
    if not raw:
        return []
    passages = list(dict.fromkeys(text for *_, text in raw))
    vecs = scorer.vectors([question, *(s for _, _, s, _ in raw), *passages])
    # No embedder (1-wide zero vectors): the similarity is unknown.
    sims = vecs[1:] @ vecs[0] if vecs.shape[1] > 1 else np.zeros(len(raw) + len(passages))
    passage_sim = dict(zip(passages, sims[len(raw) :].tolist(), strict=True))
    out = []
    for (n, position, sentence, text), cosine in zip(raw, sims[: len(raw)].tolist(), strict=False):
        features = relevance_features(question, sentence, cosine, headings[n], text, n in sectioned)
        rel = relevance(features)
        if names_what_is_asked(question, sentence):
            rel = max(rel, NAME_LINE_RELEVANCE)
        elif defines_what_is_asked(question, sentence, headings[n]):
            rel = max(rel, NAME_LINE_RELEVANCE)  # a definition's own label names the thing
        typed = None if not (features.type_hit or features.type_miss) else bool(features.type_hit)
        prior = passage_sim[text]
        score = rel + PASSAGE_WEIGHT * prior
        out.append(Candidate(n, position, sentence, rel, typed, score, features, prior))
    return _asked_entry_first(question, out, segments)


def _asked_entry_first(
    question: str, found: list[Candidate], segments: Mapping[int, list[str]]
) -> list[Candidate]:
    """``found`` with the API entry a "how do I …" / "which function …" question asks for
    (rag/generate/entries.py) raised to ``ENTRY_RELEVANCE``: of the entries whose name,
    parameters or description's first words do the question's action, the one holding most
    of its other words (at least ``ENTRY_MIN_SHARE``; a tie goes to the better scored),
    among those scoring ``NEAR_TOP_SHARE`` of the best sentence at least. A
    label long enough to be a sentence of its own is said with its description, which is
    then not said again."""
    action = action_of(question)
    if action is None:
        return found
    entries: list[tuple[int, Entry]] = []
    parameters: set[str] = set()  # of every entry in the context
    top = max((c.score for c in found), default=0.0)
    score = {(c.n, c.position): c.score for c in found}
    for i, c in enumerate(found):
        after = segments.get(c.n, [])[c.position + 1 : c.position + 2]
        entry = parse_entry(c.sentence, after[0] if after else "")
        if entry is None:
            continue
        label = entry_label(c.sentence.partition("\n")[0])
        parameters.update(parameter_names(label[1]) if label else ())
        # a label long enough to be a sentence of its own scores as well as its description
        near_top = max(c.score, score.get((c.n, c.position + 1), 0.0)) >= NEAR_TOP_SHARE * top
        if near_top and entry.description:
            entries.append((i, entry))
    best = best_entries(action, entries, asked_kind(question))
    by_key = dict(entries)
    if not best or (entry_match(action, by_key[best[0]]) or 0.0) < ENTRY_MIN_SHARE:
        return _mention_doing_it(question, action, found, frozenset(parameters))
    i = max(best, key=lambda k: found[k].score)
    c, entry = found[i], by_key[i]
    # a label said alone, without what follows it, is said with its description
    alone = "\n" not in c.sentence and entry.description not in c.sentence
    sentence = f"{c.sentence}\n{entry.description}" if alone else c.sentence
    rel = max(c.relevance, ENTRY_RELEVANCE)
    raised = replace(
        c, sentence=sentence, relevance=rel, score=rel + PASSAGE_WEIGHT * c.passage_similarity
    )
    said_with = (c.n, c.position + 1) if sentence != c.sentence else None
    return [raised if k == i else x for k, x in enumerate(found) if (x.n, x.position) != said_with]


def _mention_doing_it(
    question: str,
    action: tuple[str, list[str]],
    found: list[Candidate],
    parameters: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """No entry in the context does what a "how do I …" question asks: the best scored
    sentence mentioning a code name whose own name does it ("… provides a cache_clear()
    function for clearing …" for "how do I clear an lru_cache") is raised to
    ``ENTRY_RELEVANCE`` when it scores at least ``NEAR_TOP_SHARE`` of the best sentence."""
    if not found:
        return found
    top = max(c.score for c in found)
    doing = [
        i
        for i, c in enumerate(found)
        if c.score >= NEAR_TOP_SHARE * top and names_doing(action, c.sentence, question, parameters)
    ]
    if not doing:
        return found
    i = max(doing, key=lambda k: found[k].score)
    c = found[i]
    rel = max(c.relevance, ENTRY_RELEVANCE)
    raised = replace(c, relevance=rel, score=rel + PASSAGE_WEIGHT * c.passage_similarity)
    return [raised if k == i else x for k, x in enumerate(found)]


def not_said_again(found: list[Candidate], asked: str, said: Sequence[str]) -> list[Candidate]:
    """A follow-up's candidates without the sentences an earlier answer already gave that hold
    none of the follow-up's own words nor the kind of answer it asks for: "What happens when it
    is exceeded?" after "The business tier allows 1,200 requests per minute" asks for something
    new, while "And monthly snapshots?" may well be answered by the sentence that mentioned
    them before, and "And when?" after "Who schedules the postmortem?" by the one that said
    who, and within how many days."""
    if not said:
        return found
    focus = {w[:5] for w in content_words(asked)}
    before = {
        " ".join(content_words(_MARKERS.sub("", s))) for text in said for s in split_sentences(text)
    }

    def repeated(c: Candidate) -> bool:
        words = content_words(c.sentence)
        return (
            " ".join(words) in before and not focus & {w[:5] for w in words} and c.typed is not True
        )

    return [c for c in found if not repeated(c)]


def conversation_sources(
    found: list[Candidate], request: GenerationRequest, said: Sequence[str]
) -> set[str]:
    """The documents of this context the previous answers were drawn from (one of their
    sentences is among ``found``)."""
    before = {_key(s) for text in said for s in split_sentences(text)}
    by_n = {p.n: p for p in request.context.passages}
    return {by_n[c.n].source for c in found if c.n in by_n and _key(c.sentence) in before}


def where_the_conversation_is(
    found: list[Candidate], request: GenerationRequest, follow_up: Mapping[str, Any]
) -> list[Candidate]:
    """A follow-up the rules completed from the conversation (an ellipsis, a pronoun: not a
    complete question, which may change the subject) ranks the sentences of the document its
    previous answer came from ``PLACE_PRIOR`` higher: "And an else clause?" after "When does a
    finally clause run?" answered from the tutorial on errors asks about try's else clause,
    not a loop's. Relevance is unchanged (the bar to say anything is the same)."""
    reason = str(follow_up.get("reason") or "")
    said = [str(text) for text in follow_up.get("said") or ()]
    if not said or not reason.startswith(("ellipsis", "pronoun")):
        return found
    sources = conversation_sources(found, request, said[-1:])
    if not sources:
        return found
    by_n = {p.n: p for p in request.context.passages}
    return [
        replace(c, score=c.score + PLACE_PRIOR)
        if c.n in by_n and by_n[c.n].source in sources
        else c
        for c in found
    ]


def _key(sentence: str) -> str:
    return " ".join(content_words(_MARKERS.sub("", sentence)))


def in_conversation_place(
    found: list[Candidate],
    request: GenerationRequest,
    follow_up: Mapping[str, Any],
    max_sentences: int,
    min_score: float,
) -> list[Candidate]:
    """What a follow-up that found nothing at ``min_score`` is answered with instead: the
    sentences to say (empty: abstain still), chosen by :func:`select` at ``PLACE_SHARE`` of
    ``min_score`` among the sentences (``found``: all of the context's) that

    - stand in a document the previous answer was drawn from (one of its sentences is in
      this context): the place the conversation is at;
    - hold every one of the follow-up's own words as it was asked (light words aside), in
      the sentence or its headings (in their own words: "exceeded" is not "higher" here),
      and there is at least one: "Where are they stored?" asks
      about storing, "Which region is the primary one?" about the primary region. A new
      subject the documents do not name ("Which region is the staging one?") is in no
      sentence;
    - were not said before (:func:`not_said_again`).

    An ellipsis ("And on the free tier?") never comes here: its fragment names a new subject
    and the rest of the question comes from the turn before ("How big can a burst be ..."),
    so a sentence naming only the fragment ("The free tier allows 60 requests per minute")
    would answer something else."""
    asked = str(follow_up.get("asked") or "")
    said = [str(text) for text in follow_up.get("said") or ()]
    if str(follow_up.get("reason") or "").startswith("ellipsis") or not said:
        return []
    words = claim_words(asked)
    if not words:
        return []
    before = {_key(s) for text in said for s in split_sentences(text)}
    by_n = {p.n: p for p in request.context.passages}
    sources = {by_n[c.n].source for c in found if c.n in by_n and _key(c.sentence) in before}
    if not sources:
        return []

    def holds_asked(c: Candidate) -> bool:
        p = by_n[c.n]
        text = " ".join([c.sentence, p.title or "", *p.section])
        return all(says(w, text, synonyms=False) for w in words)

    place = [
        c
        for c in not_said_again(found, asked, said)
        if c.n in by_n and by_n[c.n].source in sources and holds_asked(c)
    ]
    return select(place, max_sentences, min_score * PLACE_SHARE)


def rank_sentences(
    question: str, request: GenerationRequest, scorer: SupportScorer
) -> list[tuple[float, int, str]]:
    """(score, passage number, sentence) for every sentence of the context, best first."""
    return [c.as_tuple() for c in sorted(candidates(question, request, scorer), key=_rank)]


def _rank(c: Candidate) -> float:
    return -c.score


def select(found: list[Candidate], max_sentences: int, min_score: float) -> list[Candidate]:
    """The sentences to say, in the order to say them (empty: abstain)."""
    ranked = sorted(found, key=_rank)
    if not ranked or ranked[0].relevance < min_score:
        return []
    best = ranked[0]
    picked = [best]
    if max_sentences >= 2:
        neighbours = sorted(
            (
                c
                for c in found
                if c.n == best.n
                and abs(c.position - best.position) == 1
                # the answer spans the two: the best lacks the type asked for and this has
                # it, or this one is relevant in its own right
                and ((best.typed is False and c.typed is True) or c.relevance >= min_score)
            ),
            key=_rank,
        )
        if neighbours:
            picked.append(neighbours[0])
    for c in ranked[1:]:
        if len(picked) >= max_sentences:
            break
        if c not in picked and c.relevance >= min_score:
            picked.append(c)
    # One passage's sentences in their own order (a neighbour before the best reads first).
    first_seen = {c.n: i for i, c in reversed(list(enumerate(picked)))}
    return sorted(picked, key=lambda c: (first_seen[c.n], c.position))


class ExtractiveGenerator(Generator):
    name = "extractive"
    uses_llm = False

    def __init__(
        self,
        scorer: SupportScorer,
        max_sentences: int = 2,
        min_score: float = 0.5,
        window: int = 8192,
    ):
        self.scorer = scorer
        self.max_sentences = max_sentences
        self.min_score = min_score
        self._window = window
        self._tokens = TokenCounter(lambda text: text.split())

    @property
    def context_window(self) -> int:
        return self._window

    @property
    def tokens(self) -> TokenCounter:
        return self._tokens

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        found = candidates(request.question, request, self.scorer)
        follow_up = request.extra.get("follow_up")
        kept = found
        if follow_up:
            found = where_the_conversation_is(found, request, follow_up)
            kept = not_said_again(found, follow_up.get("asked", ""), follow_up.get("said", ()))
        picked = select(kept, self.max_sentences, self.min_score)
        if follow_up and not picked:
            picked = in_conversation_place(
                found, request, follow_up, self.max_sentences, self.min_score
            )
        text = ""
        for i, c in enumerate(picked):
            request.check_deadline(self.name)
            body = c.sentence.rstrip()
            end = body[-1] if body and body[-1] in ".!?" else "."
            body = body[:-1] if body and body[-1] in ".!?" else body
            # A sentence that opens with a term, an option or a setting ("-m\n--merge\nWhen
            # switching ...", "blame.showEmail\nShow ...") would read as the previous one's
            # continuation to verification, which checks them as one claim: a paragraph apart
            gap = "" if not i else " " if body[:1].isupper() else "\n\n"
            piece = f"{gap}{body} [{c.n}]{end}"
            text += piece
            yield piece
        yield Usage(0, 0)
