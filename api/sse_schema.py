"""OpenAPI descriptions of the two event streams, one schema per event (OpenAPI 3.2 style:
``event`` names the kind, ``data`` is JSON whose schema is given by ``contentSchema``).

The models here only document payloads the renderers in ``api/chat.py`` write; the
schemathesis test validates every streamed event against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models import ChatUsage, Citation

__all__ = ["CHAT_STREAM", "DOC_MODELS", "QUERY_STREAM"]


class TokenData(BaseModel):
    text: str


class ResetData(BaseModel):
    """A generator failed mid-answer; the next one in the chain starts over."""

    model_config = ConfigDict(extra="allow")

    failed: str | None = None
    next: str | None = None
    error: str | None = None


class CitationsData(BaseModel):
    citations: list[Citation]


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: ChatUsage | None = None
    citations: list[Citation] | None = None
    rag: dict[str, Any] | None = Field(
        default=None,
        description="On the last chunk: the verified `answer` (the content joined), generator, "
        "degraded, … On a chunk with an empty delta, `reset` ({failed, next, error}): a backend "
        "died after text was sent; the content before this chunk is withdrawn.",
    )


DOC_MODELS: tuple[type[BaseModel], ...] = (TokenData, ResetData, CitationsData, ChatCompletionChunk)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _event(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
        },
    }


QUERY_STREAM: dict[str, Any] = {
    "oneOf": [
        _event("token", _ref("TokenData")),
        _event("reset", _ref("ResetData")),
        _event("citations", _ref("CitationsData")),
        _event("done", _ref("QueryResponse")),
        _event("error", _ref("ErrorBody")),
    ]
}

CHAT_STREAM: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [_ref("ChatCompletionChunk"), _ref("ErrorBody")]},
                },
            ]
        }
    },
}
