"""The tracer seam: the query runner wraps every stage call in ``tracer.span(name, state)``.

A :class:`Tracer` sees names, timings and the attributes stages set on their span — never
content (questions, passages, answers) unless a tracer asks the state for it itself. The
default is :class:`NoopTracer`; ``timings_ms`` in every answer comes from
:class:`TimingTracer`, which the pipeline always runs; :class:`Tracers` composes several
(a Langfuse exporter, say, next to the timings)::

    pipeline = QueryPipeline(index, settings, tracer=MyTracer())
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

from rag.contracts import NoopTracer, QueryState, Span, Tracer

__all__ = ["AttemptSpans", "NoopTracer", "Span", "TimingTracer", "Tracer", "Tracers"]


class TimingTracer:
    """Milliseconds per span name into ``state.timings`` (summed when a name repeats), and
    ``total`` for the request."""

    @contextmanager
    def request(self, state: QueryState) -> Iterator[Span]:
        started = time.perf_counter()
        try:
            yield Span("query")
        finally:
            state.timings["total"] = round((time.perf_counter() - started) * 1000.0, 3)

    @contextmanager
    def span(self, name: str, state: QueryState) -> Iterator[Span]:
        started = time.perf_counter()
        try:
            yield Span(name)
        finally:
            ms = (time.perf_counter() - started) * 1000.0
            state.timings[name] = round(state.timings.get(name, 0.0) + ms, 3)


class Tracers:
    """Several tracers as one; each gets its own span, entered in order."""

    def __init__(self, tracers: Sequence[Tracer]):
        self.tracers = list(tracers)

    @contextmanager
    def _all(self, enter: Sequence[AbstractContextManager[Span]], name: str) -> Iterator[Span]:
        with ExitStack() as stack:
            spans = [stack.enter_context(cm) for cm in enter]
            yield _FanOut(name, spans)

    def request(self, state: QueryState) -> AbstractContextManager[Span]:
        return self._all([t.request(state) for t in self.tracers], "query")

    def span(self, name: str, state: QueryState) -> AbstractContextManager[Span]:
        return self._all([t.span(name, state) for t in self.tracers], name)


class _FanOut(Span):
    __slots__ = ("spans",)

    def __init__(self, name: str, spans: list[Span]):
        super().__init__(name)
        self.spans = spans

    def set(self, **attributes: Any) -> None:
        super().set(**attributes)
        for span in self.spans:
            span.set(**attributes)


class AttemptSpans:
    """The fallback chain's observer (``GeneratorChain.stream(observe=...)``): one
    ``generation`` span per backend attempt, entered when it starts and left when it ends.

    The span carries ``backend``, ``model``, ``model_parameters``, ``prompt`` (name and
    version), ``first_token_at`` (epoch seconds), ``usage`` (the attempt's
    ``rag.core.types.BackendUsage``, cost included once priced), ``outcome`` and ``error``.
    """

    def __init__(self, state: QueryState, parameters: dict[str, Any]):
        self.state = state
        self.parameters = parameters
        self._open: tuple[AbstractContextManager[Span], Span] | None = None

    def observe(self, event: str, generator: Any, usage: Any, error: str | None) -> None:
        if event == "start":
            self.close()
            cm = self.state.tracer.span("generation", self.state)
            span = cm.__enter__()
            prompt = self.state.prompt
            span.set(
                backend=generator.name,
                model=generator.describe().get("model") or generator.name,
                model_parameters=self.parameters,
                prompt=prompt.ref if prompt is not None else None,
            )
            self._open = (cm, span)
        elif self._open is not None:
            cm, span = self._open
            outcome = getattr(usage, "outcome", None) or ("cancelled" if error else "answered")
            span.set(usage=usage, outcome=outcome, error=error)
            self._open = None
            cm.__exit__(None, None, None)

    def token(self) -> None:
        """A token arrived from the attempt in flight: the first one is its time to first token."""
        if self._open is not None and "first_token_at" not in self._open[1].attributes:
            self._open[1].set(first_token_at=time.time())

    def close(self) -> None:
        """End an attempt still open (the consumer stopped listening)."""
        if self._open is not None:
            cm, span = self._open
            span.set(outcome="cancelled")
            self._open = None
            cm.__exit__(None, None, None)
