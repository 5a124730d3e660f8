"""The ``verify`` eval: what a capable model writes, checked claim by claim, as the user sees it.

A scripted OpenAI-compatible server (:mod:`evals.chat_server`) stands in for the model on the
production path (``generation.chain: [openai]``): for each case it answers the question with
the case's sentences, citing passages by placeholder (``{cite:PHRASE}``: the passage of this
request that contains PHRASE), and the real query path — retrieval, packing, the openai
backend, verification — decides what the user gets. Kinds of case:

============== ===================================================== ==========================
kind           what the model wrote                                  good outcome
============== ===================================================== ==========================
paraphrase     a faithful rewording of what the passage says         kept whole
synthesis      two true facts (two sentences, a pronoun, or one      kept whole
               sentence citing two passages)
wrong_value    a number, name or negation changed, citing the        not shown
               right passage
appended       a true sentence, then an invented one with the same   the invention not shown
               marker
wrong_passage  a true sentence cited to a passage that does not say  fixed (cites the right
               it                                                    one) or refused
unanswerable   an invented answer to a question the documents do     abstained
               not answer
============== ===================================================== ==========================

Two sets: ``docs`` — hand-written over ``examples/docs`` in the style of a capable model
(``evals/verify_docs.jsonl``, the golden questions and their neighbours); ``squad`` —
generated from SQuAD 2.0 (BEIR layout, passed by path): the gold sentence reworded by rules,
the gold value swapped for another value of the same type from the corpus, an unrelated
sentence appended with the same marker, the gold sentence cited to another passage, and an
invented answer to each unanswerable question. Each set is split in halves (``tune`` /
``held_out``; SQuAD by article): thresholds are tuned on one, figures reported on the other.

Figures per kind and three headline rates: ``good_kept_whole`` (paraphrases and syntheses
shown in full, nothing marked), ``fabricated_shown`` (a wrong value, an appended invention or
an answer to an unanswerable question shown as verified), ``wrong_passage_fixed_or_refused``.
A case whose phrase no retrieved passage held is ``skipped`` (a retrieval miss, not a verdict).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.chat_server import ChatServer
from evals.metrics import average
from rag.core.types import DoneEvent, Query, ResetEvent, TokenEvent

if TYPE_CHECKING:
    from rag.core.config import Settings
    from rag.indexing.index import Index

__all__ = [
    "FABRICATED",
    "GOALS",
    "GOOD",
    "KINDS",
    "VERIFY_KEYS",
    "CaseSentence",
    "VerifyCase",
    "default_docs_cases",
    "judge",
    "load_cases",
    "reword",
    "run_cases",
    "squad_cases",
    "summarize",
    "verify_failures",
]

KINDS = ("paraphrase", "synthesis", "wrong_value", "appended", "wrong_passage", "unanswerable")
GOOD = ("paraphrase", "synthesis")
FABRICATED = ("wrong_value", "appended", "unanswerable")
# The goals, on the held-out half of each set.
GOALS = {
    "good_kept_whole": (">=", 0.95),
    "fabricated_shown": ("<=", 0.03),
    "wrong_passage_fixed_or_refused": (">=", 0.95),
}
UNVERIFIED = "[unverified]"  # generation.verify.unsupported: mark (rag.verification.citations)
# The headline figures a report carries (evals/report.py): ``verify.<key>`` and per set.
VERIFY_KEYS = ("good_kept_whole", "fabricated_shown", "wrong_passage_fixed_or_refused")

_MARKERS = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_SQUAD_ABSTAIN = "The documents don't contain an answer to this."


# -- cases ------------------------------------------------------------------------------------
@dataclass
class CaseSentence:
    """One sentence the model writes: ``say`` (ending in . ! or ?), cited as ``cite`` (the
    passages holding these phrases), ``cite_other`` (a passage *not* holding that phrase) or
    ``cite_top`` (passage 1); ``true``: the documents support it; ``source``: where (corpus
    ids or paths), for checking a citation's fix; ``misattributed``: ``cite`` names a phrase
    of a look-alike passage, not of ``source`` (the sentence a ``wrong_passage`` case judges,
    as is one citing ``cite_other``)."""

    say: str
    cite: list[str] = field(default_factory=list)
    cite_other: str | None = None
    cite_top: bool = False
    true: bool = True
    source: list[str] = field(default_factory=list)
    misattributed: bool = False

    def template(self) -> str:
        body = self.say.rstrip()
        end = body[-1] if body[-1:] in (".", "!", "?") else "."
        body = body[:-1] if body[-1:] in (".", "!", "?") else body
        if self.cite:
            marker = "{cite:" + "|".join(self.cite) + "}"
        elif self.cite_other:
            marker = "{cite_other:" + self.cite_other + "}"
        elif self.cite_top:
            marker = "{top}"
        else:
            return f"{body}{end}"
        return f"{body} {marker}{end}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"say": self.say}
        if self.cite:
            out["cite"] = self.cite
        if self.cite_other:
            out["cite_other"] = self.cite_other
        if self.cite_top:
            out["cite_top"] = True
        if not self.true:
            out["true"] = False
        if self.source:
            out["source"] = self.source
        if self.misattributed:
            out["misattributed"] = True
        return out


@dataclass
class VerifyCase:
    id: str
    set: str  # docs | squad
    half: str  # tune | held_out
    kind: str
    question: str
    sentences: list[CaseSentence]

    def template(self) -> str:
        return " ".join(s.template() for s in self.sentences)


def _sentence(raw: Mapping[str, Any]) -> CaseSentence:
    return CaseSentence(
        say=str(raw["say"]),
        cite=[str(c) for c in raw.get("cite") or []],
        cite_other=raw.get("cite_other"),
        cite_top=bool(raw.get("cite_top")),
        true=bool(raw.get("true", True)),
        source=[str(s) for s in raw.get("source") or []],
        misattributed=bool(raw.get("misattributed")),
    )


def load_cases(path: Path, set_name: str = "docs") -> list[VerifyCase]:
    """Cases from a JSON-lines file (``{"id", "half", "kind", "question", "sentences"}``)."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if raw["kind"] not in KINDS:
            raise ValueError(f"{path}:{lineno}: kind {raw['kind']!r} is not one of {KINDS}")
        out.append(
            VerifyCase(
                id=str(raw["id"]),
                set=set_name,
                half=str(raw.get("half") or "held_out"),
                kind=str(raw["kind"]),
                question=str(raw["question"]),
                sentences=[_sentence(s) for s in raw["sentences"]],
            )
        )
    return out


