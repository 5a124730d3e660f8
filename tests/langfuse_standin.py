"""A loopback stand-in for a Langfuse server: it decodes what the real SDK sends.

- ``POST /api/public/otel/v1/traces``: gzip (or plain) OTLP/protobuf, decoded with
  ``opentelemetry-proto``'s ``ExportTraceServiceRequest`` into :class:`ExportedSpan` s;
- ``POST /api/public/scores``: the JSON array of scores;
- anything else (project look-ups): ``200 {}``.

``mode`` decides how it answers: ``ok``; ``503`` (every request); ``stall`` (accepts the
request, reads it, and never answers until stopped). ``refuse``: no server at all — use
:func:`refused_url` for a port where nothing listens.

Used by tests/rag/observability, tests/api/test_feedback.py and benchmarks/tracing_overhead.py.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ExportedSpan", "LangfuseStandIn", "refused_url"]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


@dataclass
class ExportedSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_message: str
    events: list[dict[str, Any]] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0

    @property
    def type(self) -> str | None:
        t = self.attributes.get("langfuse.observation.type")
        return str(t) if t is not None else None

    def json_attr(self, key: str) -> Any:
        raw = self.attributes.get(key)
        return json.loads(raw) if isinstance(raw, str) else raw

    def text(self) -> str:
        """Everything about the span that reaches the server, as one string (PII checks)."""
        return json.dumps(
            [self.name, self.attributes, self.resource, self.status_message, self.events],
            default=str,
        )


def decode_traces(body: bytes) -> list[ExportedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ExportedSpan] = []
    for rs in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    ExportedSpan(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None,
                        name=s.name,
                        attributes={kv.key: _value(kv.value) for kv in s.attributes},
                        resource=resource,
                        status_message=s.status.message,
                        events=[
                            {
                                "name": e.name,
                                "attributes": {kv.key: _value(kv.value) for kv in e.attributes},
                            }
                            for e in s.events
                        ],
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return spans


class _QuietServer(ThreadingHTTPServer):
    """Keeps its accepted connections, so that stopping it closes them too: a client's
    kept-alive connection would otherwise still reach a stopped stand-in's handler thread."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connections: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        self.connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # The SDK hangs up on a stalled or failing server (its timeout): not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LangfuseStandIn:
    def __init__(self, mode: str = "ok", port: int = 0):
        self.mode = mode
        self.spans: list[ExportedSpan] = []
        self.scores: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth: set[str] = set()
        self.raw: list[bytes] = []  # every body as received (decompressed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                return body

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
                with outer._lock:
                    outer.requests.append((self.command, self.path))
                    outer.auth.add(self.headers.get("Authorization") or "")
                if outer.mode == "stall":
                    outer._stop.wait(120)
                    return
                if outer.mode == "503":
                    self._answer(503, {"message": "unavailable"})
                    return
                with outer._lock:
                    outer.raw.append(body)
                path = self.path.split("?")[0]
                if path == "/api/public/otel/v1/traces":
                    spans = decode_traces(body)
                    with outer._lock:
                        outer.spans.extend(spans)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/api/public/scores":
                    items = json.loads(body or b"[]")
                    items = items if isinstance(items, list) else [items]
                    with outer._lock:
                        outer.scores.extend(items)
                    self._answer(200, {"succeeded": [{"id": i.get("id")} for i in items]})
                    return
                self._answer(200, {"data": [{"id": "standin-project"}]})

            do_GET = do_POST = do_PUT = do_PATCH = _handle

        # ``port``: a fixed port (a benchmark switching Langfuse off and on under one URL)
        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LangfuseStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> bool:
        """Until ``predicate(self)`` holds (the SDK exports in the background)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def everything(self) -> str:
        """All bodies received, decoded: what left the process (PII checks)."""
        with self._lock:
            return "\n".join([s.text() for s in self.spans] + [json.dumps(x) for x in self.scores])


def refused_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
