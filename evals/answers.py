"""Answer eval: the full query path per question, scored against gold answers and gold documents.

The query path is ``rag.query.pipeline.QueryPipeline(index, settings).run(Query(question))``, whose
:class:`rag.core.types.Answer` in its JSON form carries ``answer``, ``abstained``, ``citations``
(``source``, ``verified``, …), ``usage`` (``prompt_tokens``, ``completion_tokens``) and
``timings_ms``. The eval takes any callable from a question to that JSON object.

Measures (each over the questions it applies to):
- ``answer_contains_gold``: answerable questions whose answer contains a gold string
  (SQuAD normalisation: lower case, no punctuation, no articles, single spaces);
- ``answer_contains_gold_code_aware``: the same with punctuation a word break on both sides
  (:func:`normalize_code_aware`), so that "csv.DictReader(f)" contains "DictReader": SQuAD's
  normalisation glues code names into one word ("csvdictreaderf");
- ``gold_cited``: answerable questions with judged documents where one of them is cited;
- ``citation_precision``: share of all returned citations marked ``verified``;
- ``abstention_rate_unanswerable`` and ``false_abstention_rate_answerable``.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evals.datasets import AnswerKey
from evals.metrics import average
from evals.retrieval import latency_summary
from rag.core.types import Query, Turn

if TYPE_CHECKING:
    from rag.core.config import Settings
    from rag.indexing.index import Index

__all__ = [
    "PipelineRunner",
    "contains_gold",
    "contains_gold_code_aware",
    "evaluate_answers",
    "normalize_answer",
    "normalize_code_aware",
    "pipeline_runner",
]

QueryRunner = Callable[[str], Mapping[str, Any]]
Progress = Callable[[str, int, int], None]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_PUNCT_AS_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def normalize_code_aware(text: str) -> str:
    """SQuAD's normalisation with punctuation a word break instead of removed: "csv.DictReader(f)"
    is "csv dictreader f", not "csvdictreaderf", so a code name inside a call or a dotted path
    is still a word."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT_AS_SPACE)).split())


def _contains(answer: str, gold: list[str], normalize: Callable[[str], str]) -> bool:
    norm = f" {normalize(answer)} "
    # Whole-word containment: gold "1685" must not match inside "16850".
    return any(g and f" {g} " in norm for g in (normalize(x) for x in gold))


def contains_gold(answer: str, gold: list[str]) -> bool:
    """A gold string is in the answer, both SQuAD-normalised (the ``right`` figure)."""
    return _contains(answer, gold, normalize_answer)


def contains_gold_code_aware(answer: str, gold: list[str]) -> bool:
    """A gold string is in the answer, both normalised with punctuation a word break."""
    return _contains(answer, gold, normalize_code_aware)


class PipelineRunner:
    """The real query path over one index, as a ``QueryRunner``; ``close()`` frees its generators."""

    def __init__(self, index: Index, settings: Settings, prompt: str | None = None):
        from rag.query.pipeline import QueryPipeline

        # ``prompt``: every question asked with this prompt (``answer@v4``: a release's
        # candidate evaluated beside the live version); None: the version that would serve.
        self.prompt = prompt
        # Every question answered by the pipeline as it is now: none served by the answer cache.
        settings = settings.model_copy(deep=True)
        settings.cache.enabled = False
        self.pipeline = QueryPipeline(index, settings)
        # Models load now, not inside the first question's latency.
        self.pipeline.warm_up()

    def __call__(self, question: str, history: Sequence[Turn] = ()) -> Mapping[str, Any]:
        """The answer to ``question``; ``history``: the conversation before it (follow-ups)."""
        query = Query(question, history=tuple(history), prompt=self.prompt)
        return self.pipeline.run(query).as_json()

    def close(self) -> None:
        self.pipeline.close()


def pipeline_runner(index: Index, settings: Settings, prompt: str | None = None) -> PipelineRunner:
    """The real query path over ``index`` (with ``prompt`` when given: ``answer@v4``); its
    models are loaded before this returns."""
    return PipelineRunner(index, settings, prompt)


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 6) if flags else None


