"""The official ``openai`` client against ``/v1``, unchanged: models, completions, streaming."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from api.chat import split_conversation
from api.models import ChatMessage
from tests.api.conftest import Deployment, LiveServer
from tests.rag.chat_server import ChatServer, Fault

QUESTION = "How long are monthly backup snapshots kept?"


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=deployment.server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
    )


def test_models_lists_the_served_chat_model(client: openai.OpenAI, deployment: Deployment) -> None:
    assert [m.id for m in client.models.list()] == [deployment.settings.api.model_name]


def test_completion_answers_with_citation_markers_and_the_citations_extension(
    client: openai.OpenAI, deployment: Deployment
) -> None:
    out = client.chat.completions.create(
        model=deployment.settings.api.model_name,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
        ],
        temperature=0.0,
        max_tokens=128,
        user="tester",
    )
    text = out.choices[0].message.content or ""
    assert out.choices[0].finish_reason == "stop"
    citations = out.model_extra["citations"] if out.model_extra else None
    assert citations, out
    assert "13 months" in text
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
    assert markers and markers <= {c["n"] for c in citations}
    assert any(c["source"] == "policies/backup-policy.md" for c in citations)


@pytest.fixture()
def backend() -> Iterator[ChatServer]:
    server = ChatServer(reply="Monthly snapshots are kept for 13 months [1].")
    yield server
    server.close()


def test_usage_reports_the_backends_token_counts(
    start_server: Callable[..., LiveServer], deployment: Deployment, backend: ChatServer
) -> None:
    server = start_server(
        generation={"chain": ["openai", "extractive"], "openai": {"base_url": backend.base_url}}
    )
    client = openai.OpenAI(
        base_url=server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
    )
    model = deployment.settings.api.model_name
    out = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}]
    )
    assert out.model_extra and out.model_extra["rag"]["generator"] == "openai", out
    assert "13 months" in (out.choices[0].message.content or "")
    # What the stand-in server counted for the request it got (words of the prompt it was sent).
    sent = backend.requests[-1]
    prompt_tokens = sum(len(m["content"].split()) for m in sent["messages"])
    completion_tokens = len(backend.reply.split())
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
    )
    assert prompt_tokens > completion_tokens > 0

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage is not None]
    sent = backend.requests[-1]
    assert sent["stream"] is True
    prompt_tokens = sum(len(m["content"].split()) for m in sent["messages"])
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens, usage[0].total_tokens) == (
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
    )


def test_streaming_through_the_client_delivers_text_then_citations(
    client: openai.OpenAI, deployment: Deployment
) -> None:
    stream = client.chat.completions.create(
        model=deployment.settings.api.model_name,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    finish = None
    extension = None
    usage_seen = False
    for chunk in stream:
        if chunk.usage is not None:
            usage_seen = True
        if not chunk.choices:
            continue
        parts.append(chunk.choices[0].delta.content or "")
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
            extension = chunk.model_extra
    assert finish == "stop"
    assert usage_seen
    assert extension and extension["citations"], extension
    assert "13 months" in extension["rag"]["answer"]
    # The stream is the answer: the deltas, joined, are the verified answer, markers included.
    assert "".join(parts) == extension["rag"]["answer"]


def test_a_stream_withdrawn_by_a_fallback_says_so_and_the_rest_is_the_answer(
    start_server: Callable[..., LiveServer], deployment: Deployment
) -> None:
    """The first backend dies after its first sentence was shown; the next one starts over.
    OpenAI's protocol cannot take text back: a chunk with the extension field ``rag.reset``
    says the content so far is withdrawn, and the content after it is the answer."""
    first = "Monthly snapshots are kept for 13 months [1]."
    backend = ChatServer(reply=f"{first} Backups are retained for 35 days [1].")
    # Nine words: the first sentence is released once "Backups" opens the second; then it dies.
    backend.faults.append(Fault(drop_after_tokens=10))
    try:
        server = start_server(
            generation={
                "chain": ["openai", "extractive"],
                "openai": {"base_url": backend.base_url},
            }
        )
        client = openai.OpenAI(
            base_url=server.url + "/v1", api_key=deployment.keys["default"], max_retries=0
        )
        stream = client.chat.completions.create(
            model=deployment.settings.api.model_name,
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
        )
        shown: list[str] = []
        before_reset: list[str] = []
        resets: list[dict[str, Any]] = []
        final: dict[str, Any] = {}
        for chunk in stream:
            rag = (chunk.model_extra or {}).get("rag") or {}
            if rag.get("reset"):
                resets.append(rag["reset"])
                before_reset, shown = shown, []
                continue
            shown.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                final = rag
    finally:
        backend.close()
    assert "".join(before_reset).startswith("Monthly snapshots are kept for 13 months")
    assert [(r["failed"], r["next"]) for r in resets] == [("openai", "extractive")], resets
    assert final["generator"] == "extractive" and final["degraded"] is True, final
    assert "".join(shown) == final["answer"] and "13 months" in final["answer"]


def test_unknown_model_and_bad_key_raise_the_clients_own_errors(
    client: openai.OpenAI, deployment: Deployment
) -> None:
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    bad = openai.OpenAI(base_url=deployment.server.url + "/v1", api_key="rk_bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_earlier_messages_become_the_history_within_the_budget() -> None:
    words = len  # a stand-in tokenizer: one token per character keeps the budget arithmetic visible
    messages = [
        ChatMessage(role="user", content="Tell me about the backup policy."),
        ChatMessage(role="assistant", content="Backups run nightly [1]."),
        ChatMessage(role="user", content="How long are they kept?"),
    ]
    question, history = split_conversation(messages, budget=200, count=words)
    assert question == "How long are they kept?"  # the question itself, not a concatenation
    texts = [t.content for t in history]
    assert texts == ["Tell me about the backup policy.", "Backups run nightly."]
    assert all("[1]" not in t for t in texts)  # markers of earlier answers are noise
    _, tight = split_conversation(messages, budget=30, count=words)
    assert [t.content for t in tight] == ["Backups run nightly."]  # the most recent turn first
    _, alone = split_conversation(messages, budget=0, count=words)
    assert alone == ()


def test_a_follow_up_is_answered_from_the_conversation(
    client: openai.OpenAI, deployment: Deployment
) -> None:
    out = client.chat.completions.create(
        model=deployment.settings.api.model_name,
        messages=[
            {
                "role": "user",
                "content": "What does the backup and restore policy say about snapshots?",
            },
            {"role": "assistant", "content": "Monthly snapshots exist [1]."},
            {"role": "user", "content": "For how long are they kept?"},
        ],
    )
    citations = out.model_extra["citations"] if out.model_extra else []
    assert any(c["source"] == "policies/backup-policy.md" for c in citations), citations
