"""Talking to the process that holds the index (``rag watch`` / ``rag serve``).

An embedded store can be open in one process only, so that process writes
``<data_dir>/daemon.json`` (pid, loopback port and a random token; mode 0600) and answers a
tiny HTTP control API; ``rag status`` / ``rag export`` / ``rag reindex`` / ``rag query`` ask it
when it is running.

Every call must carry ``Authorization: Bearer <token>`` (only the data dir's owner can read
it), a ``Host`` of ``127.0.0.1:<port>`` or ``localhost:<port>`` (a web page that rebinds a DNS
name to 127.0.0.1 sends its own name), and POST bodies must be ``application/json`` (what a
browser form or a no-preflight ``text/plain`` fetch cannot send), with a ``Content-Length`` of
at most ``MAX_BODY`` bytes (400 for one that is no number, 411 for a chunked body, 413 past it).
Any other method than GET and POST is a 405.

Routes::

    GET  /healthz        {"ok": true}
    GET  /status         the index's status plus the daemon's
    GET  /export         one JSON line per chunk (application/x-ndjson)
    POST /reindex        blue/green rebuild, switched only when the evals find it no worse
    POST /reindex/force  the same, switched whatever the evals say
    POST /sync           ask for a reconcile
    POST /prompts/release  body {"prompt": "answer@v4", "steps": [5, 50, 100], "force": false}:
                         the golden-set gate on the daemon's index, then the release
    POST /query          body: a Query as JSON → Answer.as_json()
    POST /query/stream   body: a Query as JSON → one {"event": kind, "data": ...} line per
                         stream event (token…, citations, done), each sent as it is produced

The query routes speak the library's typed boundary (:mod:`rag.core.types`): the body holds
:class:`~rag.core.types.Query`'s fields (``question`` required; every other field optional;
an unknown field or a value of the wrong type is a 422 that names it), and the process answers
with its one query pipeline, the same one its HTTP API uses. Errors are
``{"error": {"type", "message"}}``; an error after a stream has started is its last line,
``{"event": "error", "data": {"type", "message"}}``. A client that hangs up (``rag export |
head -3``) ends its request quietly: the rest is not produced, and nothing is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import TypeAdapter, ValidationError

from rag.core.errors import RagError
from rag.core.types import (
    Answer,
    Citation,
    CitationsEvent,
    DoneEvent,
    Query,
    ResetEvent,
    StreamEvent,
    TokenEvent,
)

__all__ = [
    "QUERY_FIELDS",
    "ControlServer",
    "DaemonClient",
    "DaemonError",
    "InvalidQuery",
    "QueryRunner",
    "event_from_json",
    "event_to_json",
    "find_daemon",
    "query_from_json",
    "query_to_json",
]

log = logging.getLogger("rag.control")

_FILE = "daemon.json"
MAX_BODY = 1_000_000  # bytes of a request body: a query is a few kB

# -- the wire format: Query in, Answer or events out -----------------------------------------
QUERY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Query))
_QUERY = TypeAdapter(Query)


class InvalidQuery(ValueError):
    """A query body the control API refuses (HTTP 400 or 422); ``str()`` says what to fix."""

    def __init__(self, message: str, *, status: int = 422, kind: str = "invalid_query"):
        super().__init__(message)
        self.status = status
        self.kind = kind


def query_to_json(query: Query) -> dict[str, Any]:
    """Every field of ``query``, as the control API's request body."""
    body = {name: getattr(query, name) for name in QUERY_FIELDS}
    body["history"] = [dataclasses.asdict(turn) for turn in query.history]
    return body


