"""Tracing through the HTTP API, and ``POST /v1/feedback``: the trace id on every answer
(JSON, SSE ``done``, the chat completion's ``rag``, ``X-Trace-Id``), one trace per request,
feedback as a Langfuse score and a local record, tenants scoring only their own traces, and a
Langfuse that is down leaving requests alone. The real SDK talks to the loopback stand-in."""

from __future__ import annotations

import json
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Deployment, LiveServer, sse_events
from tests.langfuse_standin import LangfuseStandIn

PII = "jane.roe@gmail.com"


@pytest.fixture()
def standin() -> Iterator[LangfuseStandIn]:
    with LangfuseStandIn() as s:
        yield s


def _tracing(url: str) -> dict[str, Any]:
    return {
        "tracing": {
            "public_key": f"pk-lf-api-{uuid.uuid4().hex[:12]}",
            "secret_key": "sk-lf-api",
            "base_url": url,
            "flush_interval_seconds": 0.2,
            "export_timeout_seconds": 1.0,
        },
        "cache": {"enabled": False},
    }


@pytest.fixture()
def traced(
    start_server: Callable[..., LiveServer], standin: LangfuseStandIn
) -> Iterator[LiveServer]:
    server = start_server(**_tracing(standin.url))
    yield server
    server.app.state.rag.tracing.shutdown(1.0)
    server.stop()


def _trace_names(standin: LangfuseStandIn, trace_id: str) -> list[str]:
    assert standin.wait_for(
        lambda s: any(x.name == "query" for x in s.spans if x.trace_id == trace_id)
    ), f"no root span for {trace_id}"
    time.sleep(0.3)
    return [s.name for s in standin.trace(trace_id)]


def test_query_json_and_stream_carry_the_trace_id(
    traced: LiveServer, deployment: Deployment, standin: LangfuseStandIn
) -> None:
    with traced.client(deployment.keys["default"]) as c:
        r = c.post("/v1/query", json={"question": f"How long are backups kept? {PII}"})
        assert r.status_code == 200, r.text
        trace_id = r.json()["trace_id"]
        assert trace_id and r.headers["X-Trace-Id"] == trace_id
        names = _trace_names(standin, trace_id)
        for stage in ("prompt", "retrieve", "pack", "generate", "answer"):
            assert stage in names
        with c.stream(
            "POST", "/v1/query", json={"question": "How long are backups kept?", "stream": True}
        ) as s:
            header = s.headers["X-Trace-Id"]
            events = list(sse_events(s.iter_lines()))
        done = json.loads(next(d for e, d in events if e == "done"))
        assert done["trace_id"] == header != trace_id
        assert any(n.startswith("generation") for n in _trace_names(standin, header))
    assert PII not in standin.everything()


def test_chat_completions_carry_the_trace_id(
    traced: LiveServer, deployment: Deployment, standin: LangfuseStandIn
) -> None:
    body = {
        "model": "rag-kb",
        "messages": [{"role": "user", "content": "How long are backups kept?"}],
    }
    with traced.client(deployment.keys["default"]) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        trace_id = r.json()["rag"]["trace_id"]
        assert trace_id and r.headers["X-Trace-Id"] == trace_id
        assert "retrieve" in _trace_names(standin, trace_id)
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            header = s.headers["X-Trace-Id"]
            chunks = [json.loads(d) for e, d in sse_events(s.iter_lines()) if d != "[DONE]"]
        assert chunks[-1]["rag"]["trace_id"] == header
        assert "generate" in _trace_names(standin, header)


def test_feedback_is_a_score_and_a_local_record_for_the_own_tenant_only(
    traced: LiveServer, deployment: Deployment, standin: LangfuseStandIn
) -> None:
    with (
        traced.client(deployment.keys["acme"]) as acme,
        traced.client(deployment.keys["globex"]) as globex,
    ):
        r = acme.post("/v1/query", json={"question": "How many vacation days do Acme staff get?"})
        trace_id = r.json()["trace_id"]
        # another tenant cannot score it, nor can anyone without a key
        assert (
            globex.post("/v1/feedback", json={"trace_id": trace_id, "value": 0}).status_code == 404
        )
        assert (
            httpx.post(
                traced.url + "/v1/feedback", json={"trace_id": trace_id, "value": 0}
            ).status_code
            == 401
        )
        assert acme.post("/v1/feedback", json={"trace_id": "0" * 32, "value": 1}).status_code == 404
        assert acme.post("/v1/feedback", json={"trace_id": trace_id, "value": 3}).status_code == 422
        r = acme.post(
            "/v1/feedback",
            json={"trace_id": trace_id, "value": 0, "comment": f"wrong, mail {PII} please"},
        )
        assert r.status_code == 200, r.text
        fid = r.json()["id"]
    assert standin.wait_for(
        lambda s: any(
            x["name"] == "user_feedback" and x.get("traceId") == trace_id for x in s.scores
        )
    )
    score = next(x for x in standin.scores if x["name"] == "user_feedback")
    assert score["value"] == 0 and "wrong" in score["comment"] and PII not in score["comment"]
    store = traced.app.state.rag.tracing.feedback
    rec = next(x for x in store.records() if x["id"] == fid)
    assert rec["tenant"] == "acme" and rec["value"] == 0 and PII not in json.dumps(rec)
    assert rec["question"] == "How many vacation days do Acme staff get?"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert fid in {c["id"] for c in store.candidates()}


def test_feedback_without_tracing_says_so(deployment: Deployment) -> None:
    with deployment.client() as c:
        r = c.post("/v1/query", json={"question": "How long are backups kept?"})
        assert r.json()["trace_id"] is None and "X-Trace-Id" not in r.headers
        r = c.post("/v1/feedback", json={"trace_id": "a" * 32, "value": 1})
        assert r.status_code == 404 and r.json()["error"]["type"] == "tracing_disabled"


@pytest.mark.parametrize("mode", ["503", "stall"])
def test_requests_unaffected_when_langfuse_fails(
    start_server: Callable[..., LiveServer], deployment: Deployment, mode: str
) -> None:
    with LangfuseStandIn(mode) as failing:
        server = start_server(**_tracing(failing.url))
        with server.client(deployment.keys["default"]) as c:
            for _ in range(6):
                r = c.post("/v1/query", json={"question": "How long are backups kept?"})
                assert r.status_code == 200 and r.json()["trace_id"]
            r = c.post("/v1/feedback", json={"trace_id": r.json()["trace_id"], "value": 1})
            assert r.status_code == 200
        started = time.monotonic()
        server.app.state.rag.tracing.shutdown(1.0)
        assert time.monotonic() - started < 2.0
        server.stop()
