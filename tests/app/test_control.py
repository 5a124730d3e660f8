"""The loopback control API (``rag status|export|reindex|query`` talking to a running daemon):
a token from a 0600 file on every call, the Host checked, JSON bodies only; queries as the
library's typed ``Query`` in, ``Answer`` or stream events out; clients that hang up are no error.

The server here holds a stand-in for the query pipeline (``Recorder``): these tests are about
what the server does with the request (validation, the wire format, when bytes leave, a
client going away), so the stand-in records the ``Query`` it is handed and scripts the events.
The real pipeline behind the real server is tested in ``test_runtime.py``. The export is a
stand-in too where a test needs an export larger than every buffer between the two processes
(the socket's, the pipe's, stdout's): an endless one.
"""

from __future__ import annotations

import itertools
import json
import logging
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.control import (
    QUERY_FIELDS,
    ControlServer,
    DaemonClient,
    DaemonError,
    find_daemon,
    query_from_json,
    query_to_json,
)
from rag.core.types import (
    Answer,
    Citation,
    CitationsEvent,
    DoneEvent,
    Query,
    StreamEvent,
    TokenEvent,
    Turn,
)
from tests.api.fuzzing import send_raw
from tests.conftest import RagCli

CITATION = Citation(n=1, source="a.md", start=0, end=5, quote="quote", score=0.9, verified=True)
# Every field set, none to its default: what reaches the pipeline must equal this.
FULL = Query(
    question="How long are backups kept?",
    filters={"source": ["a.md", "b.md"], "page": 2},
    prompt="answer@v1",
    generate=False,
    user="u-7",
    session="s-42",
    tenant="acme",
    groups=("eng", "hr"),
    asker="alice",
    temperature=0.3,
    max_tokens=77,
    trace_id="0123456789abcdef0123456789abcdef",
    history=(
        Turn("user", "How long are backups kept?"),
        Turn("assistant", "Backups are kept for 35 days [1]."),
    ),
)


def _answer(text: str) -> Answer:
    return Answer(
        answer=text,
        abstained=False,
        degraded=False,
        generator="stand-in",
        citations=[CITATION],
        prompt=None,
    )


@dataclass
class Recorder:
    """Stands in for ``QueryPipeline``: records each query; ``stream`` yields ``tokens``, each
    after ``gate(i)`` returns (a test holds the stream there), then citations and done."""

    tokens: list[str] = field(default_factory=lambda: ["One.", " Two.", " Three."])
    queries: list[Query] = field(default_factory=list)
    gate: Any = None
    endless: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def run(self, query: Query) -> Answer:
        self.queries.append(query)
        return _answer("".join(self.tokens))

    def stream(self, query: Query) -> Iterator[StreamEvent]:
        self.queries.append(query)
        return self._events()

    def _events(self) -> Iterator[StreamEvent]:
        try:
            words = itertools.cycle(self.tokens) if self.endless else iter(self.tokens)
            for i, token in enumerate(words):
                if self.gate is not None:
                    self.gate(i)
                yield TokenEvent(token)
            yield CitationsEvent([CITATION])
            yield DoneEvent(_answer("".join(self.tokens)))
        finally:
            self.closed.set()  # generation stopped (the end, or the client went away)


class EndlessExport:
    """An export larger than any buffer: rows until the reader goes away."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.rows = 0

    def __call__(self) -> Iterator[dict[str, Any]]:
        try:
            for i in itertools.count():
                self.rows += 1
                yield {"id": f"c{i}", "source": "big.md", "text": "x" * 2000}
        finally:
            self.closed.set()


class Exports:
    """The control server's export source; a test may swap in an endless one."""

    def __init__(self) -> None:
        self.rows: Callable[[], Iterator[dict[str, Any]]] = lambda: iter(
            [{"id": "c1", "text": "secret chunk"}]
        )

    def __call__(self) -> Iterator[dict[str, Any]]:
        return self.rows()


@pytest.fixture()
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture()
def exports() -> Exports:
    return Exports()


