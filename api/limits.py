"""Request limits (body size, question length, upload size and type) and backend concurrency gates.

Every limit answers with a message that names the limit and the setting that changes it:
413 for sizes, 415 for file types, 422 for field values, 503 + ``Retry-After`` when a
backend's queue is full.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, json_error

__all__ = ["BodyLimitMiddleware", "ConcurrencyGate", "check_question", "too_large"]


def _human(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.0f} kB"


def too_large(what: str, size: int | None, limit: int, setting: str) -> ApiError:
    got = f" ({_human(size)})" if size is not None else ""
    return ApiError(
        413,
        "payload_too_large",
        f"{what}{got} exceeds the limit of {_human(limit)} (setting {setting})",
    )


def check_question(question: str, limit: int) -> None:
    if len(question) > limit:
        raise ApiError(
            422,
            "question_too_long",
            f"question is {len(question)} characters; the limit is {limit} (setting api.max_question_chars)",
        )
    if not question.strip():
        raise ApiError(422, "invalid_request", "question is empty: ask something")


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from ``Content-Length``, else while streaming in.

    ``upload_paths`` get ``upload_limit`` (file plus multipart framing), everything else
    ``json_limit``."""

    def __init__(
        self, app: ASGIApp, json_limit: int, upload_limit: int, upload_paths: tuple[str, ...]
    ):
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in self.upload_paths
        limit = self.upload_limit if upload else self.json_limit
        what, setting = (
            ("upload", "api.max_upload_mb") if upload else ("request body", "api.max_body_kb")
        )
        declared: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > limit:
            err = too_large(what, declared, limit, setting)
            await json_error(413, err.type, err.message, {"Connection": "close"})(
                scope, receive, send
            )
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(what, None, limit, setting)
            return message

        await self.app(scope, limited_receive, send)


class ConcurrencyGate:
    """At most ``limit`` calls of one backend at once, ``queue`` more waiting, the rest refused.

    Refusal is a 503 with ``Retry-After`` estimated from the recent service time."""

    def __init__(self, name: str, limit: int, queue: int):
        self.name = name
        self.limit = max(1, limit)
        self.queue = queue
        self._sem = asyncio.Semaphore(self.limit)
        self.active = 0
        self.waiting = 0
        self.rejected = 0
        self._avg_seconds = 1.0

    def stats(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "queue": self.queue,
            "active": self.active,
            "waiting": self.waiting,
        }

    def _retry_after(self) -> int:
        return max(1, math.ceil(self._avg_seconds * (self.waiting + 1) / self.limit))

    def reserve(self) -> None:
        """Claim a place (running or queued) now, or raise the 503; pair with ``acquire``/``cancel``."""
        if self.active + self.waiting >= self.limit + self.queue:
            self.rejected += 1
            raise ApiError(
                503,
                "overloaded",
                f"the {self.name} backend is busy ({self.active} running, {self.waiting} queued; "
                f"limits api.concurrency.{self.name}={self.limit}, api.queue={self.queue}); retry later",
                {"Retry-After": str(self._retry_after())},
            )
        self.waiting += 1

    async def acquire(self) -> None:
        """Wait for a slot for a place taken with ``reserve``."""
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self, seconds: float) -> None:
        self.active -= 1
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds
        self._sem.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.reserve()
        await self.acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            self.release(time.monotonic() - started)
