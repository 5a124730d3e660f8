"""Queries from the HTTP layer to the query pipeline, off the event loop.

Every pipeline call runs in a worker thread behind a per-backend ``ConcurrencyGate``
(bounded concurrency, bounded queue, 503 beyond it). Streams are pumped by a thread that
checks a cancel flag between tokens: a client that disconnects stops generation at the
next token. The caller's tenant is always added to the filters; nothing else can set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from api.errors import ApiError
from api.limits import ConcurrencyGate

if TYPE_CHECKING:
    from api.metrics import Metrics
    from rag.config import Settings
    from rag.index import Index

__all__ = [
    "EventStream",
    "Pipeline",
    "QueryArgs",
    "QueryService",
    "RetrievalOnlyPipeline",
    "load_pipeline",
]

log = logging.getLogger("api")

Event = tuple[str, Any]


class Pipeline(Protocol):
    def warm_up(self) -> None: ...

    def run(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        prompt: str | None = None,
        generate: bool = True,
        user: str | None = None,
        session: str | None = None,
    ) -> dict[str, Any]: ...

    def stream(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        prompt: str | None = None,
        generate: bool = True,
        user: str | None = None,
        session: str | None = None,
    ) -> Iterator[Event]: ...


class GenerationUnavailable(RuntimeError):
    pass


class RetrievalOnlyPipeline:
    """Stands in while no query pipeline (rag/pipeline.py) is installed: retrieval only."""

    def __init__(self, index: Index, settings: Settings):
        from rag.retrieve import Retriever

        self.index = index
        self.retriever = Retriever(index)

    def warm_up(self) -> None:
        self.index.embedder.warm_up()

    def run(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        generate: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        if generate:
            raise GenerationUnavailable(
                "no generator is installed (rag/pipeline.py is missing); use generate=false"
            )
        t0 = time.perf_counter()
        hits = self.retriever.run(question, filters=filters)
        citations = [
            {
                "n": i,
                "source": h.payload.get("source", ""),
                "title": h.payload.get("title"),
                "section": list(h.payload.get("section") or []),
                "page": h.payload.get("page"),
                "start": int(h.payload.get("start") or 0),
                "end": int(h.payload.get("end") or 0),
                "quote": h.payload.get("text", ""),
                "score": float(h.score),
                "verified": False,
            }
            for i, h in enumerate(hits, start=1)
        ]
        total = (time.perf_counter() - t0) * 1000
        return {
            "answer": "",
            "abstained": False,
            "degraded": False,
            "generator": None,
            "citations": citations,
            "prompt": None,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0},
            "timings_ms": {"retrieve": round(total, 3), "total": round(total, 3)},
            "context_tokens": 0,
        }

    def stream(self, question: str, **kwargs: Any) -> Iterator[Event]:
        raise GenerationUnavailable(
            "no generator is installed (rag/pipeline.py is missing); use generate=false"
        )


def load_pipeline(index: Index, settings: Settings) -> Pipeline:
    try:
        from rag.pipeline import QueryPipeline
    except ModuleNotFoundError as exc:
        if exc.name != "rag.pipeline":
            raise
        log.warning("rag.pipeline is not installed: the API serves retrieval only (generate=false)")
        return RetrievalOnlyPipeline(index, settings)
    pipeline: Pipeline = QueryPipeline(index, settings)
    return pipeline


@dataclass
class QueryArgs:
    question: str
    filters: dict[str, Any] | None = None
    prompt: str | None = None
    generate: bool = True
    user: str | None = None
    session: str | None = None
    # Chat requests may carry these; passed on only when the pipeline accepts them.
    options: dict[str, Any] = field(default_factory=dict)


def _accepted_kwargs(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``fn`` accepts (None: it takes **kwargs, so anything)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


class QueryService:
    def __init__(
        self, index: Index, settings: Settings, pipeline: Pipeline, metrics: Metrics | None = None
    ):
        self.index = index
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        api = settings.api
        self.gates = {
            name: ConcurrencyGate(name, n, api.queue) for name, n in api.concurrency.items()
        }
        self._run_kwargs = _accepted_kwargs(pipeline.run)
        self._stream_kwargs = _accepted_kwargs(pipeline.stream)
        self.ready = threading.Event()
        self.warm_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load models now (a background thread at startup); /readyz reports until done."""
        try:
            self.pipeline.warm_up()
        except Exception as exc:  # reported by /readyz, the process stays up
            log.exception("pipeline warm-up failed")
            self.warm_error = f"{type(exc).__name__}: {exc}"
            return
        self.ready.set()

    @property
    def can_generate(self) -> bool:
        return not isinstance(self.pipeline, RetrievalOnlyPipeline)

    def gate(self, generate: bool) -> ConcurrencyGate:
        name = (
            self.settings.generation.chain[0]
            if generate and self.settings.generation.chain
            else "retrieval"
        )
        if not generate:
            name = "retrieval"
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = ConcurrencyGate(name, 1, self.settings.api.queue)
        return gate

    # -- calls -----------------------------------------------------------------------
    def _kwargs(self, args: QueryArgs, tenant: str, accepted: set[str] | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            # The tenant goes last: it overrides anything a caller might have put in filters.
            "filters": {**(args.filters or {}), "tenant": tenant},
            "prompt": args.prompt,
            "generate": args.generate,
            "user": args.user,
            "session": args.session,
            "tenant": tenant,
            **args.options,
        }
        if accepted is None:
            return kwargs
        return {k: v for k, v in kwargs.items() if k in accepted}

    def _observe(self, result: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.observe_result(result)

    async def answer(
        self,
        args: QueryArgs,
        tenant: str,
        wait_disconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """One complete answer (or the packed context when ``generate`` is false).

        Generation runs as a stream even here, so a client that hangs up (``wait_disconnect``
        returns) stops the model at its next token."""
        if not args.generate:
            kwargs = self._kwargs(args, tenant, self._run_kwargs)
            async with self.gate(False).slot():
                try:
                    result = await asyncio.to_thread(self.pipeline.run, args.question, **kwargs)
                except Exception as exc:
                    raise translate_error(exc, args) from exc
            self._observe(result)
            return result
        return await self.open_stream(args, tenant).collect(wait_disconnect)

    def open_stream(self, args: QueryArgs, tenant: str) -> EventStream:
        """Reserve a backend slot now (503 before any byte is sent), stream later."""
        if not self.can_generate:
            raise ApiError(
                503,
                "generation_unavailable",
                "no generator is installed on this server; send generate=false",
            )
        if not args.generate:
            # Nothing to stream token by token: the context comes as one citations event.
            def events() -> Iterator[Event]:
                result = self.pipeline.run(
                    args.question, **self._kwargs(args, tenant, self._run_kwargs)
                )
                yield ("citations", result.get("citations", []))
                yield ("done", result)

            factory: Callable[[], Iterator[Event]] = events
        else:
            kwargs = self._kwargs(args, tenant, self._stream_kwargs)

            def factory() -> Iterator[Event]:
                return self.pipeline.stream(args.question, **kwargs)

        return EventStream(
            self.gate(args.generate), factory, self._observe, lambda exc: translate_error(exc, args)
        )


_END = object()


def first_error(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg,unused-ignore]
    """The error itself, not anyio's group around it (a task group has one task that fails here)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def translate_error(exc: BaseException, args: QueryArgs) -> BaseException:
    """Pipeline errors that are the caller's doing become 4xx; anything else stays a 500."""
    from rag.prompts import PromptError

    if isinstance(exc, PromptError) and args.prompt:
        return ApiError(404, "prompt_not_found", str(exc))
    if isinstance(exc, GenerationUnavailable):
        return ApiError(503, "generation_unavailable", str(exc))
    return exc


class EventStream:
    """A pipeline stream pumped by its own thread into the event loop, cancellable between events."""

    def __init__(
        self,
        gate: ConcurrencyGate,
        factory: Callable[[], Iterator[Event]],
        on_done: Callable[[dict[str, Any]], None],
        translate: Callable[[BaseException], BaseException] = lambda exc: exc,
    ):
        gate.reserve()  # raises the 503 while nothing has been sent yet
        self.gate = gate
        self.factory = factory
        self.on_done = on_done
        self.translate = translate
        self.cancelled = threading.Event()
        self._state = "reserved"  # reserved → running → finished

    async def events(self) -> Any:
        """Async generator of (kind, payload); ``close`` must be called whatever happens."""
        self._state = "acquiring"  # a cancel while waiting gives the place back inside acquire()
        await self.gate.acquire()
        self._state = "running"
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def post(item: Any) -> None:
            # RuntimeError: the loop is gone (shutdown), nobody is listening.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            iterator: Iterator[Event] | None = None
            try:
                iterator = self.factory()
                for item in iterator:
                    if self.cancelled.is_set():
                        break
                    if item[0] == "done" and isinstance(item[1], dict):
                        self.on_done(item[1])
                    post(item)
            except BaseException as exc:  # noqa: BLE001 - delivered to the response, which reports it
                post(self.translate(exc))
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    try:
                        close()  # generator cleanup runs here, in the thread that ran it
                    except Exception:
                        log.exception("closing the pipeline stream failed")
                # The slot frees only once the model really stopped.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self.gate.release, time.monotonic() - started)
                post(_END)

        threading.Thread(target=pump, name="rag-stream", daemon=True).start()
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def collect(
        self, wait_disconnect: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        """Run to the end and return the ``done`` payload; a disconnect cancels generation."""
        result: dict[str, Any] | None = None
        try:
            async with anyio.create_task_group() as tg:
                if wait_disconnect is not None:

                    async def watch() -> None:
                        await wait_disconnect()
                        self.close()
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch)
                async for kind, payload in self.events():
                    if kind == "done":
                        result = payload
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            self.close()
        if result is None:
            # Only when the client went away: nobody reads this response.
            raise ApiError(503, "cancelled", "the client disconnected; generation was cancelled")
        return result

    def close(self) -> None:
        self.cancelled.set()
        if self._state == "reserved":
            # Never started (client gone before the first byte): give the queue place back.
            self.gate.waiting -= 1
        self._state = "finished"
