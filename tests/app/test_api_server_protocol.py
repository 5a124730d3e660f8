"""The HTTP layer `rag serve` runs (``app.api_server.HeadSafeH11Protocol``): malformed HTTP after
a ``HEAD`` request line gets a 400 and a closed connection, not an error escaping uvicorn's
protocol (asyncio's "Fatal error: protocol.data_received() call failed", found by
``scripts/fuzz_routes.py``'s raw requests)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from app.api_server import HeadSafeH11Protocol
from tests.api.conftest import LiveServer
from tests.api.fuzzing import send_raw

BAD_CHUNK = b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture(params=["rag", "uvicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, LiveServer]]:
    protocol: Any = HeadSafeH11Protocol if request.param == "rag" else "h11"
    live = LiveServer(_app(), http=protocol).start()
    yield request.param, live
    live.stop()


def test_a_malformed_body_after_head_is_a_400_and_nothing_escapes(
    server: tuple[str, LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    which, live = server
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for method in ("HEAD", "GET", "POST"):
            head = f"{method} /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            sent = send_raw(live.port, head + BAD_CHUNK, half_close=False, timeout=10)
            assert sent.status == 400, (method, sent.error)
        time.sleep(0.3)  # the event loop logs after the protocol call returned
    escaped = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    if which == "rag":
        assert escaped == []
    else:  # uvicorn's own protocol: what this class exists for (fails when uvicorn fixes it)
        assert escaped and "data_received" in escaped[0]
