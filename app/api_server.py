"""The HTTP API and chat page as a :class:`app.runtime.Service`: what ``rag serve`` adds to the
watch daemon (``rag watch`` never imports it, nor ``api``).
"""

from __future__ import annotations

import logging
import math
import threading
import time

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import create_app
from app.runtime import Echo
from ingestion.daemon import WatchDaemon
from rag.core.config import Settings
from rag.indexing.index import Index
from rag.query.pipeline import QueryPipeline

__all__ = ["ApiServer", "SafeH11Protocol"]

log = logging.getLogger("rag.api")

# How long a stopped answer may take to reach its next token (a prompt evaluated in one
# native call by the local model takes seconds on a small CPU).
STREAM_STOP_SECONDS = 30.0
# uvicorn's own deadline comes this long after the grace period: time for the answers stopped
# then to reach their next token and send their 503.
STOP_MARGIN_SECONDS = 10.0


class SafeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, except when a request turns out malformed after its head was read
    (a bad chunk in its body, say) and uvicorn answers 400 itself:

    - the route already started for that request is told at once that the client left (as
      ``connection_lost`` would tell it, later): its answer went into h11's error state and was
      logged as its unhandled error;
    - in answer to ``HEAD`` uvicorn wrote the 400's text as a body, which h11 refuses: that
      error escaped ``data_received`` (asyncio logged a "Fatal error"). The 400's head has left
      by then; the connection closes, as after any other 400."""

    def send_400_response(self, msg: str) -> None:
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()  # a receive() waiting for the body wakes to the disconnect
        try:
            super().send_400_response(msg)
        except h11.LocalProtocolError:
            self.transport.close()


class ApiServer:
    """The API and chat page: uvicorn in a thread of this process, over the runtime's index,
    answering with the runtime's query pipeline (the one the control API uses too).

    In a thread uvicorn leaves signals alone: the runtime's handlers stop everything.
    """

    def __init__(self, settings: Settings, host: str, port: int, echo: Echo | None = None):
        self.settings = settings
        self.host = host
        self.port = port
        self.echo = echo or log.info
        self.app: FastAPI | None = None  # once started
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(
        self, index: Index, daemon: WatchDaemon, pipeline: QueryPipeline, timeout: float = 30.0
    ) -> None:
        self.app = create_app(
            self.settings, index=index, pipeline=pipeline, daemon=daemon, bind_host=self.host
        )
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            http=SafeH11Protocol,
            # uvicorn cancels what still runs at its deadline (a traceback and a 500 each):
            # this server stops its answers at the grace period itself, so uvicorn's comes later.
            timeout_graceful_shutdown=math.ceil(
                self.settings.api.shutdown_grace_seconds + STOP_MARGIN_SECONDS
            ),
        )
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(target=server.run, name="rag-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            server.should_exit = True
            raise RuntimeError(
                f"the API did not start on {self.host}:{self.port}; see the log above"
            )
        self.echo(f"serving the API and chat page on http://{self.host}:{self.port}")

    def stop(self) -> None:
        """Graceful: stop accepting, let running answers finish within the grace period
        (``api.shutdown_grace_seconds``), answer queued ones 503 ``shutting_down`` at once.

        Before this returns every thread pumping an answer has stopped and been joined: the
        runtime closes the pipeline and its models next, and the interpreter exits after that.
        An answer still running near the end of the grace period is stopped at its next token
        (a 503 ``shutting_down``, or an ``error`` event on a stream), before uvicorn's own
        deadline (``STOP_MARGIN_SECONDS`` later) would cancel its request (a traceback, a 500)."""
        if self._server is None or self._thread is None:
            return
        grace = self.settings.api.shutdown_grace_seconds
        service = self.app.state.rag.service if self.app is not None else None
        if service is not None:
            service.stop_accepting()
        self._server.should_exit = True
        left: list[str] = []
        if service is not None:
            service.streams.wait(grace)
            left = service.streams.stop(timeout=STREAM_STOP_SECONDS)
        self._thread.join(grace + STOP_MARGIN_SECONDS + 5)
        if service is not None:
            left = service.streams.stop(timeout=STREAM_STOP_SECONDS) or left
        if left:
            log.warning(
                "stopping with %d answer thread(s) still in a model call: %s",
                len(left),
                ", ".join(left),
            )
        self._server = self._thread = None
