"""The query path, one stage per line (``default_stages``), run by :class:`QueryPipeline`:

0. ``Condense``       (``condense``) a follow-up (``Query.history``) into a standalone question
1. ``SelectPrompt``   (``prompt``)   the prompt version (pin, A/B, rollback) and answer limits
2. ``CacheStep``      (``cache``)    a repeated question answered from the answer cache
3. ``Retrieve``       (``retrieve``) the injection guard, then hybrid search (filters pass through)
4. ``Rerank``         (``rerank``)   none | embedding | cross-encoder
5. ``Pack``           (``pack``)     passages into the generator's token budget, then the messages
6. ``Generate``       (``generate``) the fallback chain; each sentence verified before release
7. ``AssembleAnswer`` (``answer``)   citations, abstention, usage: the :class:`~rag.core.types.Answer`

The walk ends at the first stage that leaves an answer on the state (``state.answer``): the
last one, or ``cache`` on a hit. Work a stage asked for once the answer is complete
(``state.after_answer``: the cache keeps a fresh answer) runs next, then the ``DoneEvent``.

``QueryPipeline(index, settings)`` is cheap; ``warm_up()`` loads every stage's models.
``run(query)`` returns the :class:`~rag.core.types.Answer`; ``stream(query)`` yields the
same work as events (``TokenEvent``… ``CitationsEvent``, ``DoneEvent``) whose token texts
concatenate to the final answer. Every stage call runs inside a span of the tracer; the
``timings_ms`` of an answer are one such tracer. With ``generate=False`` nothing is
generated: ``answer`` is "" and ``citations`` is the packed context (``verified: false``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.contracts import NoopTracer, OutputFilter, QueryState, Stage
from rag.core.config import Settings
from rag.core.errors import QueryError, StageNotFoundError
from rag.core.textguard import check_question
from rag.core.types import Answer, DoneEvent, Query, StreamEvent, TokenEvent
from rag.generate import GeneratorChain, build_chain
from rag.query.answer_cache import AnswerCache, CacheStep, cached_events
from rag.query.condense import Condense
from rag.query.costs import CostController
from rag.query.prompts import PromptRegistry
from rag.query.releases import release_store
from rag.query.rerank import build_reranker
from rag.query.retrieve import Retriever
from rag.query.stages import AssembleAnswer, Generate, Pack, Rerank, Retrieve, SelectPrompt
from rag.query.tracing import TimingTracer, Tracer, Tracers
from rag.verification.citations import SupportScorer

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["PreparedQuery", "QueryPipeline", "default_stages"]


def default_stages(
    index: Index, settings: Settings, *, chain: GeneratorChain | None = None
) -> list[Stage]:
    """The configured query path, in order: the list to copy and extend. Construction is
    cheap (models load in ``warm_up``); ``cache.enabled`` adds the ``cache`` stage."""
    # Sentence vectors made at ingest first: a question embeds only itself (and what no chunk
    # holds), with the encoder that made them.
    scorer = SupportScorer(index.embedder.embed_documents_batched, stored=index.stored_vectors)
    chain = chain or build_chain(settings.generation, scorer, settings.pii)
    reranker = build_reranker(settings.rerank, index.embedder)
    costs = CostController(settings.costs, index.data_dir)
    stages: list[Stage] = [
        Condense(settings, chain, costs),
        SelectPrompt(PromptRegistry(settings.prompts), settings, release_store(index.data_dir)),
    ]
    if settings.cache.enabled:
        stages.append(CacheStep(AnswerCache.for_index(settings.cache, index), settings, chain))
    stages += [
        Retrieve(Retriever(index, settings.retrieval), settings, reranker.name != "none"),
        Rerank(reranker, settings.retrieval.top_k),
        Pack(chain, settings),
        Generate(chain, scorer, settings, costs),
        AssembleAnswer(settings),
    ]
    return stages


class _ServeCached:
    """The ``cache`` stage's hit, found before the query was queued (``QueryPipeline.cached``)."""

    name = "cache"

    def __init__(self, answer: Answer):
        self.answer = answer

    def warm_up(self) -> None:
        return None

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        state.answer = self.answer
        yield from cached_events(self.answer)


@dataclass(frozen=True)
class PreparedQuery:
    """What :meth:`QueryPipeline.prepare` found: whether the cache answers, and the rest.
    ``cancel()``, from any thread, stops ``events()`` at the model's next token (the reader
    went away); closing the iterator stops it only at the next event it yields."""

    cached: bool
    events: Callable[[], Iterator[StreamEvent]]
    cancel: Callable[[], None] = lambda: None