def default_docs_cases() -> Path:
    """The hand-written set over ``examples/docs``."""
    return Path(__file__).with_name("verify_docs.jsonl")


# -- SQuAD: cases generated by rules ------------------------------------------------------------
# A rewording a model might do: common words for formal ones, fillers dropped. General
# English, not the documents' own words.
_REWORDS: tuple[tuple[str, str], ...] = (
    (r"\bbegan\b", "started"),
    (r"\bbegin\b", "start"),
    (r"\bbegins\b", "starts"),
    (r"\bcommenced\b", "started"),
    (r"\bcompleted\b", "finished"),
    (r"\bconstructed\b", "built"),
    (r"\bestablished\b", "founded"),
    (r"\bpurchased\b", "bought"),
    (r"\bobtained\b", "got"),
    (r"\breceived\b", "got"),
    (r"\battempted\b", "tried"),
    (r"\butilized\b", "used"),
    (r"\butilised\b", "used"),
    (r"\bdemonstrated\b", "showed"),
    (r"\bassisted\b", "helped"),
    (r"\brequested\b", "asked for"),
    (r"\bnumerous\b", "many"),
    (r"\bapproximately\b", "about"),
    (r"\bsufficient\b", "enough"),
    (r"\bindividuals\b", "people"),
    (r"\bprior to\b", "before"),
    (r"\bin order to\b", "to"),
    (r"\bdue to\b", "because of"),
    (r"\bwhilst\b", "while"),
    (r"\balthough\b", "though"),
    (r"\btherefore\b", "so"),
    (r"\bknown as\b", "called"),
    (r"\breferred to as\b", "called"),
    (r"\bresides\b", "lives"),
    (r"\bresided\b", "lived"),
    (r"\bpossesses\b", "has"),
    (r"\bpossessed\b", "had"),
    (r"\bcontains\b", "holds"),
    (r"\bcontained\b", "held"),
    (r"\bstated\b", "said"),
    (r"\bproduced\b", "made"),
    (r"\bcreated\b", "made"),
    (r"\bselected\b", "chosen"),
    (r"\bthe majority of\b", "most of"),
    (r"\bin addition,?\s*", ""),
    (r"\badditionally,?\s*", ""),
    (r"\bhowever,\s*", ""),
    (r"\bfurthermore,\s*", ""),
    (r"\bmoreover,\s*", ""),
    (r"\balso\s+", ""),
    (
        r"^(?:similarly|thus|hence|indeed|consequently|in fact|as a result|nevertheless|"
        r"nonetheless|instead|accordingly),\s*",
        "",
    ),
    (r"\bwhich was\b", "that was"),
    (r"\bit is\b", "it's"),
    (r"\bdid not\b", "didn't"),
    (r"\bdoes not\b", "doesn't"),
    (r"\bwas not\b", "wasn't"),
    (r"\bis not\b", "isn't"),
)
_SMALL = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
_LEADING_PHRASE = re.compile(
    r"^(?P<lead>(?:In|By|During|After|Before|Since|From|On|At|Under|Following)\s[^,]{3,60}),\s+"
    r"(?P<rest>[a-z]?.+?)(?P<end>[.!?])?$"
)


