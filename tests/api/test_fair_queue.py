"""The model queue is shared fairly: one tenant flooding it cannot turn another's request into a 503.

The pipeline here holds every generation until the test releases it, so the queue's state
is exactly what the test built: one answer running, the rest waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from api.errors import ApiError
from api.limits import ConcurrencyGate
from rag.core.types import Answer, CitationsEvent, DoneEvent, Query, StreamEvent, TokenEvent
from tests.api.conftest import Deployment, LiveServer, StandInPipeline, sse_events, wait_for


class Held(StandInPipeline):
    """Answers "ok" once ``release`` is set; records the tenant of each generation as it starts."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str | None] = []

    def warm_up(self) -> None:
        return None

    def run(self, query: Query) -> Answer:
        return self._answer()

    def stream(self, query: Query) -> Iterator[StreamEvent]:
        self.started.append(query.tenant)
        self.release.wait(60)
        yield TokenEvent("ok")
        yield CitationsEvent([])
        yield DoneEvent(self._answer())

    @staticmethod
    def _answer() -> Answer:
        return Answer(
            answer="ok",
            abstained=False,
            degraded=False,
            generator="held",
            citations=[],
            prompt=None,
        )


@pytest.fixture()
def held() -> Iterator[Held]:
    pipeline = Held()
    yield pipeline
    pipeline.release.set()


@pytest.fixture()
def server(start_server: Callable[..., LiveServer], held: Held) -> LiveServer:
    return start_server(pipeline=held, api={"concurrency": {"extractive": 1}, "queue": 4})


def test_one_tenant_flooding_the_queue_does_not_503_another(
    server: LiveServer, held: Held, deployment: Deployment
) -> None:
    flooder = deployment.store.create("flood", "fairness")[1]
    quiet = deployment.store.create("quiet", "fairness")[1]
    question: dict[str, Any] = {"question": "backups", "stream": True}
    with ExitStack() as stack:
        c = stack.enter_context(server.client(flooder))
        # One running and the four queue places: everything this tenant could take alone.
        streams = [
            stack.enter_context(c.stream("POST", "/v1/query", json=question)) for _ in range(5)
        ]
        assert [s.status_code for s in streams] == [200] * 5
        wait_for(lambda: held.started == ["flood"], "the first answer to start", 10)
        r = c.post("/v1/query", json={"question": "backups"})
        assert r.status_code == 503, r.text
        assert "share" in r.json()["error"]["message"], r.text

        # The other tenant's single request gets a place (and the next slot) all the same.
        c2 = stack.enter_context(server.client(quiet))
        theirs = stack.enter_context(c2.stream("POST", "/v1/query", json=question))
        assert theirs.status_code == 200, theirs.read()
        # The flooder stays capped at its share while the other one waits.
        assert c.post("/v1/query", json={"question": "backups"}).status_code == 503

        held.release.set()
        for s in [*streams, theirs]:
            kinds = [kind for kind, _ in sse_events(s.iter_lines())]
            assert kinds[-1] == "done", kinds
    # Round-robin admission: the waiting tenant ran next, not after the flooder's backlog.
    assert held.started[:2] == ["flood", "quiet"], held.started
    assert sorted(held.started) == ["flood"] * 5 + ["quiet"]


# -- the gate itself ---------------------------------------------------------------------------
def test_gate_gives_back_the_places_of_cancelled_waiters() -> None:
    async def scenario() -> None:
        gate = ConcurrencyGate("extractive", limit=1, queue=2)
        gate.reserve("a")
        await gate.acquire("a")  # running
        gate.reserve("a")
        gate.reserve("b")
        waiting_a = asyncio.create_task(gate.acquire("a"))
        waiting_b = asyncio.create_task(gate.acquire("b"))
        await asyncio.sleep(0)
        assert (gate.active, gate.waiting) == (1, 2)
        with pytest.raises(ApiError) as refused:
            gate.reserve("a")  # full, and "a" holds its share (one place: queue 2 // 2 tenants)
        assert refused.value.status_code == 503
        waiting_a.cancel()  # a client gone while queued: its place is free again
        await asyncio.sleep(0)
        assert (gate.active, gate.waiting) == (1, 1)
        gate.release(0.01)  # the slot goes to "b"
        await asyncio.wait_for(waiting_b, 1)
        assert (gate.active, gate.waiting) == (1, 0)
        # Granted, then cancelled before it ran: the slot passes on, nothing leaks.
        gate.reserve("c")
        gate.reserve("d")
        waiting_c = asyncio.create_task(gate.acquire("c"))
        waiting_d = asyncio.create_task(gate.acquire("d"))
        await asyncio.sleep(0)
        gate.release(0.01)  # grants "c" ...
        waiting_c.cancel()  # ... whose request is gone by the time it would run
        with pytest.raises(asyncio.CancelledError):
            await waiting_c
        await asyncio.wait_for(waiting_d, 1)
        assert (gate.active, gate.waiting) == (1, 0)
        gate.release(0.01)
        assert (gate.active, gate.waiting) == (0, 0)
        # An unused reservation (the client left before its stream started) is given back.
        gate.reserve("e")
        gate.cancel("e")
        assert gate.stats()["waiting"] == 0 and gate.share("f") == 2

    asyncio.run(scenario())