class QueryPipeline:
    """Runs the stages over one :class:`QueryState` per query. What the API and the CLI
    need of it: ``warm_up``, ``run``, ``stream``, ``prepare``, ``stats``, ``health``, ``close``."""

    def __init__(
        self,
        index: Index,
        settings: Settings,
        *,
        stages: Sequence[Stage] | None = None,
        output_filters: Sequence[OutputFilter] = (),
        tracer: Tracer | None = None,
    ):
        self.index = index
        self.settings = settings
        self.stages: list[Stage] = list(
            stages if stages is not None else default_stages(index, settings)
        )
        self.output_filters: list[OutputFilter] = list(output_filters)
        self.tracer: Tracer = Tracers([TimingTracer(), tracer]) if tracer else TimingTracer()
        self.extra_tracer = tracer
        # Names of the stages and filters a query passes: part of the answer cache's scope.
        self.route = tuple(s.name for s in self.stages) + tuple(
            f"filter:{f.name}" for f in self.output_filters
        )

    # -- the parts -------------------------------------------------------------------
    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise StageNotFoundError(
            f"no stage named {name!r} (stages: {[s.name for s in self.stages]})"
        )

    def _parts(self, kind: type[Any]) -> list[Any]:
        return [s for s in self.stages if isinstance(s, kind)]

    @property
    def cache(self) -> AnswerCache | None:
        """The answer cache of the ``cache`` stage; None without one."""
        steps = self._parts(CacheStep)
        return steps[0].cache if steps else None

    @property
    def costs(self) -> CostController | None:
        """The cost ledger of the ``generate`` stage; None without one."""
        gens = [g for g in self._parts(Generate) if g.costs is not None]
        return gens[0].costs if gens else None

    @property
    def chain(self) -> GeneratorChain:
        """The generate stage's fallback chain."""
        gens = self._parts(Generate)
        if not gens:
            raise StageNotFoundError(f"no generate stage (stages: {[s.name for s in self.stages]})")
        chain: GeneratorChain = gens[0].chain
        return chain

    def traced_by(self, tracer: Tracer) -> bool:
        """Whether this pipeline records into ``tracer`` (then trace ids are handed out)."""
        return self.extra_tracer is tracer

    # -- lifecycle ---------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load everything a first query would: embedder, BM25, reranker, prompts, generators."""
        for stage in self.stages:
            stage.warm_up()
        for output_filter in self.output_filters:
            output_filter.warm_up()

    def stats(self) -> dict[str, Any]:
        """The answer cache's and the cost ledger's figures (``/metrics``), when present."""
        out: dict[str, Any] = {}
        if (cache := self.cache) is not None:
            out["cache"] = cache.stats()
        if (costs := self.costs) is not None:
            out["costs"] = costs.report()
        return out

    def health(self) -> dict[str, str]:
        """What answering needs, checked without a query: the live collection and each
        generator backend (``/readyz``). Values are "ok" or what is wrong."""
        out = {"collection": "ok" if self.index.collection else "no live collection yet"}
        try:
            chain = self.chain
        except KeyError:
            return out
        for generator in chain.generators:
            out[f"generator:{generator.name}"] = generator.health()
        return out

    def close(self) -> None:
        if (cache := self.cache) is not None:
            cache.close()
        if (costs := self.costs) is not None:
            costs.close()
        for chain in {id(g.chain): g.chain for g in self._parts(Generate)}.values():
            chain.close()  # Pack and Generate share it

    # -- queries -----------------------------------------------------------------------
    def run(self, query: Query | str) -> Answer:
        answer: Answer | None = None
        for event in self.stream(query, streaming=False):
            if isinstance(event, DoneEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def stream(self, query: Query | str, *, streaming: bool = True) -> Iterator[StreamEvent]:
        state = self._new_state(query, streaming)
        return self._walk(state, self.stages)

    def prepare(self, query: Query) -> PreparedQuery:
        """``query`` taken as far as the ``cache`` stage, here and now: the stages before it
        (the prompt) and an exact cache lookup checked against the store — no embedding, cheap
        enough for an event loop. ``cached`` tells a server whether the query needs a backend
        slot at all; ``events()`` runs the rest of the walk, traced, in whatever thread reads
        it (the stages that already ran open the trace with the time they took)."""
        state = self._new_state(query, streaming=True)
        steps = self._parts(CacheStep)
        if not steps or not state.query.generate:
            return PreparedQuery(False, lambda: self._walk(state, self.stages), state.cancelled.set)
        position = self.stages.index(steps[0])
        expensive = [
            s
            for s in self.stages[:position]
            if (cheap := getattr(s, "cheap", None)) is not None and not cheap(state)
        ]
        if expensive:  # a model call before the cache (a condense rewrite): not on this thread
            return PreparedQuery(False, lambda: self._walk(state, self.stages))
        ran: dict[str, float] = {}
        state.tracer = NoopTracer()  # the trace opens with the walk
        for stage in self.stages[:position]:
            started = time.perf_counter()
            for _ in stage.run(state):  # what runs before the cache prepares; it does not answer
                pass
            ran[stage.name] = round((time.perf_counter() - started) * 1000.0, 3)
        state.tracer = self.tracer
        answer = steps[0].peek(state)
        rest: list[Stage] = [_ServeCached(answer)] if answer is not None else self.stages[position:]
        return PreparedQuery(
            answer is not None, lambda: self._walk(state, rest, ran), state.cancelled.set
        )

    def _new_state(self, query: Query | str, streaming: bool) -> QueryState:
        query = Query(question=query) if isinstance(query, str) else query
        return QueryState(
            query=query,
            question=check_question(query.question),
            streaming=streaming,
            tracer=self.tracer,
            filters=self.output_filters,
            route=self.route,
        )

    def _walk(
        self, state: QueryState, stages: Sequence[Stage], ran: dict[str, float] | None = None
    ) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        first_token: float | None = None
        with self.tracer.request(state):
            for name, ms in (ran or {}).items():  # stages ``prepare`` ran before the trace
                with self.tracer.span(name, state):
                    pass
                state.timings[name] = ms
            for stage in stages:
                with self.tracer.span(stage.name, state):
                    for event in stage.run(state):
                        if first_token is None and isinstance(event, TokenEvent):
                            first_token = (time.perf_counter() - started) * 1000.0
                        yield event
                if state.answer is not None:
                    break
            if state.answer is not None:
                for hook in state.on_answer:
                    hook(state)
        if state.answer is None:
            raise QueryError(
                f"no stage produced an answer (stages: {[s.name for s in stages]}): the last "
                "stage must set state.answer, as AssembleAnswer does"
            )
        for finish in state.after_answer:
            finish(state)
        if first_token is not None:
            state.timings["first_token"] = round(first_token, 3)
        state.answer.timings_ms = dict(state.timings)
        state.answer.trace_id = state.trace_id
        state.answer.standalone_question = state.standalone
        yield DoneEvent(state.answer)