def reword(sentence: str, keep: str) -> str:
    """``sentence`` reworded by rules (parentheses dropped, formal words swapped for common
    ones, a leading "In 1850, ..." moved to the end), never touching ``keep``."""
    guard = "\x00KEEP\x00"
    text = sentence.replace(keep, guard) if keep else sentence
    text = re.sub(r"\s*\([^()]*\)", lambda m: m.group(0) if guard in m.group(0) else "", text)
    for pattern, new in _REWORDS:

        def swap(m: re.Match[str], new: str = new) -> str:
            if not new:
                return ""
            return new[0].upper() + new[1:] if m.group(0)[0].isupper() else new

        text = re.sub(pattern, swap, text, flags=re.IGNORECASE)
    # small numbers in words ("4 hours" -> "four hours"), as a model writes them
    text = re.sub(
        r"(?<![\w.,])([2-9])(?=\s+[a-z])",
        lambda m: _SMALL[int(m.group(1)) - 2],
        text,
    )
    m = _LEADING_PHRASE.match(text.strip())
    if m and len(m.group("rest").split()) >= 4:
        rest = m.group("rest")
        lead = m.group("lead")
        first = rest.split()[0]
        if not (first.isupper() or (len(first) > 1 and first[1:].islower() and first[0].isupper())):
            rest = rest[0].upper() + rest[1:]
        elif first[0].isupper() and first.lower() in ("the", "a", "an", "it", "this", "they"):
            pass
        lead = lead[0].lower() + lead[1:]
        text = f"{rest[0].upper()}{rest[1:]} {lead}{m.group('end') or '.'}"
    text = re.sub(r"\s{2,}", " ", text).strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?":
        text += "."
    return text.replace(guard, keep) if keep else text


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _value_type(answer: str) -> str | None:
    """What kind of value a gold answer is (None: no value — a phrase, not a number or name)."""
    a = answer.strip()
    if re.fullmatch(r"(?:1[0-9]|20)\d\d", a):
        return "year"
    if re.search(
        r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|"
        r"thirty|forty|fifty|hundred|thousand|million)\b",
        a,
        re.IGNORECASE,
    ):
        return "number"
    words = a.split()
    if words and all(w[:1].isupper() for w in words if w.lower() not in ("of", "the", "de", "and")):
        return "name"
    return None


def _window(sentence: str, answer: str, words: int = 3) -> str:
    """A phrase of ``sentence`` around ``answer`` (up to ``words`` words either side, cut
    from the sentence as written): what finds the gold passage in a context."""
    at = sentence.find(answer)
    before = list(re.finditer(r"\S+", sentence[:at]))[-words:]
    after = list(re.finditer(r"\S+", sentence[at + len(answer) :]))[:words]
    start = before[0].start() if before else at
    end = at + len(answer) + (after[-1].end() if after else 0)
    return sentence[start:end].strip()


def _pronoun_start(first: str, second: str) -> str:
    """``second`` with its opening noun phrase replaced by a pronoun when ``first`` already
    named it ("The tower ... . The tower is ..." -> "It is ...")."""
    m = re.match(
        r"^(The|This|These|Its|His|Her|Their)\s+((?:[\w-]+\s+){0,2}?[\w-]+)\s+(is|was|are|were|has|had)\b",
        second,
    )
    if not m or m.group(2).lower() not in first.lower():
        return second
    plural = m.group(3) in ("are", "were") or m.group(2).endswith("s")
    pronoun = "They" if plural else "It"
    return f"{pronoun} {second[m.start(3) :]}"


def _half_of(qid: str) -> str:
    """An unanswerable question's half (it has no article): by its id."""
    try:
        bit = int(qid[:8], 16) % 2  # SQuAD's ids are hexadecimal
    except ValueError:
        bit = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16) % 2
    return "tune" if bit == 0 else "held_out"


