"""The FastAPI app: ``create_app(settings, index=None, pipeline=None, daemon=None, bind_host=None)``.

``rag serve`` passes the index and daemon it runs (one process holds the store); tests pass
a shared index so one loaded embedding model serves every app they start. Without an index
the app opens one itself at startup and closes it at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.routing import Route

from api.auth import KeyStore
from api.bodies import FormJsonMiddleware
from api.deps import AppState
from api.documents import Documents
from api.errors import ErrorBody, install_error_handlers
from api.limits import BodyLimitMiddleware
from api.mcp_server import MCP_PATH, McpEndpoint
from api.metrics import Metrics, MetricsMiddleware
from api.principals import JwtVerifier
from api.ratelimit import RateLimiter
from api.security import (
    DOCS_ASSETS,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
    docs_assets,
    docs_html,
)
from api.service import Pipeline, QueryService
from api.sse_schema import DOC_MODELS
from rag.core.config import Settings
from rag.core.resources import package_path

__all__ = ["create_app"]

log = logging.getLogger("api")

STATIC = package_path("api", "static")  # the chat page: package data
UPLOAD_OVERHEAD = 64_000  # multipart framing around the file


def _token_counter(index: Any) -> Any:
    from rag.core.tokens import load_tokenizer

    encode = load_tokenizer(index.embedder.model_dir)

    def count(text: str) -> int:
        return len(encode(text))

    return count


def create_state(
    settings: Settings,
    index: Any,
    pipeline: Pipeline | None = None,
    daemon: Any = None,
    keys: KeyStore | None = None,
    bind_host: str | None = None,
) -> AppState:
    """What requests are answered with: the query service over ``pipeline`` (a
    ``QueryPipeline`` traced to Langfuse when configured, by default), the tenants' documents,
    keys, rate limiter and metrics. The HTTP app and ``rag mcp`` (stdio) build it here alike."""
    api = settings.api
    state: dict[str, AppState] = {}

    def live_metrics() -> dict[str, Any]:
        s = state.get("app")
        if s is None:
            return {}
        return {
            "ingestion": s.daemon.stats() if s.daemon is not None else {},
            "gates": {n: {**g.stats(), "rejected": g.rejected} for n, g in s.service.gates.items()},
            "rate_limited": s.limiter.rejected,
            **s.service.pipeline.stats(),
            "injection_flagged_chunks": _flagged_chunks(index),
            # prompt releases of this data dir (every API process on it sees the same)
            "releases": release_store(settings.resolved_data_dir()).status(),
        }

    metrics = Metrics(live_metrics)
    from rag.observability import tracing_for
    from rag.query.releases import release_store

    tracing = tracing_for(settings)  # no keys: disabled, nothing loaded
    if pipeline is None:
        from rag.query.pipeline import QueryPipeline

        pipeline = QueryPipeline(index, settings, tracer=tracing.tracer)
    service = QueryService(index, settings, pipeline, metrics)
    app_state = AppState(
        settings=settings,
        index=index,
        service=service,
        keys=keys or KeyStore(index.data_dir, api.keys),
        limiter=RateLimiter(api.requests_per_minute, api.burst),
        metrics=metrics,
        documents=Documents(
            index,
            settings.ingestion.extensions,
            settings.ingestion.ignore_hidden,
            max_files=api.quota.max_files,
            max_bytes=api.quota.max_bytes,
            exclude=settings.ingestion.path_filter(),
            max_depth=settings.ingestion.max_depth,
        ),
        daemon=daemon,
        count_tokens=_token_counter(index),
        bind_host=bind_host or api.host,
        jwt=JwtVerifier(settings.auth.jwt, settings.tenant) if settings.auth.jwt else None,
        tracing=tracing
        if tracing.tracer is not None and pipeline.traced_by(tracing.tracer)
        else None,
    )
    state["app"] = app_state
    return app_state


def create_app(
    settings: Settings,
    index: Any = None,
    pipeline: Pipeline | None = None,
    daemon: Any = None,
    keys: KeyStore | None = None,
    bind_host: str | None = None,
) -> FastAPI:
    """``bind_host``: the address the server listens on (default ``api.host``): a name
    requests may carry in ``Host``, and whether ``/metrics`` needs ``api.metrics_key``."""
    owns_index = index is None
    bind_host = bind_host or settings.api.host
    if index is None:
        from rag.indexing.index import Index

        index = Index(settings)
        index.open(create=True)
    api = settings.api
    app_state = create_state(settings, index, pipeline, daemon, keys, bind_host)
    service, metrics = app_state.service, app_state.metrics
    mcp = McpEndpoint(app_state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.loop = asyncio.get_running_loop()  # for stop_accepting, from the stopping thread
        # Models load in the background: /healthz answers at once, /readyz once they are in.
        threading.Thread(target=service.warm_up, name="rag-warm-up", daemon=True).start()
        try:
            async with mcp.running():
                yield
        finally:
            if owns_index:
                index.close()

    app = FastAPI(
        title="rag-kb",
        version="0.1.0",
        summary="Knowledge-base chat over your documents: answers with verified citations.",
        description=(
            "Authenticate with `Authorization: Bearer KEY` (`rag keys create --tenant NAME`). Every key "
            "belongs to one tenant and sees only that tenant's documents. Errors are "
            '`{"error": {"type", "message"}}`.'
        ),
        lifespan=lifespan,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN: /docs is served below instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.rag = app_state
    install_error_handlers(app)

    from api import routes_documents, routes_feedback, routes_openai, routes_ops, routes_query

    for module in (routes_query, routes_openai, routes_feedback, routes_documents, routes_ops):
        app.include_router(module.router)
    # The MCP endpoint (streamable HTTP): every request authenticated as on /v1/query.
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, include_in_schema=False))

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    assets = docs_assets()

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                "<!doctype html><title>API docs</title><p>The docs page needs the "
                "<code>fastapi-offline</code> package (Swagger UI served from this origin). "
                'The schema is at <a href="/openapi.json">/openapi.json</a>.</p>',
                status_code=503,
            )
        return HTMLResponse(docs_html(app.title), headers={"Cache-Control": "no-cache"})

    if assets is not None:
        app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    def openapi() -> dict[str, Any]:
        # The schema states the configured limits, not just the static model's.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema["components"]["schemas"]
            documented: tuple[type[BaseModel], ...] = (ErrorBody, *DOC_MODELS)
            for model in documented:  # payloads of the event streams, referenced by their schemas
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(doc.pop("$defs", {}))
                components[model.__name__] = doc
            question = components["QueryRequest"]["properties"]["question"]
            question["maxLength"] = api.max_question_chars
            question["description"] = (
                f"At most {api.max_question_chars} characters (api.max_question_chars)"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    upload_limit = (
        int((api.max_upload_mb or settings.ingestion.max_file_mb) * 1_000_000) + UPLOAD_OVERHEAD
    )
    # Innermost first: the relabelled body is read inside the size limit.
    app.add_middleware(FormJsonMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=api.max_body_kb * 1000,
        upload_limit=upload_limit,
        upload_paths=("/v1/documents",),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)  # on errors and 413s too
    # Outermost: a request naming another host (DNS rebinding) reaches nothing.
    app.add_middleware(TrustedHostMiddleware, names=[bind_host, *api.allowed_hosts])
    return app


def _flagged_chunks(index: Any) -> int | None:
    """Chunks of the live collection flagged as prompt injection (None: no index yet)."""
    from rag.guards.injection import flagged_chunks

    collection = index.collection
    if not collection:
        return None
    try:
        return len(flagged_chunks(index.store, collection))
    except Exception:  # noqa: BLE001 - a scrape must not fail because the store is closing
        return None
