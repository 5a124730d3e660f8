"""``POST /v1/feedback``: a user's thumbs up or down on an answer, by its ``trace_id``.

It becomes a ``user_feedback`` score on the answer's Langfuse trace and a local record in
``<data_dir>/feedback/feedback.jsonl`` (``rag feedback`` lists them; thumbs-down answers are
candidate golden-set entries). A key scores only its own tenant's traces: trace ids carry
their tenant (``rag.observability.ids``), so another tenant's id is answered 404, like an
unknown one.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import Caller, State, trace_user
from api.errors import ApiError, error_responses

__all__ = ["FeedbackRequest", "FeedbackResponse", "router"]

router = APIRouter(tags=["feedback"])


class FeedbackRequest(BaseModel):
    # Strict: `true` is no thumbs up (JSON types as declared, like every request body).
    model_config = ConfigDict(extra="forbid", strict=True)

    trace_id: str = Field(
        min_length=32,
        max_length=32,
        description="`trace_id` of the answer (its JSON, the `done` event, `rag.trace_id` or "
        "the X-Trace-Id header)",
    )
    value: Literal[0, 1] = Field(description="1: helpful (thumbs up); 0: not (thumbs down)")
    comment: str | None = Field(default=None, max_length=2000)

    @field_validator("value", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # A literal compares by equality, and `true == 1`, even in strict mode.
        if isinstance(value, bool):
            raise ValueError("must be the number 0 or 1, not a boolean")
        return value


class FeedbackResponse(BaseModel):
    id: str | None = Field(description="The local record (`rag feedback`)")
    trace_id: str
    value: int


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    summary="Rate an answer",
    responses=error_responses(400, 401, 404, 413, 422, 429, 500),
)
async def feedback(body: FeedbackRequest, state: State, caller: Caller) -> Any:
    tracing = state.tracing
    if tracing is None:
        raise ApiError(
            404,
            "tracing_disabled",
            "tracing is off on this deployment, so answers have no trace_id to rate "
            "(set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY, or the tracing section)",
        )
    from rag.observability import FeedbackError

    try:
        # Scrubbing the comment may load the PII engine: off the event loop.
        record = await anyio.to_thread.run_sync(
            tracing.record_feedback,
            body.trace_id,
            caller.tenant,
            body.value,
            body.comment,
            trace_user(caller),
        )
    except FeedbackError as exc:
        raise ApiError(404, "trace_not_found", str(exc)) from exc
    from rag.query.releases import release_store

    # An answer a prompt release served: its thumbs count in the release's window.
    await anyio.to_thread.run_sync(
        release_store(state.settings.resolved_data_dir()).feedback, body.trace_id, body.value
    )
    return {"id": record.get("id"), "trace_id": body.trace_id, "value": body.value}
