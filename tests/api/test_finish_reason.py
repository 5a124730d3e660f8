"""``finish_reason`` says why generation ended: ``length`` when the answer was cut at ``max_tokens``.

The backend is the OpenAI-compatible stand-in (``tests/rag/chat_server.py``), which cuts its
reply at the request's ``max_tokens`` and then reports ``length``, as vLLM does; the local
llama.cpp model is checked the same way through the library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.api.conftest import Deployment, LiveServer
from tests.rag.chat_server import ChatServer

QUESTION = "How long are monthly backup snapshots kept?"
REPLY = "Monthly snapshots are kept for 13 months [1]. Weekly ones are kept for five weeks [1]."


@pytest.fixture(scope="module")
def backend() -> Iterator[ChatServer]:
    server = ChatServer(reply=REPLY)
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], backend: ChatServer) -> LiveServer:
    # The stand-in alone: a cut answer must not be replaced by a fallback's.
    return start_server(generation={"chain": ["openai"], "openai": {"base_url": backend.base_url}})


@pytest.fixture()
def client(server: LiveServer, deployment: Deployment) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
    )


def _create(client: openai.OpenAI, deployment: Deployment, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=deployment.settings.api.model_name,
        messages=[{"role": "user", "content": QUESTION}],
        **kw,
    )


def test_cut_at_max_tokens_is_length_and_a_full_answer_is_stop(
    client: openai.OpenAI, deployment: Deployment, backend: ChatServer
) -> None:
    cut = _create(client, deployment, max_tokens=3)
    assert backend.requests[-1]["max_tokens"] == 3
    assert cut.choices[0].finish_reason == "length", cut
    full = _create(client, deployment)
    assert full.choices[0].finish_reason == "stop", full
    assert "13 months" in (full.choices[0].message.content or "")


@pytest.mark.parametrize(("max_tokens", "expected"), [(3, "length"), (None, "stop")])
def test_streamed_last_chunk_carries_the_finish_reason(
    client: openai.OpenAI, deployment: Deployment, max_tokens: int | None, expected: str
) -> None:
    stream = _create(client, deployment, stream=True, max_tokens=max_tokens)
    finish = [
        c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [expected]


def test_query_answer_reports_the_finish_reason(
    server: LiveServer, deployment: Deployment, backend: ChatServer
) -> None:
    # Without max_tokens the prompt's limit applies, and the reply fits in it.
    with server.client(deployment.keys["default"]) as c:
        r = c.post("/v1/query", json={"question": QUESTION})
        assert r.status_code == 200, r.text
        assert r.json()["finish_reason"] == "stop"
        # The request's temperature and max_tokens reach the backend, as on chat completions.
        r = c.post("/v1/query", json={"question": QUESTION, "max_tokens": 3, "temperature": 0.7})
        assert r.status_code == 200, r.text
        assert backend.requests[-1]["max_tokens"] == 3
        assert backend.requests[-1]["temperature"] == 0.7
        assert r.json()["finish_reason"] == "length"
        r = c.post("/v1/query", json={"question": QUESTION, "max_tokens": 0})
        assert r.status_code == 422 and "max_tokens" in r.text
        r = c.post("/v1/query", json={"question": QUESTION, "generate": False})
        assert r.json()["finish_reason"] is None  # nothing was generated


def test_local_model_cut_at_max_tokens_reports_length(deployment: Deployment) -> None:
    from rag.core.types import Usage
    from rag.generate.base import GenerationRequest
    from rag.generate.local import LocalGenerator
    from rag.query.pack import PackedContext

    generator = LocalGenerator(deployment.settings.generation.local)
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]

    def finish(max_tokens: int) -> str | None:
        request = GenerationRequest(
            messages=messages,
            question="story",
            context=PackedContext([], "", 0, 0),
            max_tokens=max_tokens,
        )
        usage = [i for i in generator.stream(request) if isinstance(i, Usage)]
        assert len(usage) == 1
        return usage[0].finish_reason

    assert finish(3) == "length"


def test_httpx_chat_completion_json_has_length(server: LiveServer, deployment: Deployment) -> None:
    body = {
        "model": deployment.settings.api.model_name,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_completion_tokens": 2,
    }
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {deployment.keys['default']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"
