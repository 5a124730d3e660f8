"""``/v1/query`` over real HTTP: retrieval-only answers, streamed answers (SSE), auth, error shape."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from rag.core.types import Answer
from tests.api.conftest import Deployment, sse_events


def test_generate_false_returns_ranked_context_from_the_callers_documents(
    deployment: Deployment,
) -> None:
    with deployment.client() as c:
        r = c.post(
            "/v1/query",
            json={
                "question": "What happens when a client exceeds the API rate limit?",
                "generate": False,
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == ""
    cites = body["citations"]
    assert cites, body
    assert cites[0]["source"] == "api-rate-limits.html", [c["source"] for c in cites]
    assert [c["n"] for c in cites] == list(range(1, len(cites) + 1))
    for c in cites:
        assert c["quote"] and c["end"] > c["start"] >= 0
    assert body["timings_ms"]


def test_filters_narrow_the_results(deployment: Deployment) -> None:
    with deployment.client() as c:
        r = c.post(
            "/v1/query",
            json={"question": "backups", "generate": False, "filters": {"source": "onboarding.md"}},
        )
    assert r.status_code == 200, r.text
    assert {c["source"] for c in r.json()["citations"]} == {"onboarding.md"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer rk_000000000000_" + "x" * 43},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer rk_short"},
    ],
    ids=["missing", "unknown", "not-bearer", "malformed"],
)
def test_requests_without_a_valid_key_get_401(
    deployment: Deployment, headers: dict[str, str]
) -> None:
    r = httpx.post(deployment.server.url + "/v1/query", json={"question": "hi"}, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "unauthorized"


def test_a_revoked_key_stops_working_on_the_running_server(deployment: Deployment) -> None:
    rec, key = deployment.store.create("default", "short-lived")
    with deployment.server.client(key) as c:
        assert c.get("/v1/models").status_code == 200
        assert deployment.store.revoke(rec.id)
        r = c.get("/v1/models")
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/v1/query", {}, 405),
        (
            "POST",
            "/v1/query",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("POST", "/v1/query", {"json": {"question": "hi", "surprise": 1}}, 422),
        ("POST", "/v1/query", {"json": {"question": "hi", "filters": {"tenant": "acme"}}}, 422),
    ],
    ids=["unknown-route", "wrong-method", "bad-json", "unknown-field", "tenant-filter"],
)
def test_errors_are_json_with_type_and_message(
    deployment: Deployment, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    with deployment.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"type", "message"} and err["message"]
    assert "Traceback" not in r.text


def test_streamed_answer_is_tokens_then_citations_then_done(deployment: Deployment) -> None:
    question = "How long are backups kept?"
    with (
        deployment.client() as c,
        c.stream("POST", "/v1/query", json={"question": question, "stream": True}) as r,
    ):
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [(e, json.loads(d)) for e, d in sse_events(r.iter_lines())]
    kinds = [e for e, _ in events]
    assert kinds[-2:] == ["citations", "done"], kinds
    assert set(kinds[:-2]) <= {"token"}
    done = events[-1][1]
    for key in ("answer", "abstained", "degraded", "usage", "timings_ms"):
        assert key in done, done
    # The deployment answers extractively (deterministic): this question has an answer.
    assert done["generator"] == "extractive" and not done["abstained"] and not done["degraded"]
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert streamed.strip() and streamed == done["answer"], "the stream is the answer"
    citations = events[-2][1]["citations"]
    assert citations == done["citations"], "the citations event carries the answer's citations"
    assert citations and all(c["verified"] for c in citations)
    assert citations[0]["source"] == "policies/backup-policy.md"
    assert [c["n"] for c in citations] == list(range(1, len(citations) + 1))
    assert set(re.findall(r"\[(\d+)\]", streamed)) == {str(c["n"]) for c in citations}


def test_non_streamed_answer_matches_the_cli_json_contract(deployment: Deployment) -> None:
    with deployment.client() as c:
        r = c.post("/v1/query", json={"question": "How long are backups kept?"})
    assert r.status_code == 200, r.text
    body = r.json()
    # The CLI's `rag query --json` prints Answer.as_json(): the same fields, with their types.
    assert set(body) == set(Answer.model_fields), set(body) ^ set(Answer.model_fields)
    typed = Answer.model_validate_json(r.text, strict=True)
    assert typed.as_json() == body
    assert body["generator"] == "extractive"
    assert body["abstained"] is False and body["degraded"] is False
    assert body["citations"] and "[1]" in body["answer"]
    assert body["citations"][0]["source"] == "policies/backup-policy.md"
    assert all(c["verified"] is True for c in body["citations"])
    assert body["prompt"]["name"] == "answer" and re.fullmatch(r"v\d+", body["prompt"]["version"])
    assert body["unsupported"] == [] and body["fallbacks"] == []
    assert body["context_tokens"] > 0 and body["timings_ms"]["total"] > 0


def test_metrics_count_requests_per_route_and_pipeline_stages(deployment: Deployment) -> None:
    with deployment.client() as c:
        assert (
            c.post("/v1/query", json={"question": "expense policy", "generate": False}).status_code
            == 200
        )
        text = c.get("/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/v1/query",status="200"}' in text
    assert re.search(r"rag_http_request_seconds_bucket\{[^}]*route=\"/v1/query\"", text)
    assert "rag_stage_seconds_count" in text
    assert 'rag_queue_depth{backend="retrieval"} 0.0' in text
    assert "rag_ingestion_files_total" in text