_WH_TYPE = (
    (re.compile(r"^(?:when|what year|in what year|in which year)\b", re.IGNORECASE), "year"),
    (re.compile(r"^(?:who|whom|whose)\b", re.IGNORECASE), "name"),
    (re.compile(r"^how (?:many|much|long|far|old|large|big)\b", re.IGNORECASE), "number"),
)


def _invent(question: str, by_type: Mapping[str, list[tuple[str, str]]], rng: random.Random) -> str:
    """A confident answer to ``question`` with a value the documents never gave it: the
    question restated, the value where its wh-word was ("Who patented ...?" -> "James Smith
    patented ...")."""
    q = question.strip().rstrip("?").strip()
    kind = next((k for pattern, k in _WH_TYPE if pattern.search(q)), None)
    pool = by_type.get(kind or rng.choice(("year", "number", "name"))) or [("", "1850")]
    value = rng.choice(pool)[1]
    m = re.match(r"^(?:who|what|which)\s+(?=[a-z]+(?:ed|s)\b)", q, re.IGNORECASE)
    if m:  # "Who patented a steam engine in 1883" -> "<name> patented a steam engine in 1883"
        return f"{value} {q[m.end() :]}."
    m = re.match(r"^when\s+(?:did|was|were|is|are|does|do)\s+(.+)$", q, re.IGNORECASE)
    if m:  # "When did Edward return" -> "Edward return happened in 1097"
        return f"That was in {value}: {m.group(1)}."
    m = re.match(r"^how\s+(?:many|much)\s+(.+)$", q, re.IGNORECASE)
    if m:
        return f"There were {value} {m.group(1)}."
    return f"{q[0].upper()}{q[1:]}: {value}."


def squad_cases(root: Path, seed: int = 13, limit: int | None = None) -> list[VerifyCase]:
    """Cases generated from a SQuAD 2.0 folder (BEIR layout with ``answers.jsonl``): per
    answerable question a paraphrase, a synthesis (the gold sentence and its neighbour), a
    wrong value (when the gold answer is a value: a year, number or name), an appended
    invention and a wrong passage; per unanswerable question an invented answer. Halves by
    article (sorted, alternating)."""
    from rag.verification.citations import split_sentences

    rng = random.Random(seed)
    corpus = {r["_id"]: r["text"] for r in _read_jsonl(root / "corpus.jsonl")}
    queries = {r["_id"]: r["text"] for r in _read_jsonl(root / "queries.jsonl")}
    keys = {r["_id"]: r for r in _read_jsonl(root / "answers.jsonl")}
    gold: dict[str, str] = {}
    for line in (root / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, pid, score = line.split("\t")
        if int(score) > 0:
            gold[qid] = pid

    def article(pid: str) -> str:
        return pid.rsplit("-", 1)[0]

    articles = sorted({article(p) for p in corpus})
    tune = set(articles[::2])
    by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)  # type -> (article, value)
    for qid, key in keys.items():
        if key.get("answerable") and key.get("answers") and qid in gold:
            kind = _value_type(min(key["answers"], key=len))
            if kind:
                by_type[kind].append((article(gold[qid]), min(key["answers"], key=len)))
    sentences_of = {pid: split_sentences(text) for pid, text in corpus.items()}
    unrelated = [
        (article(pid), s)
        for pid, sents in sorted(sentences_of.items())
        for s in sents
        if 8 <= len(s.split()) <= 30
        and s[-1:] in ".!?"
        and s[:1].isupper()
        and not re.search(r"[()\[\]{}|]", s)
    ]
    cases: list[VerifyCase] = []
    for qid in sorted(queries):
        answer_key = keys.get(qid)
        if answer_key is None:
            continue
        question = queries[qid]
        if not answer_key.get("answerable"):
            invented = _invent(question, by_type, rng)
            cases.append(
                VerifyCase(
                    f"squad-unanswerable-{qid}",
                    "squad",
                    _half_of(qid),
                    "unanswerable",
                    question,
                    [CaseSentence(invented, cite_top=True, true=False)],
                )
            )
            continue
        gold_pid = gold.get(qid)
        if gold_pid is None or not answer_key.get("answers"):
            continue
        pid = gold_pid
        paragraph = corpus[pid]
        answer = next((a for a in sorted(answer_key["answers"], key=len) if a in paragraph), None)
        sents = sentences_of[pid]
        at = next((i for i, s in enumerate(sents) if answer and answer in s), None)
        if answer is None or at is None or len(sents[at].split()) > 60:
            continue
        sentence = sents[at]
        phrase = _window(sentence, answer)
        if re.search(r"[{}|]", phrase):
            continue  # placeholders cannot carry it
        half = "tune" if article(pid) in tune else "held_out"
        src = [pid]

        def make(
            kind: str, *parts: CaseSentence, qid: str = qid, half: str = half, asked: str = question
        ) -> None:
            cases.append(VerifyCase(f"squad-{kind}-{qid}", "squad", half, kind, asked, list(parts)))

        reworded = reword(sentence, answer)
        if _norm(reworded) != _norm(sentence):  # the rules found something to reword
            make("paraphrase", CaseSentence(reworded, [phrase], source=src))
        neighbour = at + 1 if at + 1 < len(sents) else at - 1
        if 0 <= neighbour < len(sents) and neighbour != at and len(sents[neighbour].split()) <= 60:
            other = sents[neighbour]
            other_phrase = re.sub(r"[{}|].*", "", " ".join(other.split()[:6])).strip()
            first, second = (sentence, other) if neighbour > at else (other, sentence)
            second_said = _pronoun_start(first, second) if neighbour > at else second
            pair = [
                CaseSentence(
                    reword(first, answer if first is sentence else ""),
                    [phrase if first is sentence else other_phrase],
                    source=src,
                ),
                CaseSentence(
                    reword(second_said, answer if second is sentence else ""),
                    [phrase if second is sentence else other_phrase],
                    source=src,
                ),
            ]
            make("synthesis", *pair)
        value_type = _value_type(answer)
        if value_type:
            candidates = [
                v
                for a, v in by_type[value_type]
                if v.lower() not in paragraph.lower()
                and answer.lower() not in v.lower()
                and v.lower() not in answer.lower()
            ]
            if candidates:
                wrong = rng.choice(candidates)
                make(
                    "wrong_value",
                    CaseSentence(sentence.replace(answer, wrong, 1), [phrase], true=False),
                )
        # from another article: about something else altogether
        extra = rng.choice([s for a, s in unrelated if a != article(pid)])
        make(
            "appended",
            CaseSentence(sentence, [phrase], source=src),
            CaseSentence(extra, [phrase], true=False),
        )
        make("wrong_passage", CaseSentence(sentence, cite_other=phrase, source=src))
    if limit is not None:
        # evenly over the kinds: the first `limit` of each
        seen: Counter[str] = Counter()
        kept = []
        for c in cases:
            if seen[c.kind] < limit:
                kept.append(c)
                seen[c.kind] += 1
        cases = kept
    return cases


