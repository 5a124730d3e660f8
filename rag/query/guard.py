"""The injection guard on the query path (``retrieve`` stage): the question's attack part out
before the search; after it, chunks flagged at ingest lose their attack spans (or are dropped
or fenced whole). Detection itself is
:mod:`rag.guards.injection`; this module applies it to one query's state."""

from __future__ import annotations

from rag.contracts import Hit, QueryState, QuestionCheck
from rag.core.config import InjectionSettings
from rag.core.types import Injection
from rag.guards.injection import hit_detection, hit_spans, scan_question, strip_spans

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
    flagged as injection lose their attack spans (``exclude``: the rest still answers),
    are dropped whole (``exclude_chunk``) or are kept whole and marked (``fence``). A
    question that was nothing but an attack gets no passages (the answer is the abstention)."""

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
        excluded = removed = 0
        mode = self.settings.flagged
        for hit in hits:
            found = hit_detection(hit.payload)
            if not found.flagged:
                kept.append(hit)
                continue
            spans = [] if mode == "exclude_chunk" else hit_spans(hit.payload)
            if mode == "fence":
                # Packed whole, marked suspect (rag.contracts.Passage.flagged, .suspect).
                payload = {
                    **hit.payload,
                    "injection_fenced": found.reasons or ["flagged"],
                    "injection_suspect": [list(span) for span in spans],
                }
                kept.append(Hit(hit.id, hit.score, payload))
            elif spans and _content_left(str(hit.payload.get("text") or ""), spans):
                # The attack spans come out when the chunk is packed; its content answers.
                payload = {**hit.payload, "injection_cut": [list(span) for span in spans]}
                kept.append(Hit(hit.id, hit.score, payload))
                removed += len(spans)
            else:
                excluded += 1  # exclude_chunk, or nothing but the attack in it
        if excluded or removed:
            if state.injection is None:
                state.injection = Injection(question=False)
            state.injection.passages_excluded += excluded
            state.injection.spans_removed += removed
        with state.tracer.span("injection.passages", state) as span:
            span.set(injection_passages_excluded=excluded, injection_spans_removed=removed)
        return kept


_CONTENT_WORDS = 6  # a chunk with fewer words outside its attack spans (a heading) is dropped


def _content_left(text: str, spans: list[tuple[int, int]]) -> bool:
    return len(strip_spans(text, spans)[0].split()) >= _CONTENT_WORDS
