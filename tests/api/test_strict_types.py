"""Request bodies take JSON types as the schema declares them: ``"5"`` is no ``max_tokens``,
``false`` no ``page``, ``"yes"`` no ``stream`` — a 422 naming the field, like the control API
(``app.control.query_from_json``). pydantic's lax mode used to convert them, so the API accepted
data its own schema calls invalid (found by schemathesis in ``scripts/fuzz_routes.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Deployment

CHAT = {"model": "rag-kb", "messages": [{"role": "user", "content": "How long are backups kept?"}]}
QUERY = {"question": "How long are backups kept?", "generate": False}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/query", {**QUERY, "filters": {"page": False}}, "filters.page"),
        ("/v1/query", {**QUERY, "filters": {"page": "3"}}, "filters.page"),
        ("/v1/query", {**QUERY, "stream": "true"}, "stream"),
        ("/v1/query", {**QUERY, "generate": 0}, "generate"),
        ("/v1/chat/completions", {**CHAT, "temperature": "0.5"}, "temperature"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": "50"}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": True}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 64.5}, "max_tokens"),
        ("/v1/feedback", {"trace_id": "0" * 32, "value": True}, "value"),
    ],
)
def test_a_value_of_another_json_type_is_refused(
    deployment: Deployment, path: str, body: dict[str, Any], field: str
) -> None:
    with deployment.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith(field), r.json()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/query", {**QUERY, "filters": {"page": [0, 3]}}),
        # 0.0 is an integer to JSON Schema (schemathesis sends it as one): not refused.
        ("/v1/query", {**QUERY, "filters": {"page": 0.0}}),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 64.0, "n": 1.0}),
        ("/v1/query", {**QUERY, "stream": False, "user": "u"}),
        ("/v1/chat/completions", {**CHAT, "temperature": 1, "max_tokens": 64}),
        ("/v1/chat/completions", {**CHAT, "temperature": 0.5, "stream": False}),
    ],
)
def test_values_of_the_declared_types_still_pass(
    deployment: Deployment, path: str, body: dict[str, Any]
) -> None:
    with deployment.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 200, r.text


def test_the_schema_still_states_the_bounds(deployment: Deployment) -> None:
    # The JSON-integer validator once wrapped the bounds: the schema said "ge"/"le" (no JSON
    # Schema keywords), so schemathesis sent page -1 as valid data.
    with deployment.client() as c:
        components = c.get("/openapi.json").json()["components"]["schemas"]
    page = components["Filters"]["properties"]["page"]["anyOf"]
    assert page[0] == {"type": "integer", "minimum": 0, "maximum": 1_000_000}
    assert page[1]["items"] == page[0]
    tokens = components["ChatRequest"]["properties"]["max_tokens"]["anyOf"][0]
    assert tokens == {"type": "integer", "minimum": 1, "maximum": 32768}