# -- judging ----------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _sentences_of(answer: str) -> list[tuple[str, list[int], bool]]:
    """(text, citation numbers, marked unverified) of each sentence of a shown answer."""
    from rag.verification.citations import split_sentences

    out = []
    for raw in split_sentences(answer):
        marked = UNVERIFIED in raw
        numbers = [int(n) for m in _MARKERS.finditer(raw) for n in re.findall(r"\d+", m.group(0))]
        text = _MARKERS.sub("", raw.replace(UNVERIFIED, ""))
        out.append((text, numbers, marked))
    return out


def _shown(
    sentence: CaseSentence, shown: list[tuple[str, list[int], bool]], flagged: set[str]
) -> tuple[str, list[int]]:
    """How the answer shows ``sentence``: ``verified``, ``marked`` (visibly marked
    unverified), ``unmarked`` (shown, though verification listed it as unsupported: the user
    cannot tell) or ``absent``; and its citation numbers."""
    want = _norm(sentence.say)
    state, cited = "absent", list[int]()
    for text, numbers, is_marked in shown:
        said = _norm(text)
        if not said or not (want in said or (said in want and len(said) > 0.8 * len(want))):
            continue
        if is_marked:
            state = "marked" if state == "absent" else state
        elif said in flagged or want in flagged:
            state = "unmarked"
        else:
            return "verified", numbers
    return state, cited


