"""``POST /v1/query``: the `rag query --json` object, or its Server-Sent Events stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.auth import Principal
from api.chat import history_turns, query_renderer
from api.deps import AppState, Caller, State, disconnect_waiter, new_trace_id
from api.errors import error_responses
from api.models import QueryRequest, QueryResponse
from api.sse import SSEResponse
from api.sse_schema import QUERY_STREAM
from rag.core.textguard import check_question
from rag.core.types import Query

__all__ = ["query_of", "router"]

router = APIRouter(tags=["query"])

SSE_QUERY_DOC = (
    'With `stream: true`: `text/event-stream` with `token` events (`{"text"}`: verified answer text, '
    "released sentence by sentence; concatenated they are the final `answer`) — a `reset` event means a "
    "fallback generator starts over, drop the tokens so far — "
    'then one `citations` event (`{"citations": [...]}`, verified), then `done` with the full result: '
    "the verified `answer` (authoritative), usage, timings, abstained/degraded, and `unsupported`, the "
    'sentences verification flagged. `error` (`{"error": {type, message}}`) if the stream fails after it started.'
)


def query_of(body: QueryRequest, state: AppState, caller: Principal) -> Query:
    """The :class:`Query` a request asks, for ``caller``: the question checked
    (``api.max_question_chars``), a trace id picked when tracing is on, the history cut to
    ``api.history_tokens``. ``/v1/query`` and the MCP tools (``api/mcp_server.py``) both build
    their queries here."""
    check_question(body.question, state.settings.api.max_question_chars)
    return Query(
        question=body.question,
        filters=body.filters.as_filter() if body.filters else None,
        prompt=body.prompt,
        generate=body.generate,
        user=body.user,
        session=body.session,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        trace_id=new_trace_id(state, caller),
        history=history_turns(
            [(m.role, m.content) for m in body.history or []],
            state.settings.api.history_tokens,
            state.count_tokens,
        ),
    )


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    summary="Ask the knowledge base",
    description=SSE_QUERY_DOC,
    responses={
        200: {"content": {"text/event-stream": {"schema": QUERY_STREAM}}},
        **error_responses(400, 401, 404, 413, 422, 429, 500, 503),
    },
)
async def query(
    body: QueryRequest, request: Request, response: Response, state: State, caller: Caller
) -> Any:
    query = query_of(body, state, caller)
    headers = {"X-Trace-Id": query.trace_id} if query.trace_id else {}
    if body.stream:
        sse = SSEResponse(state.service.open_stream(query, caller), query_renderer)
        sse.headers.update(headers)
        return sse
    response.headers.update(headers)
    return await state.service.answer(query, caller, disconnect_waiter(request))
