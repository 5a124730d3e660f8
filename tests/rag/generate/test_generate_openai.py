"""The openai backend against a real HTTP server speaking the chat-completions protocol.

``ChatServer`` stands in for vLLM here (same API, scripted faults); the integration test
with a real vLLM server lives with the vLLM scripts.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from rag.core.config import OpenAIGeneratorSettings
from rag.generate import GenerationError, GenerationRequest, GeneratorChain, TokenCounter, Usage
from rag.generate.openai import OpenAIGenerator
from rag.query.pack import PackedContext
from tests.rag.chat_server import ChatServer, Fault

WORDS = TokenCounter(lambda text: text.split())


def _request(**extra: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=[
            {"role": "system", "content": "Answer."},
            {"role": "user", "content": "When was it built?"},
        ],
        question="When was it built?",
        context=PackedContext([], "", 0, 100),
        max_tokens=64,
        stop=("\n\nQuestion:",),
        extra=extra,
    )


def _generator(server: ChatServer, **overrides: Any) -> OpenAIGenerator:
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
        **overrides,
    }
    settings = OpenAIGeneratorSettings(**values)
    return OpenAIGenerator(settings, timeout_seconds=10, fallback_tokens=lambda: WORDS)


def _collect(gen: OpenAIGenerator, request: GenerationRequest) -> tuple[list[str], Usage]:
    pieces: list[str] = []
    usage = None
    for item in gen.stream(request):
        if isinstance(item, Usage):
            usage = item
        else:
            pieces.append(item)
    assert usage is not None, "the stream must end with a Usage"
    return pieces, usage


def test_streams_tokens_and_reports_server_usage(chat_server: ChatServer) -> None:
    gen = _generator(chat_server)
    pieces, usage = _collect(gen, _request())
    assert "".join(pieces) == chat_server.reply
    assert len(pieces) == len(chat_server.reply.split(" ")), "one SSE event per streamed piece"
    assert usage.completion_tokens == len(pieces)
    assert usage.prompt_tokens == 5  # the server's count, not ours
    sent = chat_server.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (
        sent["model"] == "smollm2-135m-instruct"
        and sent["max_tokens"] == 64
        and sent["stop"] == ["\n\nQuestion:"]
    )


def test_counts_usage_itself_when_the_server_does_not(chat_server: ChatServer) -> None:
    chat_server.send_usage = False
    pieces, usage = _collect(_generator(chat_server), _request())
    assert usage.completion_tokens == len("".join(pieces).split())
    assert usage.prompt_tokens > 0


def test_non_streaming_completion(chat_server: ChatServer) -> None:
    pieces, usage = _collect(_generator(chat_server), _request(stream=False))
    assert pieces == [chat_server.reply]
    assert chat_server.requests[-1]["stream"] is False
    assert usage.completion_tokens == len(chat_server.reply.split(" "))


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retries_transient_statuses_then_answers(chat_server: ChatServer, status: int) -> None:
    chat_server.faults.extend([Fault(status=status), Fault(status=status)])
    gen = _generator(chat_server, max_retries=2)
    pieces, _ = _collect(gen, _request())
    assert "".join(pieces) == chat_server.reply
    assert gen.retries == 2 and len(chat_server.requests) == 3


def test_gives_up_after_max_retries(chat_server: ChatServer) -> None:
    chat_server.faults.extend([Fault(status=503)] * 5)
    gen = _generator(chat_server, max_retries=1)
    with pytest.raises(GenerationError, match="after 2 attempt"):
        _collect(gen, _request())
    assert len(chat_server.requests) == 2


def test_retry_after_header_sets_the_wait(chat_server: ChatServer) -> None:
    chat_server.faults.append(Fault(status=429, retry_after="0.3"))
    gen = _generator(chat_server, max_backoff_seconds=5.0)
    started = time.monotonic()
    _collect(gen, _request())
    assert time.monotonic() - started >= 0.3


def test_client_errors_are_not_retried(chat_server: ChatServer) -> None:
    chat_server.faults.append(Fault(status=400))
    gen = _generator(chat_server)
    with pytest.raises(GenerationError, match="HTTP 400"):
        _collect(gen, _request())
    assert gen.retries == 0 and len(chat_server.requests) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = OpenAIGeneratorSettings(
        base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_seconds=0.01
    )
    gen = OpenAIGenerator(settings, fallback_tokens=lambda: WORDS)
    with pytest.raises(GenerationError, match="is the server up"):
        _collect(gen, _request())
    assert gen.retries == 2


def test_stall_past_read_timeout_fails_fast(chat_server: ChatServer) -> None:
    chat_server.faults.append(Fault(stall_seconds=1.5))
    gen = _generator(chat_server, read_timeout_seconds=0.3, max_retries=0)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="no data"):
        _collect(gen, _request())
    assert time.monotonic() - started < 1.4


def test_stream_cut_mid_answer_raises_not_retries(chat_server: ChatServer) -> None:
    chat_server.faults.append(Fault(drop_after_tokens=2))
    gen = _generator(chat_server)
    got: list[str] = []
    with pytest.raises(GenerationError, match="broke off"):
        for item in gen.stream(_request()):
            if isinstance(item, str):
                got.append(item)
    assert len(got) == 2, "the tokens before the cut were delivered"
    assert len(chat_server.requests) == 1, "a half-sent answer must not be silently re-requested"


def test_chain_falls_back_mid_stream_with_a_reset(chat_server: ChatServer) -> None:
    """Server dies after two tokens: the consumer is told to discard them, the next backend answers."""
    chat_server.faults.append(Fault(drop_after_tokens=2))
    backup = ChatServer(reply="Backup answer.")
    try:
        chain = GeneratorChain([_generator(chat_server), _generator(backup)], timeout_seconds=10)
        events = list(chain.stream(_request()))
    finally:
        backup.close()
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["token", "token"] and kinds[2] == "reset" and kinds[-1] == "end"
    assert events[2][1]["failed"] == "openai"
    outcome = events[-1][1]
    assert (
        outcome.text == "Backup answer."
        and outcome.degraded
        and outcome.failures[0]["generator"] == "openai"
    )
    assert "".join(p for k, p in events[3:-1]) == "Backup answer."


def test_deadline_applies_across_retries(chat_server: ChatServer) -> None:
    chat_server.faults.extend([Fault(status=503, retry_after="5")] * 3)
    gen = _generator(chat_server, max_retries=3, max_backoff_seconds=5.0)
    req = _request()
    req.deadline = time.monotonic() + 0.5
    started = time.monotonic()
    with pytest.raises(GenerationError, match="time limit"):
        _collect(gen, req)
    assert time.monotonic() - started < 1.0


def test_api_key_is_sent(chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setenv("TEST_RAG_KEY", "sk-test")
    gen = _generator(chat_server, api_key_env="TEST_RAG_KEY")
    client = gen._http()
    client.event_hooks["request"].append(lambda r: seen.append(r.headers.get("authorization", "")))
    _collect(gen, _request())
    assert seen == ["Bearer sk-test"]
