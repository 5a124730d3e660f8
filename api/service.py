"""Queries from the HTTP layer to the query pipeline, off the event loop.

Every pipeline call runs in a worker thread behind a per-backend ``ConcurrencyGate``
(bounded concurrency, a bounded queue shared fairly between tenants, 503 beyond it). Streams are pumped by a thread that
checks a cancel flag between tokens: a client that disconnects stops generation at the
next token. The caller's tenant is always added to the filters; nothing else can set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from api.errors import ApiError
from api.limits import ConcurrencyGate, shutting_down
from rag.core.errors import PromptError
from rag.core.types import Answer, DoneEvent, Query, StreamEvent
from rag.query.pipeline import PreparedQuery

if TYPE_CHECKING:
    from api.auth import Principal
    from api.metrics import Metrics
    from rag.core.config import Settings
    from rag.indexing.index import Index

__all__ = ["EventStream", "Pipeline", "QueryService", "Streams", "for_caller"]

log = logging.getLogger("api")


class Pipeline(Protocol):
    """What the API needs of a query pipeline (``rag.query.pipeline.QueryPipeline``)."""

    def warm_up(self) -> None: ...

    def run(self, query: Query) -> Answer: ...

    def stream(self, query: Query) -> Iterator[StreamEvent]: ...

    def prepare(self, query: Query) -> PreparedQuery:
        """The query taken as far as the answer cache, cheaply, in the caller's thread:
        ``cached`` (no backend slot needed), ``events()``, the rest of the walk, and
        ``cancel()``, which stops it mid-generation when the client goes away."""
        ...

    def stats(self) -> dict[str, Any]:
        """Figures for ``/metrics`` (the answer cache, the cost ledger)."""
        ...

    def health(self) -> dict[str, str]:
        """Checks for ``/readyz``: "ok" or what is wrong, by part."""
        ...

    def traced_by(self, tracer: Any) -> bool:
        """Whether the pipeline records into ``tracer`` (trace ids are handed out then)."""
        ...


def for_caller(query: Query, caller: Principal) -> Query:
    """The caller's tenant, groups and user, from its key or token: the only way a query's
    tenant and groups (what it may read, rag/core/access.py) are chosen."""
    return replace(
        query, tenant=caller.tenant, groups=caller.groups, asker=caller.user or caller.key_id
    )


class Streams:
    """The threads pumping pipeline streams now. When the server stops they are asked to stop
    (at their next event) and joined, before the pipeline and its models are closed: a thread
    left generating in a native library when the interpreter exits crashed ``rag serve``'s stop
    under load (SIGSEGV, or SIGABRT "terminate called without an active exception")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[EventStream, threading.Thread] = {}

    def started(self, stream: EventStream, thread: threading.Thread) -> None:
        with self._lock:
            self._running[stream] = thread

    def finished(self, stream: EventStream) -> None:
        with self._lock:
            self._running.pop(stream, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._running)

    def wait(self, timeout: float) -> bool:
        """Until every stream has finished by itself (True) or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while len(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float) -> list[str]:
        """Stop every stream at its next event and join its thread; the names of those still
        running after ``timeout`` seconds (stuck in one native call)."""
        with self._lock:
            running = dict(self._running)
        for stream in running:
            stream.stop_by_server()
        deadline = time.monotonic() + timeout
        for thread in running.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in running.values() if t.is_alive()]


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
        self.ready = threading.Event()
        self.warm_error: str | None = None
        self.streams = Streams()
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs

    def stop_accepting(self, timeout: float = 5.0) -> None:
        """From any thread, as the server begins to stop: queued and new model requests get the
        503 ``shutting_down`` (running ones go on). A no-op before the server runs."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        async def close_gates() -> None:
            for gate in list(self.gates.values()):
                gate.close()

        with contextlib.suppress(Exception):  # a loop already stopping: nothing is queued
            asyncio.run_coroutine_threadsafe(close_gates(), loop).result(timeout)

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

    def gate(self, generate: bool) -> ConcurrencyGate:
        chain = self.settings.generation.chain
        name = chain[0] if generate and chain else "retrieval"
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = ConcurrencyGate(name, 1, self.settings.api.queue)
        return gate

    # -- calls -----------------------------------------------------------------------
    def _observe(self, result: dict[str, Any], tenant: str = "") -> None:
        if self.metrics is not None:
            # the variant: prompt version (in the answer) and the collection serving now
            collection = getattr(getattr(self.pipeline, "index", None), "collection", None)
            self.metrics.observe_result(result, tenant, collection)

    async def answer(
        self,
        query: Query,
        caller: Principal,
        wait_disconnect: Callable[[], Awaitable[None]] | None = None,
        on_event: Callable[[StreamEvent], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """One complete answer (or the packed context when ``generate`` is false), as JSON.

        Generation runs as a stream even here, so a client that hangs up (``wait_disconnect``
        returns) stops the model at its next token. ``on_event`` sees each event on the way
        (the MCP ``ask`` tool's progress notifications)."""
        tenant = caller.tenant
        if not query.generate:
            scoped = for_caller(query, caller)
            async with self.gate(False).slot(tenant):
                try:
                    answer = await asyncio.to_thread(self.pipeline.run, scoped)
                except Exception as exc:
                    raise translate_error(exc, scoped) from exc
            result = answer.as_json()
            self._observe(result, tenant)
            return result
        return await self.open_stream(query, caller).collect(wait_disconnect, on_event)

    def open_stream(self, query: Query, caller: Principal) -> EventStream:
        """Reserve a backend slot now (503 before any byte is sent), stream later. A cached
        answer needs no backend: it goes through the wide ``cache`` gate."""
        tenant = caller.tenant
        scoped = for_caller(query, caller)
        try:
            prepared = self.pipeline.prepare(scoped)
        except Exception as exc:  # an unknown prompt, say: the caller's 4xx, before any byte
            raise translate_error(exc, scoped) from exc
        if prepared.cached:
            gate = self.gates.get("cache")
            if gate is None:
                gate = self.gates["cache"] = ConcurrencyGate("cache", 64, self.settings.api.queue)
        else:
            gate = self.gate(scoped.generate)
        return EventStream(
            gate,
            prepared.events,
            lambda result: self._observe(result, tenant),
            lambda exc: translate_error(exc, scoped),
            tenant=tenant,
            cancel=prepared.cancel,
            streams=self.streams,
        )


_END = object()


def first_error(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg,unused-ignore]
    """The error itself, not anyio's group around it (a task group has one task that fails here)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def translate_error(exc: BaseException, query: Query) -> BaseException:
    """Pipeline errors that are the caller's doing become 4xx; anything else stays a 500."""
    if isinstance(exc, PromptError) and query.prompt:
        return ApiError(404, "prompt_not_found", str(exc))
    return exc


class EventStream:
    """A pipeline stream pumped by its own thread into the event loop, cancellable between events."""

    def __init__(
        self,
        gate: ConcurrencyGate,
        factory: Callable[[], Iterator[StreamEvent]],
        on_done: Callable[[dict[str, Any]], None],
        translate: Callable[[BaseException], BaseException] = lambda exc: exc,
        tenant: str = "",
        cancel: Callable[[], None] = lambda: None,
        streams: Streams | None = None,
    ):
        gate.reserve(tenant)  # raises the 503 while nothing has been sent yet
        self.gate = gate
        self.tenant = tenant
        self.factory = factory
        self.on_done = on_done
        self.translate = translate
        # The pipeline's own stop (PreparedQuery.cancel): between two events generation may
        # run for long (verification holds text back), so waiting for the next one is not enough.
        self.cancel_pipeline = cancel
        self.streams = streams
        self.cancelled = threading.Event()
        self.stopped = False  # cancelled because the server stops (not by the client)
        self._state = "reserved"  # reserved → running → finished

    def stop_by_server(self) -> None:
        """The server is stopping: end this stream at its next event with the 503 ``shutting_down``."""
        self.stopped = True
        self.cancelled.set()
        self.cancel_pipeline()  # the model stops at its next token, not at the next event

    async def events(self) -> Any:
        """Async generator of the pipeline's typed events (JSON only at the wire: the SSE
        renderers call ``.kind``/``.data()``); ``close`` must be called whatever happens."""
        self._state = "acquiring"  # a cancel while waiting gives the place back inside acquire()
        await self.gate.acquire(self.tenant)
        self._state = "running"
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def post(item: Any) -> None:
            # RuntimeError: the loop is gone (shutdown), nobody is listening.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            iterator: Iterator[StreamEvent] | None = None
            try:
                iterator = self.factory()
                for event in iterator:
                    if self.cancelled.is_set():
                        break
                    if isinstance(event, DoneEvent):
                        self.on_done(event.data())
                    post(event)
            except BaseException as exc:  # noqa: BLE001 - delivered to the response, which reports it
                if not self.cancelled.is_set():  # else nobody is listening: a cancel ends here
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
                if self.streams is not None:
                    self.streams.finished(self)

        thread = threading.Thread(target=pump, name="rag-stream", daemon=True)
        if self.streams is not None:
            self.streams.started(self, thread)
        thread.start()
        answered = False
        while True:
            item = await queue.get()
            if item is _END:
                if self.stopped and not answered:
                    raise shutting_down()
                return
            if isinstance(item, BaseException):
                raise item
            answered = answered or isinstance(item, DoneEvent)
            yield item

    async def collect(
        self,
        wait_disconnect: Callable[[], Awaitable[None]] | None = None,
        on_event: Callable[[StreamEvent], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Run to the end and return the ``done`` payload; a disconnect cancels generation.
        ``on_event`` is awaited with each event as it comes."""
        result: dict[str, Any] | None = None
        try:
            async with anyio.create_task_group() as tg:
                if wait_disconnect is not None:

                    async def watch() -> None:
                        await wait_disconnect()
                        self.close()
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch)
                async for event in self.events():
                    if on_event is not None:
                        await on_event(event)
                    if isinstance(event, DoneEvent):
                        result = event.data()
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
        self.cancel_pipeline()
        if self._state == "reserved":
            # Never started (client gone before the first byte): give the queue place back.
            self.gate.cancel(self.tenant)
        self._state = "finished"
