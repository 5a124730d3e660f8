"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``.

The official ``openai`` client works unchanged (``base_url=".../v1"``, ``api_key=KEY``),
streaming included. Citations travel as ``[n]`` markers in the text and in the extension
field ``citations`` (the last chunk of a stream).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from api.chat import ChatStreamRenderer, completion, split_conversation
from api.deps import Caller, State, disconnect_waiter, new_trace_id
from api.errors import ApiError, error_responses
from api.models import ChatCompletion, ChatRequest, ModelList
from api.sse import SSEResponse, sse_frame
from api.sse_schema import CHAT_STREAM
from rag.core.textguard import check_question
from rag.core.types import Query

__all__ = ["router"]

router = APIRouter(tags=["openai"])

_STARTED = int(time.time())


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 429, 500))
async def models(state: State, caller: Caller) -> Any:
    """The chat "model" names this deployment serves."""
    return {
        "object": "list",
        "data": [
            {
                "id": state.settings.api.model_name,
                "object": "model",
                "created": _STARTED,
                "owned_by": "rag-kb",
            }
        ],
    }


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    description=(
        "OpenAI chat completions. The last user message is the question; the messages before it are "
        "its history (the most recent within api.history_tokens): a follow-up is answered as the "
        "standalone question it stands for (`rag.standalone_question`). With `stream: true`: "
        "`chat.completion.chunk` events, the last one carrying `citations` and `rag`, then "
        "`data: [DONE]`."
    ),
    responses={
        200: {"content": {"text/event-stream": {"schema": CHAT_STREAM}}},
        **error_responses(400, 401, 404, 413, 422, 429, 500, 503),
    },
)
async def chat_completions(
    body: ChatRequest, request: Request, response: Response, state: State, caller: Caller
) -> Any:
    served = state.settings.api.model_name
    if body.model != served:
        raise ApiError(
            404,
            "model_not_found",
            f"model {body.model!r} is not served here; use {served!r} (GET /v1/models)",
        )
    question, history = split_conversation(
        body.messages, state.settings.api.history_tokens, state.count_tokens
    )
    check_question(question, state.settings.api.max_question_chars)
    query = Query(
        question=question,
        history=history,
        user=body.user,
        session=body.user,
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        trace_id=new_trace_id(state, caller),
    )
    headers = {"X-Trace-Id": query.trace_id} if query.trace_id else {}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        renderer = ChatStreamRenderer(served, include_usage)
        sse = SSEResponse(
            state.service.open_stream(query, caller), renderer, trailer=[sse_frame("[DONE]")]
        )
        sse.headers.update(headers)
        return sse
    response.headers.update(headers)
    result = await state.service.answer(query, caller, disconnect_waiter(request))
    return completion(result, served)
