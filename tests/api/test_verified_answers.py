"""Issue 22 through every HTTP door: a sentence no passage supports never reaches the client.

The model is the scripted OpenAI-compatible server (``evals.chat_server``) answering over
``examples/docs``: a true sentence, then an invented one with the same marker. ``/v1/query``
(JSON and SSE) and ``/v1/chat/completions`` (JSON and SSE) are read as raw bodies: the
invention is in none of them by default (``generation.verify.unsupported: drop``); with
``mark`` it is in the text, prefixed ``[unverified]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Deployment, LiveServer, sse_events
from tests.rag.chat_server import ChatServer

QUESTION = "How long are database backups retained?"
REPLY = (
    "Backups are retained for 35 days {cite:retained for 35 days}. "
    "After that they are archived to tape for seven years {cite:retained for 35 days}."
)
INVENTED = "After that they are archived to tape for seven years."


@pytest.fixture(scope="module")
def model() -> Iterator[ChatServer]:
    server = ChatServer(reply=REPLY)
    yield server
    server.close()


def _server(start_server: Callable[..., LiveServer], model: ChatServer, mode: str) -> LiveServer:
    generation: dict[str, Any] = {
        "chain": ["openai"],
        "openai": {"base_url": model.base_url, "max_retries": 0},
    }
    if mode != "drop":  # drop is the default: not set, as a deployment leaves it
        generation["verify"] = {"unsupported": mode}
    return start_server(generation=generation, pii={"enabled": False}, cache={"enabled": False})


def _bodies(server: LiveServer, key: str) -> dict[str, str]:
    """Each door's raw response body, and what its text shows the user."""
    chat = {"model": "rag-kb", "messages": [{"role": "user", "content": QUESTION}]}
    out: dict[str, str] = {}
    with server.client(key) as c:
        r = c.post("/v1/query", json={"question": QUESTION})
        assert r.status_code == 200, r.text
        out["query"] = r.text
        out["query.answer"] = r.json()["answer"]
        with c.stream("POST", "/v1/query", json={"question": QUESTION, "stream": True}) as s:
            raw = "\n".join(s.iter_lines())
        out["query.stream"] = raw
        events = list(sse_events(iter(raw.split("\n"))))
        out["query.stream.tokens"] = "".join(
            json.loads(d)["text"] for e, d in events if e == "token"
        )
        r = c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 200, r.text
        out["chat"] = r.text
        out["chat.content"] = r.json()["choices"][0]["message"]["content"]
        with c.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
            raw = "\n".join(s.iter_lines())
        out["chat.stream"] = raw
        chunks = [json.loads(d) for _, d in sse_events(iter(raw.split("\n"))) if d != "[DONE]"]
        out["chat.stream.content"] = "".join(
            ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"]
        )
    return out


def test_no_door_shows_an_unsupported_sentence_by_default(
    start_server: Callable[..., LiveServer], deployment: Deployment, model: ChatServer
) -> None:
    bodies = _bodies(_server(start_server, model, "drop"), deployment.keys["default"])
    for door, body in bodies.items():
        assert "tape" not in body, f"{door} shows the invented sentence: {body[:600]}"
    for door in ("query.answer", "query.stream.tokens", "chat.content", "chat.stream.content"):
        assert bodies[door].startswith("Backups are retained for 35 days [1]."), (
            door,
            bodies[door],
        )
    assert json.loads(bodies["query"])["withheld"] == 1
    assert json.loads(bodies["chat"])["rag"]["withheld"] == 1


def test_with_mark_every_door_shows_it_marked_unverified(
    start_server: Callable[..., LiveServer], deployment: Deployment, model: ChatServer
) -> None:
    bodies = _bodies(_server(start_server, model, "mark"), deployment.keys["default"])
    for door in ("query.answer", "query.stream.tokens", "chat.content", "chat.stream.content"):
        assert bodies[door] == (f"Backups are retained for 35 days [1]. [unverified] {INVENTED}"), (
            door,
            bodies[door],
        )
    assert json.loads(bodies["query"])["unsupported"] == [INVENTED]


def test_the_chat_page_renders_marked_sentences_apart(deployment: Deployment) -> None:
    # The page's script marks an unsupported sentence together with its "[unverified] " prefix.
    js = httpx.get(deployment.server.url + "/static/app.js", timeout=10).text
    assert 'const UNVERIFIED = "[unverified] "' in js and 'span.className = "flagged"' in js
