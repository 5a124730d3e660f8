"""The query path, one stage per line (``default_stages``), run by :class:`QueryPipeline`:

1. ``Retrieve``      hybrid search over the live collection (filters pass through)
2. ``Rerank``        none | embedding | cross-encoder
3. ``SelectPrompt``  the prompt version (pin, A/B, rollback)
4. ``Pack``          passages into the generator's token budget, then the messages
5. ``Generate``      the fallback chain; text released sentence by sentence once verified
6. ``Verify``        citations, abstention, usage: the :class:`~rag.types.Answer`

``QueryPipeline(index, settings)`` is cheap; ``warm_up()`` loads every stage's models.
``run(query)`` returns the :class:`~rag.types.Answer`; ``stream(query)`` yields the same
work as events (``TokenEvent``… ``CitationsEvent``, ``DoneEvent``) whose token texts
concatenate to the final answer. Every stage call runs inside a span of the tracer; the
``timings_ms`` of an answer are one such tracer. With ``generate=False`` nothing is
generated: ``answer`` is "" and ``citations`` is the packed context (``verified: false``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rag.citations import SupportScorer
from rag.config import Settings
from rag.generate import GeneratorChain, build_chain
from rag.prompts import PromptRegistry
from rag.rerank import build_reranker
from rag.retrieve import Retriever
from rag.stages import (
    Generate,
    OutputFilter,
    Pack,
    QueryState,
    Rerank,
    Retrieve,
    SelectPrompt,
    Stage,
    Verify,
    check_question,
)
from rag.tracing import TimingTracer, Tracer, Tracers
from rag.types import Answer, DoneEvent, Query, StreamEvent, TokenEvent

if TYPE_CHECKING:
    from rag.answer_cache import AnswerCache
    from rag.index import Index

__all__ = ["QueryPipeline", "default_stages"]

log = logging.getLogger(__name__)


def default_stages(
    index: Index, settings: Settings, *, chain: GeneratorChain | None = None
) -> list[Stage]:
    """The configured query path, in order: the list to copy and extend."""
    scorer = SupportScorer(index.embedder.embed)
    chain = chain or build_chain(
        settings.generation, scorer, settings.pii
    )  # cheap: load in warm_up
    from rag.costs import CostController

    costs = CostController(settings.costs, index.data_dir)
    reranker = build_reranker(settings.rerank, index.embedder)
    reranking = reranker.name != "none"
    return [
        Retrieve(Retriever(index, settings.retrieval), settings, reranking),
        Rerank(reranker, settings.retrieval.top_k),
        SelectPrompt(PromptRegistry(settings.prompts), settings),
        Pack(chain, settings),
        Generate(chain, scorer, settings, costs),
        Verify(settings),
    ]


class _CachedAnswer:
    """The stream of an answer served by the cache (``state.answer``)."""

    name = "cached"

    def warm_up(self) -> None:
        return None

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        from rag.answer_cache import cached_events

        assert state.answer is not None
        yield from cached_events(state.answer)


class QueryPipeline:
    def __init__(
        self,
        index: Index,
        settings: Settings,
        *,
        stages: Sequence[Stage] | None = None,
        output_filters: Sequence[OutputFilter] = (),
        tracer: Tracer | None = None,
        cache: AnswerCache | None = None,
    ):
        self.index = index
        self.settings = settings
        # The answer cache (rag/answer_cache.py): on by default (cache.enabled) for the default
        # stages; a pipeline with stages of its own gets one only when it passes it.
        if cache is None and stages is None and settings.cache.enabled:
            from rag.answer_cache import AnswerCache

            cache = AnswerCache.for_index(settings.cache, index)
        self.cache = cache
        self.stages: list[Stage] = list(
            stages if stages is not None else default_stages(index, settings)
        )
        self.output_filters: list[OutputFilter] = list(output_filters)
        self.tracer: Tracer = Tracers([TimingTracer(), tracer]) if tracer else TimingTracer()

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage named {name!r} (stages: {[s.name for s in self.stages]})")

    @property
    def chain(self) -> GeneratorChain:
        """The generate stage's fallback chain."""
        chain = getattr(self.stage("generate"), "chain", None)
        if not isinstance(chain, GeneratorChain):
            raise TypeError("the generate stage has no GeneratorChain `chain`")
        return chain

    def warm_up(self) -> None:
        """Load everything a first query would: embedder, BM25, reranker, prompts, generators."""
        for stage in self.stages:
            stage.warm_up()
        for output_filter in self.output_filters:
            output_filter.warm_up()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        for part in self.stages:
            costs = getattr(part, "costs", None)
            if costs is not None:
                costs.close()
        closed: set[int] = set()
        for part in self.stages:
            chain = getattr(part, "chain", None)  # Pack and Generate share one chain
            if isinstance(chain, GeneratorChain) and id(chain) not in closed:
                closed.add(id(chain))
                chain.close()

    def run(self, query: Query | str) -> Answer:
        answer: Answer | None = None
        for event in self._events(query, streaming=False):
            if isinstance(event, DoneEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def stream(self, query: Query | str) -> Iterator[StreamEvent]:
        return self._events(query, streaming=True)

    def from_cache(self, query: Query) -> list[StreamEvent] | None:
        """The stream of ``query``'s cached answer when the answer cache holds it under the
        same normalised question (no embedding: cheap enough for an event loop); None
        otherwise (``stream`` answers it, semantic matches included). The API serves these
        without waiting for a backend slot."""
        if self.cache is None or not query.generate:
            return None
        events = list(self._events(query, streaming=True, peek=True))
        return events or None

    def _events(
        self, query: Query | str, *, streaming: bool, peek: bool = False
    ) -> Iterator[StreamEvent]:
        query = Query(question=query) if isinstance(query, str) else query
        state = QueryState(
            query=query,
            question=check_question(query),
            streaming=streaming,
            tracer=self.tracer,
            filters=self.output_filters,
        )
        started = time.perf_counter()
        first_token: float | None = None
        cache, found = self.cache, None
        guard = self.settings.injection
        if cache is not None and guard.enabled and guard.questions:
            from rag.injection import question_check

            if question_check(state).flagged:
                cache = None  # an attacked question is answered afresh and flagged, never cached
        if peek:  # exact hits only, and nothing traced or counted on a miss
            found = cache.lookup(self, state, peek=True) if cache is not None else None
            if found is None or found.answer is None:
                return
        with self.tracer.request(state):
            if cache is not None:
                with self.tracer.span("cache", state):
                    found = found or cache.lookup(self, state)
                    state.answer = found.answer if found is not None else None
            # A cache hit skips every stage: its text and citations are the stream.
            stages = self.stages if state.answer is None else [_CachedAnswer()]
            for stage in stages:
                with self.tracer.span(stage.name, state):
                    for event in stage.run(state):
                        if first_token is None and isinstance(event, TokenEvent):
                            first_token = (time.perf_counter() - started) * 1000.0
                        yield event
        if cache is not None and found is not None and found.answer is None:
            cache.store(self, state, found)
        if first_token is not None:
            state.timings["first_token"] = round(first_token, 3)
        if state.answer is None:
            raise RuntimeError("no stage produced an answer: the last stage must be Verify")
        state.answer.timings_ms = dict(state.timings)
        state.answer.trace_id = state.trace_id
        yield DoneEvent(state.answer)
