"""OpenAI chat ↔ knowledge-base query: a conversation split into its question and history,
and results shaped as ``chat.completion`` objects and ``chat.completion.chunk`` streams.

The last user message is the question; the user and assistant messages before it are the
query's history (the most recent while they fit in ``api.history_tokens``, counted with the
embedding model's tokenizer), which the pipeline's ``condense`` stage reads to turn a
follow-up ("and its price?") into a standalone question before retrieval, answer selection
and verification (rag/query/condense.py). System messages are ignored: the deployment's
versioned prompt decides how answers are written.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from api.errors import ApiError
from api.models import ChatMessage
from api.sse import sse_frame
from rag.core.types import Turn

__all__ = ["ChatStreamRenderer", "completion", "history_turns", "split_conversation"]

_MARKER = re.compile(r"\s*\[\d+\]")
_ASSISTANT_WORDS = 60  # earlier answers are long; their opening says what they were about


def history_turns(
    messages: Sequence[tuple[str, str]], budget: int, count: Callable[[str], int]
) -> tuple[Turn, ...]:
    """Earlier (role, text) messages as the query's history, oldest first: user and assistant
    messages only, the most recent while they fit in ``budget`` tokens (``count``); answers'
    ``[n]`` markers out and their text cut at ``_ASSISTANT_WORDS`` words."""
    kept: list[Turn] = []
    used = 0
    for role, raw in reversed(messages):
        if role not in ("user", "assistant"):
            continue
        text = " ".join(raw.split())
        if role == "assistant":
            text = " ".join(_MARKER.sub("", text).split()[:_ASSISTANT_WORDS])
        if not text:
            continue
        cost = count(text)
        if used + cost > budget:
            break
        used += cost
        kept.append(Turn("user" if role == "user" else "assistant", text))
    return tuple(reversed(kept))


def split_conversation(
    messages: Sequence[ChatMessage], budget: int, count: Callable[[str], int]
) -> tuple[str, tuple[Turn, ...]]:
    """(the last user message: the question, the messages before it as history)."""
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None
    )
    if last_user is None:
        raise ApiError(
            422,
            "invalid_request",
            "messages has no user message: the last user message is the question",
        )
    question = messages[last_user].text().strip()
    if not question:
        raise ApiError(422, "invalid_request", "the last user message is empty: ask something")
    earlier = [(m.role, m.text()) for m in messages[:last_user]]
    return question, history_turns(earlier, budget, count)


def _usage(result: dict[str, Any]) -> dict[str, int]:
    usage = result.get("usage") or {}
    p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def rag_info(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "abstained": bool(result.get("abstained")),
        # sentences of the model's answer no passage supports: left out of the content
        # (generation.verify.unsupported: drop, only counted) or shown there marked
        # "[unverified]" and listed (mark)
        "withheld": int(result.get("withheld") or 0),
        "unsupported": list(result.get("unsupported") or []),
        "degraded": bool(result.get("degraded")),
        "generator": result.get("generator"),
        "prompt": result.get("prompt"),
        "timings_ms": result.get("timings_ms") or {},
        "trace_id": result.get("trace_id"),  # for POST /v1/feedback
        "standalone_question": result.get("standalone_question"),
    }


def _finish(result: dict[str, Any]) -> str:
    """``length`` when the generator stopped at max_tokens, else ``stop``."""
    return "length" if result.get("finish_reason") == "length" else "stop"


def completion(result: dict[str, Any], model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.get("answer") or ""},
                "finish_reason": _finish(result),
            }
        ],
        "usage": _usage(result),
        "citations": result.get("citations") or [],
        "rag": rag_info(result),
    }


class ChatStreamRenderer:
    """Pipeline events → ``chat.completion.chunk`` SSE frames, ending with ``data: [DONE]``.
    A fallback that withdraws text already sent is a chunk with ``rag.reset``
    ({failed, next, error}) and an empty delta: the content after it is the answer.

    The last chunk (``finish_reason``: ``stop``, or ``length`` when the answer was cut at
    ``max_tokens``) carries the extension fields ``citations`` and
    ``rag`` (with the final, verified ``answer``); OpenAI clients ignore what they don't know."""

    def __init__(self, model: str, include_usage: bool):
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.citations: list[Any] = []
        self.started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return sse_frame(body)

    def __call__(self, kind: str, payload: Any) -> Iterable[str]:
        if not self.started:
            self.started = True
            yield self._chunk({"role": "assistant", "content": ""})
        if kind == "token" and payload:
            yield self._chunk({"content": str(payload)})
        elif kind == "reset":
            # A backend died after text was shown and the next one starts over. The protocol
            # cannot take text back: this chunk says the content so far is withdrawn (the
            # extension field rag.reset); the content after it is the answer.
            yield self._chunk({}, rag={"reset": dict(payload or {})})
        elif kind == "citations":
            self.citations = list(payload or [])
        elif kind == "done":
            result = dict(payload or {})
            # The content since the last rag.reset chunk, joined, is rag.answer: the verified
            # answer, markers renumbered to `citations` (rag_info carries `unsupported`).
            info = {**rag_info(result), "answer": result.get("answer")}
            yield self._chunk(
                {},
                _finish(result),
                citations=self.citations or result.get("citations") or [],
                rag=info,
            )
            if self.include_usage:
                yield sse_frame(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": _usage(result),
                    }
                )
        elif kind == "error":
            yield sse_frame({"error": payload})


def query_renderer(kind: str, payload: Any) -> Iterable[str]:
    """/v1/query events: ``token`` {text}, ``reset`` {failed, next, error}, ``citations`` {citations},
    ``done`` {…}, ``error`` {error}."""
    if kind == "token":
        yield sse_frame({"text": str(payload)}, "token")
    elif kind == "citations":
        yield sse_frame({"citations": list(payload or [])}, "citations")
    elif kind == "reset":
        # A backend failed mid-answer and the next one starts over: drop the tokens so far.
        yield sse_frame(payload, "reset")
    elif kind == "done":
        yield sse_frame(payload, "done")
    elif kind == "error":
        yield sse_frame({"error": payload}, "error")