@pytest.fixture()
def control(tmp_path: Path, recorder: Recorder, exports: Exports) -> Iterator[ControlServer]:
    server = ControlServer(
        tmp_path / "data",
        status=lambda: {"documents": 1},
        export=exports,
        reindex=lambda: {"reindexed": True},
        sync=lambda: {"requested": True},
        pipeline=recorder,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def client(control: ControlServer, tmp_path: Path) -> Iterator[DaemonClient]:
    found = find_daemon(tmp_path / "data")
    assert found is not None
    yield found
    found.close()


def _url(server: ControlServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def _auth(server: ControlServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def _no_traceback(stderr: str, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing on the server's stderr about the request, nothing logged above debug."""
    for sign in ("Traceback", "BrokenPipe", "ConnectionReset", "Exception"):
        assert sign not in stderr, stderr
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]


def _quiet_hang_up(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The server noted the hang-up at debug level and printed nothing about it."""
    deadline = time.monotonic() + 10
    noted = False
    while not noted and time.monotonic() < deadline:
        noted = any("hung up" in r.getMessage() for r in caplog.records)
        time.sleep(0.05)
    _no_traceback(capfd.readouterr().err, caplog)
    assert noted, "the hang-up is noted (at debug level)"


def test_the_token_file_is_private_and_the_client_uses_it(
    control: ControlServer, client: DaemonClient, recorder: Recorder, tmp_path: Path
) -> None:
    info_path = tmp_path / "data" / "daemon.json"
    assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
    info = json.loads(info_path.read_text())
    assert info["token"] == control.token and len(control.token) >= 32
    assert client.status() == {"documents": 1}
    answer = client.run(Query("q"))
    assert answer.answer == "One. Two. Three." and recorder.queries == [Query("q")]
    assert list(client.export_lines()) == [json.dumps({"id": "c1", "text": "secret chunk"})]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/export"),
        ("GET", "/status"),
        ("POST", "/reindex"),
        ("POST", "/query"),
        ("POST", "/query/stream"),
    ],
)
def test_every_call_without_the_token_is_refused(
    control: ControlServer, recorder: Recorder, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": control.token}):
        resp = httpx.request(method, _url(control, path), headers=headers, json={"question": "q"})
        assert resp.status_code == 401, (headers, resp.text)
        assert "secret chunk" not in resp.text
    assert recorder.queries == []


def test_a_foreign_host_header_is_refused(control: ControlServer) -> None:
    # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host.
    auth = _auth(control)
    ok = httpx.get(_url(control, "/export"), headers={**auth, "Host": f"localhost:{control.port}"})
    assert ok.status_code == 200
    bad = httpx.get(
        _url(control, "/export"), headers={**auth, "Host": f"evil.example:{control.port}"}
    )
    assert bad.status_code == 421 and "secret chunk" not in bad.text


def test_post_bodies_must_be_json(control: ControlServer, recorder: Recorder) -> None:
    # What a browser can send cross-origin without a preflight: text/plain and form bodies.
    auth = _auth(control)
    for path in ("/query", "/query/stream"):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
            resp = httpx.post(
                _url(control, path),
                headers={**auth, "Content-Type": ctype},
                content=b'{"question": "q"}',
            )
            assert resp.status_code == 415, (path, ctype)
    assert recorder.queries == []
    good = httpx.post(_url(control, "/query"), headers=auth, json={"question": "q"})
    assert good.status_code == 200 and recorder.queries == [Query("q")]


def test_every_query_field_reaches_the_pipeline(client: DaemonClient, recorder: Recorder) -> None:
    # FULL sets every field of Query: a field the wire format dropped would come back default.
    assert set(QUERY_FIELDS) == {f.name for f in fields(Query)}
    defaults = Query(FULL.question)
    assert all(
        getattr(FULL, name) != getattr(defaults, name)
        for name in QUERY_FIELDS
        if name != "question"
    )
    client.run(FULL)
    assert recorder.queries == [FULL]
    events = list(client.stream(replace(FULL, generate=True)))
    assert recorder.queries[-1] == replace(FULL, generate=True)
    assert [e.kind for e in events] == ["token", "token", "token", "citations", "done"]
    assert isinstance(events[-1], DoneEvent) and events[-1].answer.answer == "One. Two. Three."
    assert isinstance(events[-2], CitationsEvent) and events[-2].citations == [CITATION]
    assert query_from_json(json.dumps(query_to_json(FULL)).encode()) == FULL


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"question": "q", "stream": True}, 422, "unknown field(s) 'stream'"),
        ({"question": "q", "sesion": "s"}, 422, "unknown field(s) 'sesion'"),
        ({"question": "q", "max_tokens": "50"}, 422, "max_tokens: Input should be a valid integer"),
        ({"question": "q", "max_tokens": 0}, 422, "max_tokens: must be at least 1"),
        (
            {"question": "q", "temperature": "hot"},
            422,
            "temperature: Input should be a valid number",
        ),
        ({"question": "q", "temperature": -0.5}, 422, "temperature: must be a number >= 0"),
        ({"question": "q", "generate": "no"}, 422, "generate: Input should be a valid boolean"),
        ({"question": "q", "filters": ["source"]}, 422, "filters: Input should be an object"),
        ({"question": 42}, 422, "question: Input should be a valid string"),
        ({}, 422, "question: Field required"),
        (["q"], 400, "must be a JSON object"),
        ("{not json", 400, "not JSON"),
        # Past the JSON parser's depth: RecursionError is no ValueError (found by fuzzing).
        ('{"question": ' + "[" * 30_000, 400, "nested too deeply"),
    ],
)
def test_a_bad_query_body_is_refused_clearly(
    control: ControlServer,
    recorder: Recorder,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    body: Any,
    status: int,
    says: str,
) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = {**_auth(control), "Content-Type": "application/json"}
    for path in ("/query", "/query/stream"):
        resp = httpx.post(_url(control, path), headers=headers, content=raw)
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert says in error["message"], error
    assert recorder.queries == [], "nothing reaches the pipeline"
    _no_traceback(capfd.readouterr().err, caplog)


@pytest.mark.parametrize(
    ("request_line", "framing", "status", "kind"),
    [
        ("POST /query", "Content-Length: abc", 400, "invalid_content_length"),
        ("POST /query", "Content-Length: 1e3", 400, "invalid_content_length"),
        ("POST /query", "Content-Length: -5", 400, "invalid_content_length"),
        ("POST /query/stream", f"Content-Length: {10**12}", 413, "payload_too_large"),
        ("POST /query", "Transfer-Encoding: chunked", 411, "length_required"),
        ("PUT /query", "Content-Length: 2", 405, "method_not_allowed"),
        ("DELETE /status", "Content-Length: 2", 405, "method_not_allowed"),
        ("BREW /status", "Content-Length: 2", 405, "method_not_allowed"),
    ],
)
def test_bad_framing_and_other_methods_get_a_json_answer(
    control: ControlServer,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    request_line: str,
    framing: str,
    status: int,
    kind: str,
) -> None:
    # Found by fuzzing (tests/api/fuzzing.py): a Content-Length that is no number, or negative,
    # closed the connection without an answer (a ValueError in the handler); a huge one was
    # read into memory; PUT, DELETE and unknown methods got http.server's HTML 501.
    head = (
        f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{control.port}\r\n"
        f"Authorization: Bearer {control.token}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    )
    sent = send_raw(control.port, head.encode() + b"{}", half_close=True, timeout=10)
    assert sent.status == status, (sent.error, sent.body[:200])
    assert sent.json()["error"]["type"] == kind
    if status == 405:
        assert sent.headers["allow"] == "GET, POST"
    assert recorder.queries == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /status HTTP/1.1\r\n" + b"X: y\r\n" * 120 + b"\r\n", 431),
    ],
)
def test_requests_http_server_refuses_get_the_json_error_shape(
    control: ControlServer, data: bytes, status: int
) -> None:
    # Found by fuzzing: these answers came as http.server's HTML error page.
    sent = send_raw(control.port, data, half_close=True, timeout=10)
    assert sent.status == status, sent.error
    assert sent.headers["content-type"] == "application/json"
    error = sent.json()["error"]
    assert error["type"] and error["message"], error


def test_a_pipeline_error_is_the_callers_message_not_a_traceback(
    control: ControlServer, client: DaemonClient, recorder: Recorder
) -> None:
    def refuse(query: Query) -> Answer:
        raise ValueError("the question is empty: ask something")

    recorder.run = refuse  # type: ignore[method-assign]
    resp = httpx.post(_url(control, "/query"), headers=_auth(control), json={"question": " "})
    assert resp.status_code == 400 and resp.json()["error"] == {
        "type": "invalid_request",
        "message": "the question is empty: ask something",
    }
    with pytest.raises(DaemonError, match="question is empty"):
        client.run(Query(" "))


def test_stream_and_export_failures_are_said_not_printed(
    control: ControlServer,
    client: DaemonClient,
    recorder: Recorder,
    exports: Exports,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(query: Query) -> Iterator[StreamEvent]:
        # As QueryPipeline.stream checks the question before its first event.
        raise ValueError("the question is empty: ask something")

    recorder.stream = refuse  # type: ignore[method-assign]
    resp = httpx.post(
        _url(control, "/query/stream"), headers=_auth(control), json={"question": " "}
    )
    assert resp.status_code == 400 and "question is empty" in resp.json()["error"]["message"]

    def half(query: Query) -> Iterator[StreamEvent]:
        yield TokenEvent("One.")
        raise RuntimeError("the backend died")

    recorder.stream = half  # type: ignore[method-assign]
    seen: list[str] = []
    with pytest.raises(DaemonError, match="the backend died"):
        for event in client.stream(Query("q")):
            seen.append(event.kind)
    assert seen == ["token"], "what came before the failure arrived"

    def broken_export() -> Iterator[dict[str, Any]]:
        yield {"id": "c1", "text": "first"}
        raise RuntimeError("the store went away")

    exports.rows = broken_export
    with pytest.raises(DaemonError, match="the store went away"):
        list(client.export_lines())
    # Failures of this process are logged (once each), never printed by the HTTP server.
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and "Exception occurred" not in stderr, stderr
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == [
        "control API: a streamed query failed",
        "control API: the export failed",
    ]


def test_stream_events_leave_as_they_are_produced(client: DaemonClient, recorder: Recorder) -> None:
    # Token i+1 is produced only once the client holds token i: a server that collected the
    # answer before sending would leave every gate to time out.
    received: list[threading.Event] = [threading.Event() for _ in recorder.tokens]
    opened: list[bool] = []

    def gate(i: int) -> None:
        if i > 0:
            opened.append(received[i - 1].wait(timeout=20))

    recorder.gate = gate
    kinds = []
    for event in client.stream(Query("q")):
        kinds.append(event.kind)
        if isinstance(event, TokenEvent):
            received[kinds.count("token") - 1].set()
    assert kinds == ["token", "token", "token", "citations", "done"]
    assert opened == [True, True], "each token reached the client before the next was produced"


@pytest.mark.parametrize("path", ["/export", "/query/stream"])
def test_a_client_that_hangs_up_ends_the_request_quietly(
    control: ControlServer,
    recorder: Recorder,
    exports: Exports,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    endless = EndlessExport()
    exports.rows = endless
    recorder.endless = True
    stopped = endless.closed if path == "/export" else recorder.closed
    caplog.set_level(logging.DEBUG, logger="rag.control")
    method = "GET" if path == "/export" else "POST"
    with (
        httpx.Client() as http,
        http.stream(
            method, _url(control, path), headers=_auth(control), json={"question": "q"}
        ) as resp,
    ):
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert next(lines) and next(lines)
        # Leaving the block closes the connection while the server is still writing.
    assert stopped.wait(20), "the server stopped producing once the client was gone"
    _quiet_hang_up(capfd, caplog)


def test_rag_export_piped_into_head_exits_quietly_on_both_sides(
    control: ControlServer,
    exports: Exports,
    rag_cli: RagCli,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The command `make run` prints, as a real shell pipeline: the `rag` CLI against this
    process's control server, serving an export no buffer holds (so the reader really goes
    away mid-export, as with a large index)."""
    endless = EndlessExport()
    exports.rows = endless
    caplog.set_level(logging.DEBUG, logger="rag.control")
    err, status = tmp_path / "cli.err", tmp_path / "cli.status"
    env = {
        **rag_cli.env(tmp_path / "data"),
        "RAG": str(rag_cli.bin),
        "ERR": str(err),
        "STATUS": str(status),
    }
    script = '"$RAG" export 2>"$ERR" | head -3; echo "${PIPESTATUS[0]}" >"$STATUS"'
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == ["c0", "c1", "c2"]
    assert err.read_text() == "", "the CLI says nothing when its reader goes away"
    assert status.read_text().strip() == "141", "the CLI ends as SIGPIPE would end it"
    assert endless.closed.wait(20), "the server stopped its export with the CLI"
    _quiet_hang_up(capfd, caplog)
