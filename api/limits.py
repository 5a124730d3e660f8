"""Request limits (body size, question length, upload size and type) and backend concurrency gates.

Every limit answers with a message that names the limit and the setting that changes it:
413 for sizes, 415 for file types, 422 for field values, 503 + ``Retry-After`` when a
backend's queue is full (shared fairly between tenants: ``ConcurrencyGate``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, json_error

__all__ = ["BodyLimitMiddleware", "ConcurrencyGate", "too_large"]


def _human(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.0f} kB"


def too_large(what: str, size: int | None, limit: int, setting: str) -> ApiError:
    got = f" ({_human(size)})" if size is not None else ""
    return ApiError(
        413,
        "payload_too_large",
        f"{what}{got} exceeds the limit of {_human(limit)} (setting {setting})",
    )


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


def shutting_down() -> ApiError:
    return ApiError(
        503,
        "shutting_down",
        "the server is stopping; retry in a few seconds (on another instance, or this one "
        "once it is back)",
        {"Retry-After": "5"},
    )


class ConcurrencyGate:
    """At most ``limit`` calls of one backend at once, ``queue`` more waiting, the rest refused.

    Fair between tenants. While the queue has room, anyone gets a place. Once it is full, a
    tenant holding fewer waiting places than its share (``queue // tenants waiting``, at least
    one) still gets one, so one tenant flooding the queue at its allowed rate cannot turn
    another's request into a 503; the queue then stretches to at most twice ``queue``. A freed
    slot goes to the waiting tenant served longest ago (round robin), so another tenant's
    backlog delays a request by at most one call per tenant ahead of it.

    Refusal is a 503 with ``Retry-After`` estimated from the recent service time. Every method
    runs on the event loop (``release`` is posted there from worker threads)."""

    def __init__(self, name: str, limit: int, queue: int):
        self.name = name
        self.limit = max(1, limit)
        self.queue = queue
        self.active = 0
        self.waiting = 0  # places reserved and not running yet, every tenant's
        self.rejected = 0
        self._avg_seconds = 1.0
        self._held: dict[str, int] = {}  # tenant -> its waiting places
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}  # tenant -> parked acquires
        self._last_served: dict[str, int] = {}  # tenant -> grant number of its latest slot
        self._grants = 0
        self.closed = False  # the server is stopping: nothing more is queued or started

    def stats(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "queue": self.queue,
            "active": self.active,
            "waiting": self.waiting,
        }

    def _retry_after(self) -> int:
        return max(1, math.ceil(self._avg_seconds * (self.waiting + 1) / self.limit))

    def share(self, tenant: str) -> int:
        """How many waiting places ``tenant`` may hold once the queue is full."""
        if self.queue <= 0:
            return 0
        tenants = {t for t, n in self._held.items() if n} | {tenant}
        return max(1, self.queue // len(tenants))

    def close(self) -> None:
        """The server is stopping: queued requests and new ones get the 503 ``shutting_down``
        now (they would not run before the grace period ends); running ones go on."""
        self.closed = True
        for parked in self._waiters.values():
            for future in parked:
                if not future.done():
                    future.set_exception(shutting_down())
        self._waiters.clear()

    def reserve(self, tenant: str = "") -> None:
        """Claim a place (running or queued) now, or raise the 503; pair with ``acquire``/``cancel``."""
        if self.closed:
            raise shutting_down()
        held = self._held.get(tenant, 0)
        if self.active + self.waiting >= self.limit + self.queue:
            share = self.share(tenant)
            if held >= share or self.waiting >= 2 * self.queue:
                self.rejected += 1
                raise ApiError(
                    503,
                    "overloaded",
                    f"the {self.name} backend is busy ({self.active} running, {self.waiting} queued, "
                    f"{held} of them this tenant's, whose share of the full queue is {share}; limits "
                    f"api.concurrency.{self.name}={self.limit}, api.queue={self.queue}); retry later",
                    {"Retry-After": str(self._retry_after())},
                )
        self.waiting += 1
        self._held[tenant] = held + 1

    def _unreserve(self, tenant: str) -> None:
        self.waiting -= 1
        left = self._held.get(tenant, 0) - 1
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)

    def cancel(self, tenant: str = "") -> None:
        """Give back a place taken with ``reserve`` that will never be acquired."""
        self._unreserve(tenant)

    def _grant(self, tenant: str) -> None:
        self.active += 1
        self._grants += 1
        self._last_served[tenant] = self._grants

    def _wake(self) -> None:
        """Hand free slots to parked acquires: the tenant served longest ago first."""
        while self.active < self.limit and self._waiters:
            tenant = min(self._waiters, key=lambda t: self._last_served.get(t, 0))
            parked = self._waiters[tenant]
            future = parked.popleft()
            if not parked:
                del self._waiters[tenant]
            if future.done():  # its request was cancelled meanwhile
                continue
            self._grant(tenant)
            future.set_result(None)

    async def acquire(self, tenant: str = "") -> None:
        """Wait for a slot for a place taken with ``reserve``."""
        try:
            if self.active < self.limit and not self._waiters:
                self._grant(tenant)
                return
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(tenant, deque()).append(future)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled() and future.exception() is None:
                    # Granted, but its request went away before it ran: the slot goes on.
                    self.active -= 1
                else:
                    future.cancel()
                    parked = self._waiters.get(tenant)
                    if parked is not None and future in parked:
                        parked.remove(future)
                        if not parked:
                            del self._waiters[tenant]
                self._wake()
                raise
        finally:
            self._unreserve(tenant)

    def release(self, seconds: float) -> None:
        self.active -= 1
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds
        self._wake()

    @asynccontextmanager
    async def slot(self, tenant: str = "") -> AsyncIterator[None]:
        self.reserve(tenant)
        await self.acquire(tenant)
        started = time.monotonic()
        try:
            yield
        finally:
            self.release(time.monotonic() - started)
