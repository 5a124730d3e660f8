"""``tracing.worker: process``: the tracing work of a server in a process of its own.

Building a trace's spans, masking PII in them (spaCy) and exporting them costs a traced
request as much CPU again as a retrieval (~4 ms on 2 cores), and in a thread it also takes
the GIL from the request threads: under load tracing raised p50 by a half or more. Here the
request thread still records (names, times, plain dicts: :class:`LangfuseTracer`'s request
and span code, unchanged); a thread forwards each finished record down a pipe, and a child
process runs an ordinary :class:`LangfuseTracer` that replays, masks and exports it, so the
server keeps its CPU and its GIL for requests.

The child is started with ``spawn`` (no fork of a process with threads and models). Scores
(feedback, eval reports) go through it too. While Langfuse is failing the child says so in
shared memory and traces are dropped on arrival in the server, as with the thread worker.
If the child dies, tracing stops with a warning; requests are never affected.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from rag.observability.langfuse import _QUEUE, _STOP, LangfuseTracer

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from rag.observability import TracingConfig
    from rag.observability.ids import TraceKeys
    from rag.observability.scrub import TraceScrubber

__all__ = ["ProcessLangfuseTracer"]

log = logging.getLogger(__name__)

_START_SECONDS = 60.0  # the child importing the SDK and starting its client


class ProcessLangfuseTracer(LangfuseTracer):
    """:class:`LangfuseTracer` whose spans are built, masked and exported by a child process."""

    def __init__(self, config: TracingConfig, keys: TraceKeys, scrubber: TraceScrubber):
        # No SDK client, provider or exporter here: they live in the child.
        self.config = config
        self.keys = keys
        self.scrubber = scrubber
        self._closed = False
        self.unsent = 0
        self.dropped = 0
        self.failed = 0
        self.recent = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        # [paused_until, exporting_since] of the child's tracer, on the shared monotonic clock
        self._state = context.Array("d", 2, lock=False)
        to_child, self._to_child = context.Pipe(duplex=False)  # (reader, writer)
        self._from_child, from_child = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_child_main,
            args=(config, keys, scrubber.settings, to_child, from_child, self._state),
            name="rag-langfuse-export",
            daemon=True,
        )
        self.process.start()
        to_child.close()  # the child's ends: closed here, so a dead child reads as EOF
        from_child.close()
        if not self._from_child.poll(_START_SECONDS):
            self.process.kill()
            raise RuntimeError(f"the tracing process did not start within {_START_SECONDS:.0f}s")
        started = self._from_child.recv()
        if started[0] != "ready":
            self.process.join(5)
            raise RuntimeError(f"the tracing process could not start: {started[1]}")
        self._queue: queue.Queue[Any] = queue.Queue(_QUEUE)
        self._worker = threading.Thread(target=self._forward, name="rag-langfuse", daemon=True)
        self._worker.start()

    # -- the server side -----------------------------------------------------------------
    def _send(self, message: tuple[Any, ...]) -> bool:
        try:
            with self._send_lock:
                self._to_child.send(message)
            return True
        except (OSError, ValueError) as exc:  # the child is gone: tracing stops, requests go on
            if not self._closed:
                self._closed = True
                log.warning("tracing: the tracing process is gone (%s); tracing is off", exc)
            return False

    def _put(self, message: tuple[Any, ...]) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1

    def _forward(self) -> None:
        """The worker: what the request threads queued (trace records, scores) down the pipe."""
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._send(item if isinstance(item, tuple) else ("trace", item))
            finally:
                self._queue.task_done()

    def _pause_state(self) -> tuple[float, float]:
        return self._state[0], self._state[1]

    def score(
        self,
        trace_id: str | None,
        name: str,
        value: float,
        *,
        comment: str | None = None,
        data_type: str = "NUMERIC",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        # queued like traces (a full pipe never blocks the caller); the comment's PII
        # scrub (spaCy) runs in the child
        self._put(("score", trace_id, name, value, comment, data_type, metadata))

    def eval_report(
        self,
        report_id: str,
        metrics: dict[str, float],
        metadata: dict[str, Any],
        *,
        trace_id: str | None = None,
    ) -> str:
        trace_id = trace_id or self.keys.new_trace_id("evals")
        self._put(("eval_report", report_id, metrics, metadata, trace_id))
        return trace_id

    def _ask(self, message: tuple[Any, ...], timeout: float) -> bool:
        """Send ``message`` and wait at most ``timeout`` for the child's True/False."""
        token = time.monotonic_ns()
        if not self._send((*message, token)):
            return False
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if not self._from_child.poll(left):
                    return False
                reply = self._from_child.recv()
            except (OSError, EOFError):
                return False
            if reply[-1] == token:
                return bool(reply[1])
        return False

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        drained = threading.Thread(target=self._queue.join, daemon=True)
        drained.start()
        drained.join(timeout)
        if drained.is_alive():
            return False
        return self._ask(("flush", max(0.0, deadline - time.monotonic())), timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._closed and not self.process.is_alive():
                return True
            self._closed = True
        timeout = self.config.shutdown_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._queue.put(_STOP)
        self._worker.join(timeout)
        done = self._ask(("stop", max(0.0, deadline - time.monotonic())), timeout + 1.0)
        self.process.join(max(0.5, deadline - time.monotonic()))
        if self.process.is_alive():  # no answer to "stop" (or a hung exit): ended here
            self.process.kill()
            self.process.join(5)
        if not done:
            log.warning(
                "tracing: Langfuse at %s did not take the last spans within %.1fs; dropped them",
                self.config.base_url,
                timeout,
            )
        self._to_child.close()
        self._from_child.close()
        return done


# -- the child -----------------------------------------------------------------------------
def _child_main(
    config: TracingConfig,
    keys: TraceKeys,
    settings: Any,
    inbox: Connection,
    outbox: Connection,
    state: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it stops us
    try:
        from rag.observability.scrub import TraceScrubber

        tracer = LangfuseTracer(config, keys, TraceScrubber(settings))
    except Exception as exc:  # noqa: BLE001 - said to the server, which turns tracing off
        outbox.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    outbox.send(("ready",))
    # Scores, reports, flush and stop run in order on a thread of their own, so that a slow
    # one (the first comment loads the PII model: seconds) never holds up the traces.
    control: queue.Queue[tuple[Any, ...]] = queue.Queue()
    threading.Thread(
        target=_control, args=(tracer, control, outbox), name="rag-langfuse-control", daemon=True
    ).start()
    threading.Thread(target=tracer.scrubber.full, args=("warm up",), daemon=True).start()
    while True:
        try:
            message = inbox.recv() if inbox.poll(0.1) else None
        except (EOFError, OSError):  # the server is gone
            control.put(("stop", config.shutdown_timeout_seconds, None))
            return
        state[0], state[1] = tracer.paused_until, tracer.exporting_since
        if message is None:
            continue
        if message[0] != "trace":
            control.put(message)
        elif tracer.paused():
            tracer.unsent += 1
        else:
            try:
                tracer._queue.put_nowait(message[1])
            except queue.Full:
                tracer.dropped += 1


def _control(tracer: LangfuseTracer, control: queue.Queue[tuple[Any, ...]], outbox: Any) -> None:
    while True:
        message = control.get()
        kind = message[0]
        try:
            if kind == "score":
                _, trace_id, name, value, comment, data_type, metadata = message
                tracer.score(
                    trace_id, name, value, comment=comment, data_type=data_type, metadata=metadata
                )
            elif kind == "eval_report":
                _, report_id, metrics, metadata, trace_id = message
                tracer.eval_report(report_id, metrics, metadata, trace_id=trace_id)
            elif kind == "flush":
                outbox.send(("flushed", tracer.flush(message[1]), message[2]))
            elif kind == "stop":
                done = tracer.shutdown(message[1])
                if message[2] is not None:
                    outbox.send(("stopped", done, message[2]))
                _exit()
        except Exception as exc:  # noqa: BLE001 - one bad message never stops the child
            log.warning("tracing process: could not handle %s (%s)", kind, exc)


def _exit() -> None:
    # The tracer is shut down (its spans and scores sent or given up): nothing is left for
    # the interpreter's exit hooks but seconds of module teardown the server would wait on.
    os._exit(0)
