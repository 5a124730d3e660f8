"""Every error leaves the service as JSON ``{"error": {"type", "message"}}``, never a stack trace.

``ApiError`` is what routes raise; the handlers installed by ``install_error_handlers`` turn
it, FastAPI's own HTTP and validation errors, and any unexpected exception into that shape.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.core.errors import (
    ConfigError,
    DiskFullError,
    EmbeddingMismatchError,
    GenerationError,
    PromptError,
    QueryError,
    QuestionError,
    RagError,
    StoreError,
)

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "error_responses",
    "install_error_handlers",
    "json_error",
]

log = logging.getLogger("api")


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(HTTPException):
    """An error with a stable machine-readable ``type`` and a message that says what to do next.

    A subclass of FastAPI's HTTPException so that one raised while a request body is read
    (the body-size limit) keeps its status instead of becoming a generic 400."""

    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.type = type
        self.message = message


_TYPE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key (send `Authorization: Bearer KEY`)",
    403: "The key's tenant may not use this endpoint",
    404: "Not found: no such document, prompt or model (documents of other tenants are reported as not found)",
    409: "Conflict with the state of the resource, or the tenant's file quota is used up",
    413: "Body, question or upload larger than the configured limit, or over the tenant's byte quota (the message names it)",
    415: "Upload of a file type that is not ingested",
    422: "Request failed validation (the message names the field and the limit)",
    429: "Rate limit of this key exceeded; retry after `Retry-After` seconds",
    500: "Unexpected server error (details are in the server log, never in the response)",
    503: "Overloaded, not ready, or storage that cannot be written (the message names it); retry after `Retry-After` seconds where given",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the given error statuses: JSON ``ErrorBody`` always,
    also on routes whose success is HTML, text or a file (the app adds ``ErrorBody`` to the components)."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {code: {"description": _DESCRIPTIONS[code], "content": content} for code in codes}


# Statuses any authenticated route can answer with.
ERROR_RESPONSES = error_responses(401, 413, 422, 429, 500)


def json_error(
    status: int, type: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": type, "message": message}}, status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            msg = f"body is not valid JSON ({ctx.get('error', 'decode error')})"
            loc = "body"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


# The library's errors, most specific first: their messages say what to do, so they are shown.
_RAG_ERRORS: list[tuple[type[RagError], int, str]] = [
    (PromptError, 404, "prompt_not_found"),
    (QueryError, 400, "invalid_request"),
    (GenerationError, 503, "generation_failed"),
    (EmbeddingMismatchError, 503, "index_mismatch"),
    (DiskFullError, 503, "storage_unavailable"),
    (StoreError, 503, "store_unavailable"),
    (ConfigError, 500, "config_error"),
]


def rag_error_status(exc: RagError) -> tuple[int, str]:
    """HTTP status and error type for a library error."""
    if isinstance(exc, QuestionError):  # the request's question field failed validation
        return 422, "question_too_long" if exc.too_long else "invalid_request"
    for cls, status, type_ in _RAG_ERRORS:
        if isinstance(exc, cls):
            return status, type_
    return 500, "internal_error"


def install_error_handlers(app: FastAPI) -> None:
    async def on_rag_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RagError)
        status, type_ = rag_error_status(exc)
        if status >= 500:
            log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return json_error(status, type_, str(exc))

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return json_error(
            exc.status_code, exc.type, exc.message, dict(exc.headers) if exc.headers else None
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, ApiError):
            return await on_api_error(request, exc)
        type_ = _TYPE_BY_STATUS.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = (
                f"no such endpoint: {request.method} {request.url.path} (see /docs for the API)"
            )
        elif exc.status_code == 405:
            message = (
                f"{request.method} is not allowed on {request.url.path} (see /docs for the API)"
            )
        headers = getattr(exc, "headers", None)
        return json_error(exc.status_code, type_, message, dict(headers) if headers else None)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return json_error(422, "invalid_request", _validation_message(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.error(
            "unhandled error %s on %s %s", ref, request.method, request.url.path, exc_info=exc
        )
        return json_error(
            500,
            "internal_error",
            f"internal error (reference {ref}); the server log has the details",
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RagError, on_rag_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
