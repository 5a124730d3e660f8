"""Limits and back-pressure: 413/415/422/429/503 with messages that name the limit, client
disconnects that stop generation, and a shutdown that lets in-flight answers finish.

Generation here is the real pipeline's retrieval followed by a slow, observable token
stream (``SlowTokens``): what is under test is the HTTP layer's timing (queueing,
cancellation, drain), which needs a generator whose pace the test controls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from rag.core.types import Answer, CitationsEvent, DoneEvent, Query, StreamEvent, TokenEvent
from rag.query.pipeline import QueryPipeline
from tests.api.conftest import Deployment, LiveServer, StandInPipeline, sse_events, wait_for
from tests.rag.chat_server import ChatServer


class SlowTokens(StandInPipeline):
    """Retrieval by the real pipeline; then ``tokens`` tokens, one every ``delay`` seconds."""

    def __init__(self, inner: QueryPipeline, tokens: int = 400, delay: float = 0.05):
        self.inner = inner
        self.tokens = tokens
        self.delay = delay
        self.produced = 0
        self.started = threading.Event()
        self.closed = threading.Event()

    def reset(self) -> None:
        self.produced = 0
        self.started.clear()
        self.closed.clear()

    def warm_up(self) -> None:
        self.inner.warm_up()

    def run(self, query: Query) -> Answer:
        answer: Answer | None = None
        for event in self.stream(query):
            if isinstance(event, DoneEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def stream(self, query: Query) -> Iterator[StreamEvent]:
        context = self.inner.run(replace(query, generate=False))
        if not query.generate:
            yield CitationsEvent(context.citations)
            yield DoneEvent(context)
            return
        self.started.set()
        try:
            words = []
            for i in range(self.tokens):
                time.sleep(self.delay)
                self.produced += 1
                words.append(f"w{i}")
                yield TokenEvent(f"w{i} ")
            yield CitationsEvent(context.citations)
            yield DoneEvent(
                context.model_copy(update={"answer": " ".join(words), "generator": "slow"})
            )
        finally:
            self.closed.set()


@pytest.fixture(scope="module")
def slow(deployment: Deployment) -> SlowTokens:
    return SlowTokens(QueryPipeline(deployment.index, deployment.settings))


@pytest.fixture(scope="module")
def strict(start_server: Callable[..., LiveServer], slow: SlowTokens) -> LiveServer:
    return start_server(
        pipeline=slow,
        api={
            "requests_per_minute": 60,
            "burst": 3,
            "max_body_kb": 2,
            "max_upload_mb": 0.005,
            "max_question_chars": 100,
            "concurrency": {"retrieval": 4, "extractive": 1},
            "queue": 0,
        },
    )


@pytest.fixture()
def key(deployment: Deployment) -> str:
    """A fresh key per test: each has its own full bucket."""
    return deployment.store.create("default", "limits")[1]


def error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    err: dict[str, str] = r.json()["error"]
    return err


def test_body_over_the_limit_is_413_declared_or_streamed(strict: LiveServer, key: str) -> None:
    big = b'{"question": "' + b"x" * 3000 + b'"}'
    with strict.client(key) as c:
        declared = c.post("/v1/query", content=big, headers={"Content-Type": "application/json"})
        chunked = c.post(
            "/v1/query",
            content=iter([big[:1000], big[1000:]]),
            headers={"Content-Type": "application/json"},
        )
    for r in (declared, chunked):
        err = error(r, 413)
        assert "2 kB" in err["message"] and "api.max_body_kb" in err["message"]


def test_question_over_the_limit_is_422_naming_it(strict: LiveServer, key: str) -> None:
    with strict.client(key) as c:
        err = error(c.post("/v1/query", json={"question": "why? " * 30, "generate": False}), 422)
    assert "limit is 100" in err["message"] and "api.max_question_chars" in err["message"]


def test_upload_over_the_limit_is_413_and_writes_nothing(
    strict: LiveServer, deployment: Deployment, key: str
) -> None:
    with strict.client(key) as c:
        r = c.post("/v1/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 2000)})
    err = error(r, 413)
    assert "api.max_upload_mb" in err["message"]
    assert not (deployment.tenants_root / "default" / "big.md").exists()


def test_unsupported_upload_type_is_415(strict: LiveServer, key: str) -> None:
    with strict.client(key) as c:
        err = error(c.post("/v1/documents", files={"file": ("tool.sh", b"echo hi")}), 415)
    assert ".pdf" in err["message"]


def test_rate_limit_is_per_key_with_retry_after(
    strict: LiveServer, deployment: Deployment, key: str
) -> None:
    with strict.client(key) as c:
        codes = [c.get("/v1/models").status_code for _ in range(3)]
        r = c.get("/v1/models")
    assert codes == [200, 200, 200]
    err = error(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    assert "60/min" in err["message"]
    other = deployment.store.create("default", "other")[1]
    with strict.client(other) as c:
        assert c.get("/v1/models").status_code == 200  # another key's bucket is untouched


def test_full_queue_is_503_with_retry_after(
    strict: LiveServer, slow: SlowTokens, key: str, deployment: Deployment
) -> None:
    slow.reset()
    second_key = deployment.store.create("default", "second")[1]
    with (
        strict.client(key) as c,
        c.stream("POST", "/v1/query", json={"question": "backups", "stream": True}) as held,
    ):
        assert held.status_code == 200
        assert slow.started.wait(30)
        with strict.client(second_key) as c2:
            r = c2.post("/v1/query", json={"question": "backups"})
            err = error(r, 503)
            assert int(r.headers["retry-after"]) >= 1
            assert "api.concurrency.extractive=1" in err["message"]
            # Retrieval-only requests have their own gate and still go through.
            assert (
                c2.post("/v1/query", json={"question": "backups", "generate": False}).status_code
                == 200
            )
    assert slow.closed.wait(10)


def test_client_disconnect_stops_a_streamed_generation(
    strict: LiveServer, slow: SlowTokens, key: str
) -> None:
    slow.reset()
    with (
        strict.client(key) as c,
        c.stream("POST", "/v1/query", json={"question": "backups", "stream": True}) as r,
    ):
        tokens = 0
        for event, _ in sse_events(r.iter_lines()):
            tokens += event == "token"
            if tokens == 3:
                break
    assert slow.closed.wait(5), "generation still running after the client left"
    produced = slow.produced
    time.sleep(0.3)
    assert slow.produced == produced < slow.tokens
    _slot_is_free(strict, key)


def test_client_disconnect_stops_a_non_streamed_generation(
    strict: LiveServer, slow: SlowTokens, key: str
) -> None:
    slow.reset()
    with (
        strict.client(key, timeout=httpx.Timeout(60.0, read=1.0)) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.post("/v1/query", json={"question": "backups"})
    assert slow.closed.wait(5), "generation still running after the client left"
    assert slow.produced < slow.tokens
    _slot_is_free(strict, key)


def _slot_is_free(server: LiveServer, key: str, backend: str = "extractive") -> None:
    with server.client(key) as c:
        wait_for(
            lambda: f'rag_backend_active{{backend="{backend}"}} 0.0' in c.get("/metrics").text,
            "generation slot freed",
            10,
        )


# A long sentence: nothing of it can be shown (verified) before its full stop, so the stream
# sends no event for as long as it is being generated.
LONG = "Backups are retained for 35 days" + ", as the backup policy says" * 80 + " [1]."


@pytest.mark.parametrize("leave", ["after the first sentence", "before any text", "not streamed"])
def test_client_disconnect_stops_the_real_pipeline_and_closes_the_backend_request(
    start_server: Callable[..., LiveServer], key: str, leave: str
) -> None:
    """The real pipeline (retrieval, verification, the openai backend) against a scripted
    OpenAI-compatible server on loopback that streams slowly. The client leaves while no
    event is due (verification holds a sentence until its full stop): generation must stop
    anyway, the backend's request be closed, the slot freed."""
    first = "Monthly snapshots are kept for 13 months [1]. "
    reply = (first if leave == "after the first sentence" else "") + LONG
    backend = ChatServer(reply=reply, token_delay=0.02)
    total = len(reply.split())
    try:
        server = start_server(
            generation={"chain": ["openai"], "openai": {"base_url": backend.base_url}}
        )
        question = {"question": "How long are monthly snapshots kept?", "stream": True}
        if leave == "not streamed":  # the client gives up waiting for the whole answer
            with (
                server.client(key, timeout=httpx.Timeout(60.0, read=2.0)) as c,
                pytest.raises(httpx.ReadTimeout),
            ):
                c.post("/v1/query", json={**question, "stream": False})
        else:
            with server.client(key) as c, c.stream("POST", "/v1/query", json=question) as r:
                assert r.status_code == 200
                if leave == "after the first sentence":
                    kind, data = next(sse_events(r.iter_lines()))
                    assert kind == "token" and "13 months" in data, (kind, data)
                else:
                    wait_for(lambda: backend.sent_tokens >= 5, "the backend streaming", 30)
        left_at = backend.sent_tokens
        wait_for(lambda: backend.hung_up == 1, "the backend request closed", 5)
        stopped_at = backend.sent_tokens
        time.sleep(0.5)
        assert backend.sent_tokens == stopped_at, "the backend is still being read"
        # Stopped at once (a few words in flight), not at the end of the sentence.
        assert stopped_at - left_at < 40 and stopped_at < total // 2, (left_at, stopped_at, total)
        _slot_is_free(server, key, "openai")
    finally:
        backend.close()


def test_shutdown_finishes_in_flight_requests(
    start_server: Callable[..., LiveServer], deployment: Deployment
) -> None:
    pipeline = SlowTokens(
        QueryPipeline(deployment.index, deployment.settings), tokens=20, delay=0.05
    )
    server = start_server(pipeline=pipeline)
    result: dict[str, Any] = {}

    def ask() -> None:
        with server.client(deployment.keys["default"]) as c:
            result["response"] = c.post("/v1/query", json={"question": "backups"})

    thread = threading.Thread(target=ask)
    thread.start()
    assert pipeline.started.wait(30)
    server.stop()  # uvicorn: stop accepting, wait for in-flight requests
    thread.join(30)
    r = result["response"]
    assert r.status_code == 200, r.text
    assert r.json()["answer"].split()[-1] == "w19"
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz")
