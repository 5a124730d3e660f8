"""Shared state of one app and the dependencies routes declare (auth + rate limit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import KeyStore, Principal
from api.errors import ApiError
from api.principals import JwtError, JwtVerifier, looks_like_jwt
from api.ratelimit import RateLimiter

if TYPE_CHECKING:
    from api.documents import Documents
    from api.metrics import Metrics
    from api.service import QueryService
    from rag.core.config import Settings
    from rag.indexing.index import Index

__all__ = [
    "AppState",
    "Caller",
    "State",
    "authenticate_request",
    "authenticated",
    "disconnect_waiter",
    "get_state",
    "new_trace_id",
    "trace_user",
]


@dataclass
class AppState:
    settings: Settings
    index: Index
    service: QueryService
    keys: KeyStore
    limiter: RateLimiter
    metrics: Metrics
    documents: Documents
    daemon: Any  # ingestion.daemon.WatchDaemon | None
    count_tokens: Any  # Callable[[str], int]
    tracing: Any = None  # rag.observability.Tracing when the pipeline traces to Langfuse
    bind_host: str = "127.0.0.1"  # the address the server listens on
    jwt: JwtVerifier | None = None  # auth.jwt: bearer JWTs from a company's login


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.rag
    return state


State = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `rag keys create --tenant NAME`, or a signed JWT (auth.jwt)",
)


async def authenticated(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """401 without a valid key; 429 (with Retry-After) when the key's bucket is empty."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing API key: send `Authorization: Bearer KEY` (`rag keys create`)",
            challenge,
        )
    token = credentials.credentials
    if state.jwt is not None and looks_like_jwt(token):
        try:
            principal: Principal | None = await anyio.to_thread.run_sync(state.jwt.verify, token)
        except JwtError as exc:
            raise ApiError(401, "unauthorized", f"{exc} (auth.jwt)", challenge) from None
    else:
        principal = state.keys.verify(token)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "invalid or revoked API key (`rag keys list` shows the valid ones)",
            challenge,
        )
    wait = state.limiter.check(principal.key_id)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of this key exceeded ({state.settings.api.requests_per_minute:g}/min, burst "
            f"{state.settings.api.burst}); retry in {wait}s",
            {"Retry-After": str(wait)},
        )
    return principal


Caller = Annotated[Principal, Depends(authenticated)]


async def authenticate_request(request: Request) -> Principal:
    """``Caller`` for a request that reaches no FastAPI route (the MCP endpoint, an ASGI app):
    the same bearer parsing and the same checks (401, the key's rate limit 429)."""
    return await authenticated(await get_state(request), await _bearer(request))


def trace_user(caller: Principal) -> str:
    """Who a trace belongs to: the key's or token's user, else the key's id."""
    return caller.user or caller.key_id


def new_trace_id(state: AppState, caller: Principal) -> str | None:
    """The trace id a query about to run is recorded under (X-Trace-Id); None: not traced.
    Bound to the caller's tenant and user: only they may rate it (``POST /v1/feedback``)."""
    tracing = state.tracing
    return tracing.new_trace_id(caller.tenant, trace_user(caller)) if tracing is not None else None


def disconnect_waiter(request: Request) -> Callable[[], Awaitable[None]]:
    """Returns when the client hangs up (the body is read by then: the next message is the disconnect)."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait
