"""Operations: liveness, readiness, Prometheus metrics, and the latest eval report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from api.deps import Caller, State
from api.errors import ApiError, error_responses
from api.metrics import CONTENT_TYPE
from api.models import Health, Ready

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
        checks["store"] = f"ok ({index.store.count(collection)} chunks in {collection})"
    except Exception as exc:  # noqa: BLE001 - reported as the failing check
        checks["store"] = f"unreachable: {exc}"
        failing.append("store")
    if index.embedder._model is None:
        checks["embedding"] = "model not loaded yet"
        failing.append("embedding")
    else:
        checks["embedding"] = f"ok ({index.embedder.identity().model})"
    service = state.service
    if service.warm_error:
        checks["generator"] = f"failed to start: {service.warm_error}"
        failing.append("generator")
    elif not service.ready.is_set():
        checks["generator"] = "warming up"
        failing.append("generator")
    else:
        probe = getattr(service.pipeline, "check_generator", None)
        try:
            checks["generator"] = str(probe()) if callable(probe) else "ok"
        except Exception as exc:  # noqa: BLE001 - reported as the failing check
            checks["generator"] = f"unreachable: {exc}"
            failing.append("generator")
    daemon = state.daemon
    if daemon is not None:
        stats = daemon.stats()
        checks["ingestion"] = "ok" if stats["ready"] else "initial sync running"
    return checks, failing


@router.get("/readyz", response_model=Ready, responses=error_responses(500, 503))
async def readyz(state: State) -> Any:
    """Ready to answer: store reachable, embedding model loaded, generator reachable (503 names what is not)."""
    checks, failing = await anyio.to_thread.run_sync(_checks, state)
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
        }
    },
)
async def metrics(state: State) -> Response:
    """Requests, latency per route and per pipeline stage, tokens, ingestion counters, queue depth."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def _latest(state: Any, caller_tenant: str) -> tuple[Path, dict[str, Any]]:
    if caller_tenant != state.settings.tenant:
        raise ApiError(
            403,
            "forbidden",
            f"eval reports cover the whole index: only keys of tenant '{state.settings.tenant}' may read them",
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
    _, report = await anyio.to_thread.run_sync(_latest, state, caller.tenant)
    return report


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
    folder, _ = await anyio.to_thread.run_sync(_latest, state, caller.tenant)
    html = folder / "report.html"
    if not html.is_file():
        raise ApiError(404, "not_found", f"the latest report ({folder.name}) has no report.html")
    return HTMLResponse(await anyio.to_thread.run_sync(html.read_text, "utf-8"))