def judge(
    case: VerifyCase, answer: Mapping[str, Any], to_doc: Callable[[str], str] = lambda s: s
) -> dict[str, Any]:
    """What the user got for ``case``: the verdict and the figures it adds to."""
    text = str(answer.get("answer") or "")
    abstained = bool(answer.get("abstained"))
    shown = [] if abstained else _sentences_of(text)
    citations = {
        int(c["n"]): to_doc(str(c.get("source", ""))) for c in answer.get("citations") or []
    }
    flagged = {_norm(t) for t in answer.get("unsupported") or []}
    per = [_shown(s, shown, flagged) for s in case.sentences]
    out: dict[str, Any] = {"id": case.id, "kind": case.kind, "abstained": abstained}
    if case.kind in GOOD:
        whole = not abstained and all(state == "verified" for state, _ in per)
        out["verdict"] = "kept_whole" if whole else ("refused" if abstained else "partly")
        out["cited_right"] = whole and all(
            not s.source or (bool(cited) and all(citations.get(n) in s.source for n in cited))
            for s, (_, cited) in zip(case.sentences, per, strict=True)
        )
    elif case.kind in FABRICATED:
        false = [state for s, (state, _) in zip(case.sentences, per, strict=True) if not s.true]
        if any(state in ("verified", "unmarked") for state in false):
            out["verdict"] = "shown"  # the user reads it as part of a verified answer
        elif "marked" in false:
            out["verdict"] = "marked"
        else:
            out["verdict"] = "stopped"
        true = [state for s, (state, _) in zip(case.sentences, per, strict=True) if s.true]
        if true:
            out["true_part_kept"] = all(state == "verified" for state in true)
    else:  # wrong_passage: the sentence cited to the wrong passage (else the first)
        at = next((i for i, s in enumerate(case.sentences) if s.cite_other or s.misattributed), 0)
        state, cited = per[at]
        source = case.sentences[at].source
        if state == "verified":
            fixed = bool(cited) and all(citations.get(n) in source for n in cited)
            out["verdict"] = "fixed" if fixed else "wrong_citation"
        elif state == "unmarked":
            out["verdict"] = "shown_uncited"
        else:
            out["verdict"] = "marked" if state == "marked" else "refused"
    return out


# -- running ------------------------------------------------------------------------------------
AnswerFunction = Callable[[str], Mapping[str, Any]]


def pipeline_answerer(
    index: Index, settings: Settings, base_url: str, stream: bool = False
) -> tuple[AnswerFunction, Callable[[], None]]:
    """The production path over ``index`` with the openai backend at ``base_url``: (answer
    a question, close). ``stream``: the answer is what the stream showed (and must equal the
    final answer: the stream *is* the answer)."""
    from rag.query.pipeline import QueryPipeline

    s = settings.model_copy(deep=True)
    s.cache.enabled = False
    s.generation.chain = ["openai"]
    s.generation.openai.base_url = base_url
    s.generation.openai.max_retries = 0
    s.evals.after_sync = False
    # The scripted model cites passages by their words: it must read them as written, not
    # pseudonymised (rag.guards.pii.outbound), or a phrase holding a name would find none.
    s.pii.enabled = False
    pipeline = QueryPipeline(index, s)
    pipeline.warm_up()

    def ask(question: str) -> Mapping[str, Any]:
        if not stream:
            return pipeline.run(Query(question)).as_json()
        shown: list[str] = []
        done = None
        for event in pipeline.stream(Query(question)):
            if isinstance(event, ResetEvent):
                shown.clear()
            elif isinstance(event, TokenEvent):
                shown.append(event.text)
            elif isinstance(event, DoneEvent):
                done = event.answer.as_json()
        assert done is not None, "the stream ended without a done event"
        # what the user read is what the stream showed
        return {**done, "answer": "".join(shown), "final_answer": done["answer"]}

    return ask, pipeline.close


def run_cases(
    cases: Sequence[VerifyCase],
    ask: AnswerFunction,
    server: ChatServer,
    to_doc: Callable[[str], str] = lambda s: s,
    progress: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_context: bool = False,
) -> list[dict[str, Any]]:
    """Each case through ``ask`` with ``server`` answering from its template.
    ``keep_context``: each row keeps the passages the model was sent (to replay offline)."""
    out = []
    for i, case in enumerate(cases, start=1):
        if should_stop is not None and should_stop():
            break
        server.reply = case.template()
        server.respond = None
        before = len(server.unresolved)
        t0 = time.perf_counter()
        answer = ask(case.question)
        elapsed = (time.perf_counter() - t0) * 1000.0
        missed = server.unresolved[before:]
        sent = server.last
        row = judge(case, answer, to_doc)
        row.update(
            set=case.set,
            half=case.half,
            question=case.question,
            model_wrote=None,
            latency_ms=round(elapsed, 3),
            verify_ms=float((answer.get("timings_ms") or {}).get("verify") or 0.0),
        )
        if sent is not None and server.requests:
            from evals.chat_server import resolve

            row["model_wrote"] = resolve(case.template(), sent)
            if keep_context:
                row["context"] = {str(n): text for n, text in sent.passages.items()}
        row["user_got"] = str(answer.get("answer") or "")
        row["unsupported"] = list(answer.get("unsupported") or [])
        if "final_answer" in answer and answer["final_answer"] != answer["answer"]:
            row["stream_mismatch"] = True
        if missed or sent is None:
            row["verdict"] = "skipped"
            row["missing_phrases"] = missed
        out.append(row)
        if progress:
            progress("cases", i, len(cases))
    return out


