"""The injection guard on the query path (``retrieve`` stage): the question's attack part out
before the search, chunks flagged at ingest dropped or fenced after it. Detection itself is
:mod:`rag.guards.injection`; this module applies it to one query's state."""

from __future__ import annotations

from rag.contracts import Hit, QueryState, QuestionCheck
from rag.core.config import InjectionSettings
from rag.core.types import Injection
from rag.guards.injection import hit_detection, scan_question

__all__ = ["InjectionGuard", "question_scan"]


def question_scan(state: QueryState) -> QuestionCheck:
    """The question as asked, scanned for an attack once per query: the answer cache (which
    must not answer an attacked question) and the ``retrieve`` stage both read it."""
    if state.question_scan is None:
        state.question_scan = scan_question(state.asked)
    return state.question_scan


class InjectionGuard:
    """Used by the ``retrieve`` stage: before the search, the question without its attack
    part (flagged in the answer and the ``injection.question`` span); after it, the chunks
    flagged as injection dropped (``exclude``) or kept and marked (``fence``). A question
    that was nothing but an attack gets no passages (the answer is the abstention)."""

    def __init__(self, settings: InjectionSettings):
        self.settings = settings

    def question(self, state: QueryState) -> None:
        if not (self.settings.enabled and self.settings.questions):
            return
        checked = question_scan(state)
        with state.tracer.span("injection.question", state) as span:
            span.set(
                injection_question=checked.flagged,
                injection_reasons=list(checked.reasons),
                injection_removed_chars=checked.removed,
            )
        if checked.flagged:
            state.injection = Injection(question=True, reasons=list(checked.reasons))
            state.question = checked.question

    def passages(self, state: QueryState, hits: list[Hit]) -> list[Hit]:
        if not self.settings.enabled:
            return hits
        kept: list[Hit] = []
        excluded = 0
        for hit in hits:
            found = hit_detection(hit.payload)
            if not found.flagged:
                kept.append(hit)
            elif self.settings.flagged == "fence":
                # Packed as a passage marked suspect (rag.contracts.Passage.flagged).
                payload = {**hit.payload, "injection_fenced": found.reasons or ["flagged"]}
                kept.append(Hit(hit.id, hit.score, payload))
            else:
                excluded += 1
        if excluded:
            if state.injection is None:
                state.injection = Injection(question=False)
            state.injection.passages_excluded += excluded
        with state.tracer.span("injection.passages", state) as span:
            span.set(injection_passages_excluded=excluded)
        return kept