def query_from_json(raw: bytes) -> Query:
    """A request body → :class:`Query`, every field checked strictly (JSON types as declared:
    ``"5"`` is no ``max_tokens``, ``"yes"`` no ``generate``); raises :class:`InvalidQuery`."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidQuery(
            f"the body is not JSON: {exc}", status=400, kind="invalid_json"
        ) from None
    except RecursionError:
        raise InvalidQuery(
            "the body is not JSON a query can be: it is nested too deeply",
            status=400,
            kind="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidQuery(
            f"the body must be a JSON object with the query's fields ({', '.join(QUERY_FIELDS)})",
            status=400,
            kind="invalid_json",
        )
    unknown = sorted(set(body) - set(QUERY_FIELDS))
    if unknown:
        raise InvalidQuery(
            f"unknown field(s) {', '.join(map(repr, unknown))}: a query has "
            f"{', '.join(QUERY_FIELDS)}",
            kind="unknown_field",
        )
    try:
        query = _QUERY.validate_json(json.dumps(body), strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidQuery(f"invalid query: {problems}", kind="invalid_value") from None
    if query.temperature is not None and not (
        math.isfinite(query.temperature) and query.temperature >= 0
    ):
        raise InvalidQuery(
            f"invalid query: temperature: must be a number >= 0, not {query.temperature}",
            kind="invalid_value",
        )
    if query.max_tokens is not None and query.max_tokens < 1:
        raise InvalidQuery(
            f"invalid query: max_tokens: must be at least 1, not {query.max_tokens}",
            kind="invalid_value",
        )
    return query


def event_to_json(event: StreamEvent) -> dict[str, Any]:
    """One line of ``/query/stream`` (also what ``rag query --stream --json`` prints)."""
    return {"event": event.kind, "data": event.data()}


def event_from_json(line: dict[str, Any]) -> StreamEvent:
    """The typed event back from :func:`event_to_json`'s line; an ``error`` line raises
    :class:`DaemonError`."""
    kind = line.get("event")
    data: Any = line.get("data")
    if kind == "token":
        return TokenEvent(str(data))
    if kind == "reset":
        return ResetEvent(**data)
    if kind == "citations":
        return CitationsEvent([Citation.model_validate(c) for c in data])
    if kind == "done":
        return DoneEvent(Answer.model_validate(data))
    if kind == "error":
        raise DaemonError(str((data or {}).get("message") or "the daemon's stream failed"))
    raise DaemonError(f"the daemon sent an unknown stream event {kind!r}")


# -- the client ------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DaemonError(RuntimeError):
    """The daemon refused or failed a call; ``str()`` is its message."""


def _error_of(resp: httpx.Response) -> DaemonError:
    try:
        message = resp.json().get("error", {}).get("message")
    except (ValueError, AttributeError):
        message = None
    return DaemonError(message or f"daemon answered {resp.status_code}")


class DaemonClient:
    """The control API of a running daemon; ``run``/``stream`` answer like a query pipeline."""

    def __init__(self, base_url: str, token: str, timeout: float = 600.0):
        self.base_url = base_url
        self._client = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/status")

    def reindex(self, force: bool = False) -> dict[str, Any]:
        return self._json("POST", "/reindex/force" if force else "/reindex")

    def sync(self) -> dict[str, Any]:
        return self._json("POST", "/sync")

    def release_prompt(self, body: dict[str, Any]) -> dict[str, Any]:
        """``rag prompts release`` run by the daemon (it holds the index the gate reads)."""
        resp = self._client.post("/prompts/release", json=body)
        if resp.status_code >= 400:
            raise _error_of(resp)
        result: dict[str, Any] = resp.json()
        return result

    def run(self, query: Query) -> Answer:
        """The running daemon answers with its own pipeline (it holds the store open)."""
        resp = self._client.post("/query", json=query_to_json(query))
        if resp.status_code >= 400:
            raise _error_of(resp)
        return Answer.model_validate(resp.json())

    def stream(self, query: Query) -> Iterator[StreamEvent]:
        """The answer's events as the daemon's pipeline produces them."""
        with self._client.stream("POST", "/query/stream", json=query_to_json(query)) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _error_of(resp)
            for line in resp.iter_lines():
                if line:
                    yield event_from_json(json.loads(line))

    def export_lines(self) -> Iterator[str]:
        """One JSON line per chunk; raises :class:`DaemonError` when the export fails."""
        with self._client.stream("GET", "/export") as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _error_of(resp)
            for line in resp.iter_lines():
                if line.startswith('{"error": '):  # rows start with their "id"
                    raise DaemonError(json.loads(line)["error"]["message"])
                yield line

    def _json(self, method: str, path: str) -> dict[str, Any]:
        resp = self._client.request(method, path)
        if resp.status_code >= 400:
            raise _error_of(resp)
        data: dict[str, Any] = resp.json()
        return data

    def close(self) -> None:
        self._client.close()


def find_daemon(data_dir: Path) -> DaemonClient | None:
    path = data_dir / _FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(info.get("pid", -1))):
        return None
    client = DaemonClient(f"http://127.0.0.1:{int(info['port'])}", str(info.get("token", "")))
    try:
        client._client.get("/healthz", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        client.close()
        return None
    return client


# -- the server ------------------------------------------------------------------------------
Handler = Callable[[], Any]

# What a client that hangs up raises on the next write: BrokenPipeError, ConnectionResetError,
# ConnectionAbortedError (all ConnectionError).
_GONE = ConnectionError


class QueryRunner(Protocol):
    """What the control API needs of the process's query pipeline (``QueryPipeline``)."""

    def run(self, query: Query) -> Answer: ...

    def stream(self, query: Query) -> Iterator[StreamEvent]: ...