def evaluate_answers(
    run: QueryRunner,
    queries: Mapping[str, str],
    answers: Mapping[str, AnswerKey],
    qrels: Mapping[str, Mapping[str, int]],
    to_doc: Callable[[str], str] = lambda source: source,
    limit: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run every question that has an answer key (first ``limit`` of them) and score the results."""
    ids = [qid for qid in queries if qid in answers]
    if limit is not None:
        ids = ids[:limit]
    per_query: list[dict[str, Any]] = []
    latencies: list[float] = []
    prompt_tokens: list[int] = []
    completion_tokens: list[int] = []
    stage_ms: dict[str, list[float]] = {}
    citations_total = 0
    citations_verified = 0
    errors: list[dict[str, str]] = []
    started = time.perf_counter()
    for i, qid in enumerate(ids, start=1):
        if should_stop is not None and should_stop():
            break
        key = answers[qid]
        question = queries[qid]
        t0 = time.perf_counter()
        try:
            result = run(question)
        except Exception as exc:  # noqa: BLE001 - one failing question must not hide the others' scores
            errors.append({"id": qid, "error": f"{type(exc).__name__}: {exc}"})
            continue
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        latencies.append(elapsed_ms)
        answer = str(result.get("answer") or "")
        abstained = bool(result.get("abstained"))
        citations = list(result.get("citations") or [])
        cited_docs = [to_doc(str(c.get("source", ""))) for c in citations]
        verified = [bool(c.get("verified")) for c in citations]
        citations_total += len(citations)
        citations_verified += sum(verified)
        usage = result.get("usage") or {}
        prompt_tokens.append(int(usage.get("prompt_tokens") or 0))
        completion_tokens.append(int(usage.get("completion_tokens") or 0))
        for stage, ms in (result.get("timings_ms") or {}).items():
            if isinstance(ms, (int, float)):
                stage_ms.setdefault(str(stage), []).append(float(ms))
        gold_docs = sorted(d for d, g in qrels.get(qid, {}).items() if g > 0)
        per_query.append(
            {
                "id": qid,
                "question": question,
                "answerable": key.answerable,
                "gold_answers": key.answers,
                "gold_docs": gold_docs,
                "answer": answer[:1000],
                "abstained": abstained,
                "contains_gold": contains_gold(answer, key.answers)
                if key.answerable and key.answers
                else None,
                "contains_gold_code_aware": contains_gold_code_aware(answer, key.answers)
                if key.answerable and key.answers
                else None,
                "gold_cited": bool(set(gold_docs) & set(cited_docs))
                if key.answerable and gold_docs
                else None,
                "cited": cited_docs,
                "verified": verified,
                "latency_ms": round(elapsed_ms, 3),
            }
        )
        if progress:
            progress("questions", i, len(ids))
    answerable = [q for q in per_query if q["answerable"]]
    unanswerable = [q for q in per_query if not q["answerable"]]
    return {
        "answer_contains_gold": _rate(
            [q["contains_gold"] for q in answerable if q["contains_gold"] is not None]
        ),
        "answer_contains_gold_code_aware": _rate(
            [
                q["contains_gold_code_aware"]
                for q in answerable
                if q["contains_gold_code_aware"] is not None
            ]
        ),
        "gold_cited": _rate([q["gold_cited"] for q in answerable if q["gold_cited"] is not None]),
        "citation_precision": round(citations_verified / citations_total, 6)
        if citations_total
        else None,
        "abstention_rate_unanswerable": _rate([q["abstained"] for q in unanswerable]),
        "false_abstention_rate_answerable": _rate([q["abstained"] for q in answerable]),
        "questions": len(per_query),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "citations": citations_total,
        "errors": errors,
        "latency_ms": latency_summary(latencies),
        "tokens_per_question": {
            "prompt": round(average(prompt_tokens), 2),
            "completion": round(average(completion_tokens), 2),
            "total": round(
                average(p + c for p, c in zip(prompt_tokens, completion_tokens, strict=False)), 2
            ),
        },
        "stage_ms_mean": {stage: round(average(v), 3) for stage, v in sorted(stage_ms.items())},
        "seconds": round(time.perf_counter() - started, 3),
        "per_query": per_query,
    }
