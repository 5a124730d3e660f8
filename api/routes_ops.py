"""Operations: liveness, readiness, Prometheus metrics, and the latest eval report.

``/readyz`` is cheap to poll: its checks run at most once per ``READY_TTL`` seconds (one
computation shared by concurrent probes), then answer from the cache. ``/metrics`` needs
``Authorization: Bearer <api.metrics_key>`` when that key is set, and is closed (403) on a
server listening beyond loopback without one: it names tenants and their activity.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.auth import Principal
from api.deps import Caller, State
from api.errors import ApiError, error_responses
from api.metrics import CONTENT_TYPE
from api.models import Health, Ready
from api.security import REPORT_POLICY, is_loopback
from rag.core.access import cli_reader, covers

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Any:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


def _checks(state: Any) -> tuple[dict[str, str], list[str]]:
    checks: dict[str, str] = {}
    failing: list[str] = []
    index = state.index
    try:
        collection = index.collection or index.open(create=False)
        try:
            # The collection itself, not only the process's handle on it: a store deleted
            # under a running server still counts the chunks it has open.
            index.store.collection_metadata(collection)
        except Exception:
            if index.collection == collection:
                raise
            # A reindex switched collections meanwhile (the old one is gone): the new one.
            collection = index.collection
            index.store.collection_metadata(collection)
        checks["store"] = f"ok ({index.store.count(collection)} chunks in {collection})"
    except Exception as exc:  # noqa: BLE001 - reported as the failing check
        checks["store"] = f"unreachable: {exc}"
        failing.append("store")
    if index.embedder._model is None:
        checks["embedding"] = "model not loaded yet"
        failing.append("embedding")
    else:
        embedder = index.embedder
        queries = embedder.query_precision_shown()
        checks["embedding"] = (
            f"ok ({embedder.identity().model}; documents {embedder.identity().document_precision}"
            f"; queries {queries['resolved']}: {queries['reason']})"
        )
    service = state.service
    if service.warm_error:
        checks["generator"] = f"failed to start: {service.warm_error}"
        failing.append("generator")
    elif not service.ready.is_set():
        checks["generator"] = "warming up"
        failing.append("generator")
    else:
        # One line per backend of the chain; ready while one of them can answer (the chain
        # falls back to the next), each one's state shown.
        backends = {
            part.partition(":")[2]: line
            for part, line in service.pipeline.health().items()
            if part.startswith("generator:")
        }
        checks["generator"] = "; ".join(f"{name}: {line}" for name, line in backends.items())
        if backends and all(line != "ok" for line in backends.values()):
            failing.append("generator")
    daemon = state.daemon
    if daemon is not None:
        stats = daemon.stats()
        if stats.get("sync_error"):
            checks["ingestion"] = f"failing: {stats['sync_error']}"
            failing.append("ingestion")
        else:
            checks["ingestion"] = "ok" if stats["ready"] else "initial sync running"
    return checks, failing


def _storage_checks(state: Any, checks: dict[str, str], failing: list[str]) -> None:
    """The tenants folder and the manifest can be written (uploads would otherwise be lost or unlisted)."""
    for part, line in state.documents.storage.checks().items():
        checks[part] = line
        if line != "ok":
            failing.append(part)


def _all_checks(state: Any) -> tuple[dict[str, str], list[str]]:
    checks, failing = _checks(state)
    _storage_checks(state, checks, failing)
    return checks, failing


READY_TTL = 1.0  # seconds a readiness result is reused


class _ReadyCache:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.at = float("-inf")
        self.result: tuple[dict[str, str], list[str]] = ({}, [])


async def _cached_checks(request: Request, state: Any) -> tuple[dict[str, str], list[str]]:
    cache: _ReadyCache | None = getattr(request.app.state, "ready_cache", None)
    if cache is None:
        cache = request.app.state.ready_cache = _ReadyCache()
    if time.monotonic() - cache.at < READY_TTL:
        return cache.result
    async with cache.lock:  # concurrent probes wait for the one computation
        if time.monotonic() - cache.at >= READY_TTL:
            cache.result = await anyio.to_thread.run_sync(_all_checks, state)
            cache.at = time.monotonic()
        return cache.result


@router.get("/readyz", response_model=Ready, responses=error_responses(500, 503))
async def readyz(request: Request, state: State) -> Any:
    """Ready to answer: store reachable, embedding model loaded, generator reachable, tenants
    folder and manifest writable (503 names what is not). Checked at most once a second."""
    checks, failing = await _cached_checks(request, state)
    if failing:
        detail = "; ".join(f"{name}: {checks[name]}" for name in failing)
        raise ApiError(503, "not_ready", f"not ready: {detail}", {"Retry-After": "5"})
    return {"status": "ready", "checks": checks}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        **error_responses(401, 403),
    },
)
async def metrics(request: Request, state: State) -> Response:
    """Requests, latency per route and per pipeline stage, tokens, ingestion counters, queue depth.

    With `api.metrics_key` set, only `Authorization: Bearer <api.metrics_key>` may read them.
    Without it they are open on a loopback-only server and closed (403) on any other."""
    expected = state.settings.api.metrics_key
    if expected is None and not is_loopback(state.bind_host):
        raise ApiError(
            403,
            "forbidden",
            f"/metrics is closed on a server listening on {state.bind_host}: set api.metrics_key "
            "(RAG_API__METRICS_KEY) and scrape with `Authorization: Bearer <api.metrics_key>`",
        )
    if expected is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise ApiError(
                401,
                "unauthorized",
                "/metrics needs `Authorization: Bearer <api.metrics_key>` (the scrape key, not an API key)",
                {"WWW-Authenticate": "Bearer"},
            )
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def _latest(state: Any, caller: Principal) -> tuple[Path, dict[str, Any]]:
    if caller.tenant != state.settings.tenant:
        raise ApiError(
            403,
            "forbidden",
            f"eval reports cover the whole index: only keys of tenant '{state.settings.tenant}' may read them",
        )
    # Evals run as the CLI's principal (access.cli_groups): their reports quote what it reads.
    index = state.index
    labels = set(index.manifest.labels(index.collection or index.open(create=False)).values())
    if not covers(caller.reader(state.settings), cli_reader(state.settings), labels):
        raise ApiError(
            403,
            "forbidden",
            "eval reports run as access.cli_groups and quote documents this key or token may "
            "not read: only principals reading every such group may read them",
        )
    from evals.report import latest_report, reports_dir

    found = latest_report(reports_dir(state.index.settings))
    if found is None:
        raise ApiError(
            404,
            "not_found",
            "no eval report yet: run `rag eval` (or let one run after the next sync)",
        )
    return found


@router.get(
    "/v1/evals/latest",
    response_model=dict[str, Any],
    responses=error_responses(401, 403, 404, 429, 500),
)
async def evals_latest(state: State, caller: Caller) -> Any:
    """The latest eval report (report.json)."""
    _, report = await anyio.to_thread.run_sync(_latest, state, caller)
    return report


@router.get(
    "/v1/prompts/releases",
    response_model=dict[str, Any],
    responses=error_responses(401, 403, 429, 500),
)
async def prompt_releases(state: State, caller: Caller) -> Any:
    """Prompt releases (`rag prompts status`): per prompt its versions' shares and their
    figures over the current step side by side, the step history, rollbacks. Started by
    `rag prompts release` or `releases.prompt` in the config."""
    if caller.tenant != state.settings.tenant:
        raise ApiError(
            403,
            "forbidden",
            f"prompt releases cover the whole deployment: only keys of tenant "
            f"'{state.settings.tenant}' may read them",
        )
    from rag.query.releases import release_store

    store = release_store(state.settings.resolved_data_dir())
    return await anyio.to_thread.run_sync(store.status)


@router.get(
    "/reports/latest",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 404, 429, 500),
    },
)
async def report_latest(state: State, caller: Caller) -> HTMLResponse:
    """The latest eval report as a page (report.html)."""
    folder, _ = await anyio.to_thread.run_sync(_latest, state, caller)
    html = folder / "report.html"
    if not html.is_file():
        raise ApiError(404, "not_found", f"the latest report ({folder.name}) has no report.html")
    return HTMLResponse(
        await anyio.to_thread.run_sync(html.read_text, "utf-8"),
        headers={"Content-Security-Policy": REPORT_POLICY},
    )