def _rate(
    rows: Iterable[dict[str, Any]], good: Callable[[dict[str, Any]], bool]
) -> tuple[float | None, int]:
    rows = list(rows)
    if not rows:
        return None, 0
    return round(sum(1 for r in rows if good(r)) / len(rows), 4), len(rows)


def summarize(rows: Sequence[dict[str, Any]], half: str | None = "held_out") -> dict[str, Any]:
    """Figures of one half (None: all rows): per kind, the headline rates and the goals."""
    chosen = [r for r in rows if (half is None or r["half"] == half)]
    judged = [r for r in chosen if r["verdict"] != "skipped"]
    per_kind: dict[str, Any] = {}
    for kind in KINDS:
        these = [r for r in judged if r["kind"] == kind]
        verdicts = Counter(r["verdict"] for r in these)
        entry: dict[str, Any] = {
            "cases": len(these),
            "skipped": sum(1 for r in chosen if r["kind"] == kind and r["verdict"] == "skipped"),
            "verdicts": dict(sorted(verdicts.items())),
        }
        if kind in GOOD:
            entry["kept_whole"] = _rate(these, lambda r: r["verdict"] == "kept_whole")[0]
        elif kind in FABRICATED:
            entry["shown"] = _rate(these, lambda r: r["verdict"] == "shown")[0]
            if kind == "appended":
                entry["true_part_kept"] = _rate(these, lambda r: bool(r.get("true_part_kept")))[0]
        else:
            entry["fixed_or_refused"] = _rate(
                these, lambda r: r["verdict"] in ("fixed", "refused", "marked")
            )[0]
            entry["fixed"] = _rate(these, lambda r: r["verdict"] == "fixed")[0]
        per_kind[kind] = entry
    good, n_good = _rate(
        (r for r in judged if r["kind"] in GOOD), lambda r: r["verdict"] == "kept_whole"
    )
    fab, n_fab = _rate(
        (r for r in judged if r["kind"] in FABRICATED), lambda r: r["verdict"] == "shown"
    )
    wp, n_wp = _rate(
        (r for r in judged if r["kind"] == "wrong_passage"),
        lambda r: r["verdict"] in ("fixed", "refused", "marked"),
    )
    metrics = {
        "good_kept_whole": good,
        "fabricated_shown": fab,
        "wrong_passage_fixed_or_refused": wp,
    }
    goals = []
    for name, (op, target) in GOALS.items():
        value = metrics[name]
        met = value is not None and (value >= target if op == ">=" else value <= target)
        goals.append({"name": name, "target": f"{op} {target}", "value": value, "met": met})
    verify_ms = [r["verify_ms"] for r in judged if r.get("verify_ms")]
    return {
        "half": half or "all",
        "cases": len(judged),
        "skipped": len(chosen) - len(judged),
        "counts": {"good": n_good, "fabricated": n_fab, "wrong_passage": n_wp},
        **metrics,
        "per_kind": per_kind,
        "goals": goals,
        "goals_met": all(g["met"] for g in goals),
        "stream_mismatches": sum(1 for r in judged if r.get("stream_mismatch")),
        "verify_ms_p50": round(sorted(verify_ms)[len(verify_ms) // 2], 3) if verify_ms else None,
        "verify_ms_mean": round(average(verify_ms), 3) if verify_ms else None,
    }


def failed(row: Mapping[str, Any]) -> bool:
    """The user did not get what they should have: a good answer not kept whole, a
    fabricated claim shown, a wrong citation left standing."""
    verdict = row.get("verdict")
    if row["kind"] in GOOD:
        return verdict not in ("kept_whole", "skipped")
    if row["kind"] in FABRICATED:
        return verdict == "shown"
    return verdict in ("wrong_citation", "shown_uncited")


def verify_failures(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The failed cases as a report lists them (worst first: fabrications shown first)."""
    order = {"wrong_value": 0, "appended": 1, "unanswerable": 2, "wrong_passage": 3}
    out = [
        {
            k: r.get(k)
            for k in ("id", "set", "half", "kind", "question", "model_wrote", "user_got", "verdict")
        }
        for r in rows
        if failed(r)
    ]
    return sorted(out, key=lambda r: order.get(str(r["kind"]), 4))


def examples(
    rows: Sequence[dict[str, Any]], half: str | None = "held_out"
) -> dict[str, dict[str, Any]]:
    """One case of each kind as the user saw it (the first of the half)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if (
            (half is None or r["half"] == half)
            and r["verdict"] != "skipped"
            and r["kind"] not in out
        ):
            out[r["kind"]] = {
                k: r.get(k)
                for k in ("id", "question", "model_wrote", "user_got", "verdict", "unsupported")
            }
    return out


def _docs_dataset(folder: Path) -> Any:
    from evals.datasets import Dataset

    return Dataset(
        name="verify-docs", split="verify", queries={}, qrels={}, root=folder, docs=folder
    )


def run_set(
    settings: Settings,
    embedder: Any,
    cases: Sequence[VerifyCase],
    dataset: Any,
    stream: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    echo: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_context: bool = False,
) -> list[dict[str, Any]]:
    """``cases`` against an isolated index of ``dataset``'s corpus, the scripted server
    answering for the model."""
    from evals.datasets import open_dataset_index

    dsi = open_dataset_index(settings, dataset, embedder, echo=echo)
    try:
        with ChatServer() as server:
            ask, close = pipeline_answerer(dsi.index, dsi.index.settings, server.base_url, stream)
            try:
                return run_cases(
                    cases, ask, server, dsi.to_doc, progress, should_stop, keep_context
                )
            finally:
                close()
    finally:
        dsi.close()


def run_verify_live(
    index: Index,
    cases_path: Path | None = None,
    half: str | None = "held_out",
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The hand-written set against the live index (which holds its documents): what the
    default suite reports after a sync."""
    started = time.perf_counter()
    path = cases_path or default_docs_cases()
    cases = [c for c in load_cases(path, "docs") if half is None or c.half == half]
    with ChatServer() as server:
        ask, close = pipeline_answerer(index, index.settings, server.base_url)
        try:
            rows = run_cases(cases, ask, server, should_stop=should_stop)
        finally:
            close()
    figures = summarize(rows, half)
    return {
        "kind": "verify",
        "half": half or "all",
        "door": "run",
        "dataset": {"name": path.stem, "path": str(path), "content_hash": _file_hash(path)},
        "sets": {"docs": figures},
        **{k: figures[k] for k in _HEADLINE},
        "examples": examples(rows, half),
        "seconds": round(time.perf_counter() - started, 3),
        "per_case": rows,
    }


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


_HEADLINE = (
    *VERIFY_KEYS,
    "verify_ms_p50",
    "goals",
    "goals_met",
    "cases",
    "skipped",
    "stream_mismatches",
)


def run_verify(
    settings: Settings,
    embedder: Any,
    docs: Path | None = None,
    cases_path: Path | None = None,
    squad: Path | None = None,
    squad_limit: int | None = None,
    stream: bool = False,
    half: str | None = "held_out",
    progress: Callable[[str, int, int], None] | None = None,
    echo: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_context: bool = False,
) -> dict[str, Any]:
    """The ``verify`` suite: the hand-written set over ``docs`` (``examples/docs`` by
    default) and, given ``squad``, the generated SQuAD set; figures for ``half``."""
    from evals.datasets import load_beir

    started = time.perf_counter()
    sets: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    if docs is not None:
        cases = load_cases(cases_path or default_docs_cases(), "docs")
        if half is not None:
            cases = [c for c in cases if c.half == half]
        got = run_set(
            settings,
            embedder,
            cases,
            _docs_dataset(docs),
            stream,
            progress,
            echo,
            should_stop,
            keep_context,
        )
        sets["docs"] = summarize(got, half)
        rows += got
    if squad is not None:
        cases = squad_cases(squad, limit=squad_limit)
        if half is not None:
            cases = [c for c in cases if c.half == half]
        got = run_set(
            settings,
            embedder,
            cases,
            load_beir(squad, "test"),
            stream,
            progress,
            echo,
            should_stop,
            keep_context,
        )
        sets["squad"] = summarize(got, half)
        rows += got
    both = summarize(rows, half)
    material = (cases_path or default_docs_cases()).read_bytes() if docs is not None else b""
    if squad is not None:
        material += f"squad:{squad.resolve()}:{squad_limit}".encode()
    return {
        "kind": "verify",
        "dataset": {
            "name": "verify",
            "docs": str(docs) if docs else None,
            "squad": str(squad) if squad else None,
            "content_hash": hashlib.sha256(material).hexdigest()[:16],
        },
        "half": half or "all",
        "door": "stream" if stream else "run",
        "sets": sets,
        **{k: both[k] for k in _HEADLINE},
        "examples": examples(rows, half),
        "seconds": round(time.perf_counter() - started, 3),
        "per_case": rows,
    }