class _Refusal(Exception):
    """A request refused before its body is read: (status, type, message)."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr for anything a handler lets out; a client
        # that went away (mid-request, mid-response) is no error of this process.
        exc = sys.exc_info()[1]
        if isinstance(exc, _GONE):
            log.debug("control API: the client hung up (%s)", type(exc).__name__)
            return
        log.error("control API: request failed", exc_info=exc)


def _close(iterator: Iterator[Any]) -> None:
    """Stop a generator now (a stream's generation, an export's scroll), in this thread."""
    close = getattr(iterator, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.exception("control API: closing a stream failed")


class ControlServer:
    """Loopback-only HTTP server: GET /healthz, /status, /export; POST /reindex, /sync,
    /query, /query/stream (the last two with ``pipeline``)."""

    def __init__(
        self,
        data_dir: Path,
        status: Handler,
        export: Callable[[], Iterator[dict[str, Any]]],
        reindex: Callable[..., Any],  # reindex(force=False)
        sync: Handler,
        pipeline: QueryRunner | None = None,
        release_prompt: Callable[[dict[str, Any]], Any] | None = None,
    ):
        self.data_dir = data_dir
        self.token = secrets.token_urlsafe(32)
        token = self.token.encode()
        routes: dict[tuple[str, str], Handler] = {
            ("GET", "/healthz"): lambda: {"ok": True},
            ("GET", "/status"): status,
            ("POST", "/reindex"): reindex,
            ("POST", "/reindex/force"): lambda: reindex(force=True),
            ("POST", "/sync"): sync,
        }

        class _Handler(BaseHTTPRequestHandler):
            # Each stream line leaves at once (no Nagle delay between tokens).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def __getattr__(self, name: str) -> Any:
                # http.server answers a method it has no do_<METHOD> for with an HTML 501; here
                # every method goes through the same checks, and one not served is a JSON 405.
                if name.startswith("do_"):
                    return lambda: self._dispatch(name[3:])
                raise AttributeError(name)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # http.server's own refusals (a request line or headers past its limits, a
                # malformed request) in this API's error shape, not as its HTML page.
                try:
                    phrase = HTTPStatus(code).phrase
                except ValueError:
                    phrase = "error"
                self.close_connection = True
                self._send_error(code, re.sub(r"\W+", "_", phrase.lower()), message or phrase)

            def _send_json(
                self, code: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _send_error(
                self, code: int, kind: str, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._send_json(code, {"error": {"type": kind, "message": message}}, headers)

            def _read_body(self) -> bytes:
                """The body, as its ``Content-Length`` says; a length that is no number of
                bytes, a chunked body or one past ``MAX_BODY`` raises :class:`_Refusal`
                (``int()`` of the header used to escape the handler: no answer at all)."""
                if self.headers.get("Transfer-Encoding"):
                    raise _Refusal(
                        411, "length_required", "send the body with a Content-Length, not chunked"
                    )
                raw = (self.headers.get("Content-Length") or "0").strip()
                if not (raw.isascii() and raw.isdigit()):
                    raise _Refusal(
                        400,
                        "invalid_content_length",
                        f"Content-Length must be a number of bytes, not {raw[:20]!r}",
                    )
                length = int(raw)
                if length > MAX_BODY:
                    raise _Refusal(
                        413,
                        "payload_too_large",
                        f"the body ({length} bytes) is over the control API's limit of "
                        f"{MAX_BODY} bytes",
                    )
                return self.rfile.read(length) if length else b""

            def _start_lines(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()

            def _line(self, body: Any) -> None:
                self.wfile.write(json.dumps(body, ensure_ascii=False, default=str).encode() + b"\n")

            def _refused(self, method: str, body: bytes) -> tuple[int, str, str] | None:
                """Why this request is refused, before anything is run."""
                port = int(self.server.server_address[1])  # type: ignore[index]
                host = (self.headers.get("Host") or "").lower()
                if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                    return 421, "wrong_host", "the control API answers only 127.0.0.1 requests"
                scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
                if scheme != "Bearer" or not hmac.compare_digest(given.encode(), token):
                    return (
                        401,
                        "unauthorized",
                        "missing or wrong control token (it is in <data dir>/daemon.json)",
                    )
                if method == "POST" and body:
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    if ctype.lower() != "application/json":
                        return 415, "unsupported_media_type", "send the body as application/json"
                return None

            def _dispatch(self, method: str) -> None:
                try:
                    try:
                        body = self._read_body()
                    except _Refusal as refusal:
                        self.close_connection = True
                        self._send_error(refusal.status, refusal.kind, refusal.message)
                        return
                    self._route(method, body)
                except _GONE as exc:
                    # `rag export | head -3`, a Ctrl-C'd `rag query --stream`: nobody reads on.
                    log.debug("control API: %s %s: the client hung up (%s)", method, self.path, exc)
                    self.close_connection = True

            def _route(self, method: str, body: bytes) -> None:
                refused = self._refused(method, body)
                if refused is not None:
                    self._send_error(*refused)
                    return
                if method not in ("GET", "POST"):
                    self._send_error(
                        405,
                        "method_not_allowed",
                        f"{method} is not served here: GET or POST",
                        {"Allow": "GET, POST"},
                    )
                    return
                if method == "GET" and self.path == "/export":
                    self._export()
                    return
                if method == "POST" and self.path in ("/query", "/query/stream"):
                    if pipeline is None:
                        self._send_error(404, "not_found", "this process answers no queries")
                        return
                    self._query(pipeline, body, stream=self.path == "/query/stream")
                    return
                if method == "POST" and self.path == "/prompts/release":
                    self._release(body)
                    return
                handler = routes.get((method, self.path))
                if handler is None:
                    self._send_error(404, "not_found", self.path)
                    return
                try:
                    result = handler()
                except Exception as exc:
                    log.exception("control API: %s %s failed", method, self.path)
                    self._send_error(500, type(exc).__name__, str(exc))
                    return
                self._send_json(200, result)

            def _release(self, body: bytes) -> None:
                if release_prompt is None:
                    self._send_error(404, "not_found", "this process releases no prompts")
                    return
                try:
                    payload = json.loads(body or b"{}")
                    steps = payload.get("steps") if isinstance(payload, dict) else None
                    if (
                        not isinstance(payload, dict)
                        or not isinstance(payload.get("prompt"), str)
                        or not isinstance(payload.get("force", False), bool)
                        or not (
                            steps is None
                            or (
                                isinstance(steps, list)
                                and all(type(x) is int and 0 < x <= 100 for x in steps)
                            )
                        )
                    ):
                        raise ValueError(
                            "expected {'prompt': 'NAME@VERSION', 'steps': [5, 50, 100] or null, "
                            "'force': false}"
                        )
                except ValueError as exc:
                    self._send_error(400, "invalid_body", str(exc))
                    return
                try:
                    result = release_prompt(payload)
                except RagError as exc:
                    self._send_error(409, "release_refused", str(exc))
                    return
                except Exception as exc:
                    log.exception("control API: a prompt release failed")
                    self._send_error(500, type(exc).__name__, str(exc))
                    return
                self._send_json(200, result)

            def _export(self) -> None:
                self._lines(
                    export,
                    lambda row: row,
                    lambda error: {"error": error},
                    "the export",
                    caller_input=False,
                )

            def _query(self, pipeline: QueryRunner, body: bytes, stream: bool) -> None:
                try:
                    query = query_from_json(body)
                except InvalidQuery as exc:
                    self._send_error(exc.status, exc.kind, str(exc))
                    return
                if stream:
                    self._lines(
                        lambda: pipeline.stream(query),
                        event_to_json,
                        lambda error: {"event": "error", "data": error},
                        "a streamed query",
                    )
                    return
                try:
                    result = pipeline.run(query).as_json()
                except Exception as exc:  # noqa: BLE001 - reported to the caller, the daemon keeps running
                    self._send_error(*self._failure(exc, "a query"))
                    return
                self._send_json(200, result)

            def _failure(
                self, exc: BaseException, what: str, caller_input: bool = True
            ) -> tuple[int, str, str]:
                """(status, type, message) for what a handler raised; logged when it is ours."""
                if caller_input and isinstance(exc, ValueError):
                    # A bad question, filter or prompt: the caller's doing, said as such.
                    return 400, "invalid_request", str(exc)
                log.error("control API: %s failed", what, exc_info=exc)
                return 500, type(exc).__name__, str(exc)

            def _lines(
                self,
                start: Callable[[], Iterator[Any]],
                encode: Callable[[Any], Any],
                error_line: Callable[[dict[str, str]], Any],
                what: str,
                caller_input: bool = True,
            ) -> None:
                """What ``start()`` yields, as JSON lines, each written as it is produced. The
                first item (or the error before it) decides the status: a bad question or
                prompt is still a 400. A later error is the last line (``{"event": "error",
                ...}`` on /query/stream, ``{"error": ...}`` on /export). A client that hangs up
                (the write raises) stops the items here."""
                items: Iterator[Any] | None = None
                try:
                    try:
                        items = start()
                        pending = next(items, None)
                    except Exception as exc:  # noqa: BLE001 - reported to the caller
                        self._send_error(*self._failure(exc, what, caller_input))
                        return
                    self._start_lines()
                    while pending is not None:
                        self._line(encode(pending))  # raises when the client is gone
                        try:
                            pending = next(items, None)
                        except Exception as exc:  # noqa: BLE001 - the last line says what failed
                            _, kind, message = self._failure(exc, what, caller_input)
                            self._line(error_line({"type": kind, "message": message}))
                            return
                finally:
                    if items is not None:
                        _close(items)  # generation (or the store's scroll) stops with the reader

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rag-control", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / (_FILE + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # 0600 from the start: the token must never be readable by anyone else, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "port": self.port, "token": self.token}, fh)
        os.replace(tmp, self.data_dir / _FILE)

    def stop(self) -> None:
        try:
            info = json.loads((self.data_dir / _FILE).read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                (self.data_dir / _FILE).unlink()
        except (OSError, ValueError):
            pass
        self._server.shutdown()
        self._server.server_close()
