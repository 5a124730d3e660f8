"""The knowledge base as an MCP server (Model Context Protocol, on the official ``mcp`` SDK):
agents, IDE assistants and desktop clients call its tools.

Tools: ``search`` (passages), ``ask`` (the verified answer with citations, ``abstained`` when
the documents don't say; each released sentence is a progress notification), ``list_documents``,
``get_source`` (a document's indexed text, or a passage by id); a resource template
``rag://documents/{+path}`` reads a document too.

Two transports, one server definition (:func:`build_server`):

- streamable HTTP at ``/mcp`` on the API (:class:`McpEndpoint`): every HTTP request is
  authenticated by the API's own dependency (``api.deps.authenticate_request``: the bearer key,
  its rate limit) and a tool answers for that key's tenant only;
- stdio (``rag mcp``, :func:`serve_stdio`): the local user's process, answering for one tenant.

Either way a tool goes where the HTTP routes go: queries are built by ``query_of`` (as
``/v1/query`` builds them: question limits, the trace id) and answered by the ``QueryService``
(its concurrency gates and fair queue, the answer cache, budgets, the PII policy, Langfuse
tracing); documents come from ``Documents`` (tenant ownership as ``GET /v1/documents`` has it).

No ``from __future__ import annotations`` here: the SDK reads the tools' signatures (argument
schemas, limits taken from the settings at build time) from live annotations.
"""

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, cast

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import INVALID_REQUEST, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from api.auth import Principal
from api.deps import AppState, authenticate_request
from api.errors import ApiError, json_error, rag_error_status
from api.models import Filters, HistoryMessage, QueryRequest
from api.routes_documents import document_info
from api.routes_query import query_of
from rag.core.errors import RagError
from rag.core.types import ResetEvent, StreamEvent, TokenEvent
from rag.guards.injection import hit_detection, hit_spans
from rag.query.pack import passages_from_hits
from rag.store import Hit, StoredPoint

__all__ = ["CALLER", "MCP_PATH", "McpEndpoint", "build_server", "passage_id", "serve_stdio"]

log = logging.getLogger("api")

MCP_PATH = "/mcp"
# Where McpEndpoint leaves the authenticated caller in the request's ASGI scope.
CALLER = "rag.caller"
DOCUMENT_URI = "rag://documents/{+path}"
MAX_SOURCE_CHARS = 100_000  # one get_source call; longer documents are read in pages

INSTRUCTIONS = (
    "A knowledge base of the user's documents. Use `ask` for a question the documents should "
    "answer: every sentence of its answer was checked against the passage it cites; when "
    "`abstained` is true the documents do not answer it, so say that instead of guessing. Use "
    "`search` to find passages (each has an `id`), `get_source` to read a passage or a whole "
    "document, `list_documents` to see what there is."
)

# A tool's caller: the principal its documents and queries are scoped to.
CallerOf = Callable[[Context], Principal]


# -- what the tools return ------------------------------------------------------------
class PassageOut(BaseModel):
    id: str = Field(description="Pass to get_source(passage=...) to read it with its neighbours")
    source: str = Field(description="The document's path (as list_documents shows it)")
    title: str | None
    section: list[str] = Field(description="The heading path of the passage")
    page: int | None
    score: float = Field(description="Retrieval score (higher is more relevant)")
    text: str


class SearchResult(BaseModel):
    passages: list[PassageOut] = Field(description="Best first")
    note: str | None = Field(default=None, description="Why there are none, when there are none")


class CitationOut(BaseModel):
    n: int = Field(description="The number of the `[n]` markers in the answer")
    id: str = Field(description="The cited passage: pass to get_source(passage=...)")
    source: str
    title: str | None
    section: list[str]
    page: int | None
    quote: str = Field(description="The cited text")
    verified: bool = Field(description="Verification found the quote supports what cites it")


class AskResult(BaseModel):
    answer: str = Field(description="Verified text; [n] markers name `citations`")
    abstained: bool = Field(
        description="True: the documents don't answer the question (do not guess an answer)"
    )
    citations: list[CitationOut]
    withheld: int = Field(
        description="Sentences of the model's draft left out because no passage supports them"
    )
    degraded: bool = Field(description="A backend failed, so a fallback answered")
    cached: bool = Field(description="Served from the answer cache (its passages unchanged)")
    finish_reason: str | None = Field(description="`length`: the answer was cut at its limit")
    injection: dict[str, Any] | None = Field(
        description="Prompt injection found in the question or the passages; null: none"
    )
    trace_id: str | None = Field(description="The trace of this answer (null: tracing is off)")
    standalone_question: str | None = Field(
        default=None,
        description="With `history`: the question the follow-up was answered as (null: none)",
    )


class DocumentOut(BaseModel):
    path: str = Field(description="Pass to get_source(path=...)")
    uri: str = Field(description="The document as an MCP resource")
    status: str = Field(description="ok | pending (not ingested yet) | failed | skipped")
    chunks: int
    reason: str | None = Field(description="Why it failed, was skipped, or still waits")
    origin: str = Field(description="upload | watched (a folder the server keeps in sync)")
    flagged_chunks: int = Field(description="Chunks flagged as prompt injection at ingest")


class DocumentsResult(BaseModel):
    documents: list[DocumentOut]
    total: int


class SourceResult(BaseModel):
    path: str
    title: str | None
    text: str = Field(description="The indexed text, from `offset`")
    offset: int
    total_chars: int
    next_offset: int | None = Field(
        description="Call again with this offset for the rest; null: nothing more"
    )
    withheld_injection: list[str] = Field(
        default_factory=list,
        description="Why text was left out: passages flagged as prompt injection lose those parts",
    )


# -- passage ids ------------------------------------------------------------------------
def passage_id(source: str, start: int, end: int) -> str:
    """``<source>#<start>-<end>``: a passage by its document and character range (the range
    every citation carries), so an id from ``search`` or ``ask`` reads back with
    ``get_source`` for as long as the document is unchanged."""
    return f"{source}#{start}-{end}"


def parse_passage_id(value: str) -> tuple[str, int, int]:
    source, sep, span = value.rpartition("#")
    start, dash, end = span.partition("-")
    if not (sep and source and dash and start.isdigit() and end.isdigit()):
        raise ToolError(
            f"{value!r} is not a passage id: ids look like 'guide.md#120-480' "
            "(the `id` of a passage from search, or of a citation from ask)"
        )
    return source, int(start), int(end)


# -- errors -----------------------------------------------------------------------------
def tool_error(exc: Exception) -> ToolError:
    """The error a tool returns for what the API would answer 4xx/5xx: its message and type,
    what to do next included (never a traceback)."""
    if isinstance(exc, ApiError):
        retry = (exc.headers or {}).get("Retry-After")
        after = f"; retry in {retry} s" if retry else ""
        return ToolError(f"{exc.message} ({exc.type}{after})")
    if isinstance(exc, RagError):
        status, type_ = rag_error_status(exc)
        if status >= 500:
            log.warning("MCP tool failed: %s: %s", type(exc).__name__, exc)
        return ToolError(f"{exc} ({type_})")
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return ToolError(f"invalid arguments: {problems}")
    raise TypeError(f"not a request error: {exc!r}")


_REQUEST_ERRORS = (ApiError, RagError, ValidationError)


# -- the server -------------------------------------------------------------------------
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _tool(fn: Callable[..., Any], title: str) -> Tool:
    """A read-only tool described by ``fn``'s docstring (dedented: the model reads it)."""
    description = inspect.cleandoc(fn.__doc__ or "")
    return _strict(
        Tool.from_function(fn, title=title, description=description, annotations=_READ_ONLY)
    )


def _strict(tool: Tool) -> Tool:
    """Unknown argument names are an error the model reads (``additionalProperties: false``),
    not silently dropped: ``{"querry": ...}`` says what is wrong."""
    model = tool.fn_metadata.arg_model
    # The model reads the error: the field and the rule, not its own argument echoed back.
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True)
    strict = cast(type[ArgModelBase], type(model.__name__, (model,), {"model_config": config}))
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema(by_alias=True)
    return tool


def build_server(state: AppState, caller_of: CallerOf) -> MCPServer:
    """The MCP server over ``state``: its tools answer for ``caller_of(ctx)``'s tenant."""
    settings = state.settings
    max_question = settings.api.max_question_chars
    top_k_max = settings.retrieval.top_k
    documents = state.documents
    injection_on = settings.injection.enabled

    async def run_query(caller: Principal, on_event: Any = None, **request: Any) -> Any:
        """The query a ``/v1/query`` body of ``request`` asks, answered as there."""
        try:
            query = query_of(QueryRequest(**request), state, caller)
            return await state.service.answer(query, caller, on_event=on_event)
        except _REQUEST_ERRORS as exc:
            raise tool_error(exc) from None

    def indexed_passages(caller: Principal, source: str) -> tuple[list[Any], list[str]]:
        """The document's indexed text as passages in document order (overlaps merged as
        retrieval merges them); spans flagged as injection taken out, and why. Only a
        document the caller may read (``Documents.indexed_chunks``: 404 otherwise)."""
        chunks = documents.indexed_chunks(caller.reader(settings), source)
        reasons: list[str] = []
        hits = [Hit(p.id, 0.0, _without_attacks(p, reasons, injection_on)) for p in chunks]
        passages = sorted(passages_from_hits(hits), key=lambda p: p.start)
        return passages, list(dict.fromkeys(reasons))

    async def search(
        ctx: Context,
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=max_question,
                description="What to look for, in words the documents would use",
            ),
        ],
        filters: Annotated[
            Filters | None,
            Field(description="Exact-match filters on passage metadata, e.g. {'source': 'x.md'}"),
        ] = None,
        top_k: Annotated[
            int | None,
            Field(ge=1, le=top_k_max, description=f"At most this many passages (1-{top_k_max})"),
        ] = None,
    ) -> SearchResult:
        """Search the knowledge base: the passages most relevant to `query` (hybrid dense +
        keyword retrieval, reranked), best first, each with its source, section, page, score
        and an `id` for get_source. No answer is written: use `ask` for that."""
        caller = caller_of(ctx)
        result = await run_query(caller, question=query, filters=filters, generate=False)
        cites = result["citations"][:top_k] if top_k else result["citations"]
        passages = [
            PassageOut(
                id=passage_id(c["source"], c["start"], c["end"]),
                source=c["source"],
                title=c.get("title"),
                section=c.get("section") or [],
                page=c.get("page"),
                score=c["score"],
                text=c["quote"],
            )
            for c in cites
        ]
        note = None
        if not passages:
            note = "nothing matched" + (": try fewer filters" if filters else ": try other words")
        return SearchResult(passages=passages, note=note)

    async def ask(
        ctx: Context,
        question: Annotated[
            str,
            Field(
                min_length=1,
                max_length=max_question,
                description="A question the documents should answer (a follow-up: with `history`)",
            ),
        ],
        filters: Annotated[
            Filters | None,
            Field(description="Answer only from passages matching these, e.g. {'source': 'x.md'}"),
        ] = None,
        history: Annotated[
            list[HistoryMessage] | None,
            Field(
                max_length=200,
                description="The conversation before `question`, oldest first ({role: user | "
                'assistant, content}): a follow-up ("And the business tier?") is answered as '
                "the standalone question it stands for, reported as `standalone_question`",
            ),
        ] = None,
    ) -> AskResult:
        """Ask the knowledge base a question: an answer written from the documents in which
        every sentence was verified against the passage it cites ([n] markers, `citations`).
        `abstained: true` means the documents don't answer it. With a progress token, each
        verified sentence is sent as a progress notification as soon as it is released. A
        follow-up ("And the business tier?") with the conversation so far in `history` is
        answered as the standalone question it stands for (`standalone_question`)."""
        caller = caller_of(ctx)
        released = 0

        async def progress(event: StreamEvent) -> None:
            nonlocal released
            if isinstance(event, TokenEvent):
                released += 1
                await ctx.report_progress(released, None, event.text)
            elif isinstance(event, ResetEvent):
                released += 1
                await ctx.report_progress(
                    released, None, "[the answer starts over: drop the text so far]"
                )

        await ctx.report_progress(0, None, "searching the documents")
        result = await run_query(
            caller, progress, question=question, filters=filters, history=history
        )
        return AskResult(
            answer=result["answer"],
            standalone_question=result.get("standalone_question"),
            abstained=result["abstained"],
            citations=[
                CitationOut(
                    n=c["n"],
                    id=passage_id(c["source"], c["start"], c["end"]),
                    source=c["source"],
                    title=c.get("title"),
                    section=c.get("section") or [],
                    page=c.get("page"),
                    quote=c["quote"],
                    verified=c["verified"],
                )
                for c in result["citations"]
            ],
            withheld=result.get("withheld") or 0,
            degraded=result["degraded"],
            cached=result.get("cached", False),
            finish_reason=result.get("finish_reason"),
            injection=result.get("injection"),
            trace_id=result.get("trace_id"),
        )

    async def list_documents(ctx: Context) -> DocumentsResult:
        """The documents of the knowledge base: path, status (`ok`, `pending` not ingested yet,
        `failed` or `skipped` with the reason), chunks, and a resource URI for each."""
        caller = caller_of(ctx)
        try:
            views = await anyio.to_thread.run_sync(documents.list, caller.reader(state.settings))
        except _REQUEST_ERRORS as exc:
            raise tool_error(exc) from None
        out = [
            DocumentOut(
                uri=DOCUMENT_URI.replace("{+path}", info["path"]),
                **{k: info[k] for k in DocumentOut.model_fields if k in info},
            )
            for info in map(document_info, views)
        ]
        return DocumentsResult(documents=out, total=len(out))

    async def get_source(
        ctx: Context,
        path: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=1024,
                description="A document's path from list_documents (or a passage's `source`)",
            ),
        ] = None,
        passage: Annotated[
            str | None,
            Field(
                min_length=3,
                max_length=1100,
                description="A passage `id` from search or a citation of ask, e.g. 'guide.md#120-480'",
            ),
        ] = None,
        offset: Annotated[
            int, Field(ge=0, description="Character to start at (a previous `next_offset`)")
        ] = 0,
        max_chars: Annotated[
            int, Field(ge=1, le=MAX_SOURCE_CHARS, description="At most this many characters")
        ] = 20_000,
    ) -> SourceResult:
        """Read the knowledge base's text: a whole document (`path`), or one passage with the
        text around it (`passage`, an id from search or ask). Give exactly one of the two. Long
        texts come in pages: call again with `offset` set to `next_offset`."""
        if (path is None) == (passage is None):
            raise ToolError(
                "give exactly one of `path` (a document from list_documents) or `passage` "
                "(an id from search or ask)"
            )
        caller = caller_of(ctx)
        span: tuple[int, int] | None = None
        if passage is not None:
            path, start, end = parse_passage_id(passage)
            span = (start, end)
        assert path is not None
        try:
            parts, reasons = await anyio.to_thread.run_sync(indexed_passages, caller, path)
        except ApiError as exc:
            if exc.status_code == 404:  # its message names GET /v1/documents: here, a tool
                raise ToolError(
                    f"no document {path!r} for you (not_found): list_documents lists them"
                ) from None
            raise tool_error(exc) from None
        except _REQUEST_ERRORS as exc:
            raise tool_error(exc) from None
        if span is not None:
            parts = [p for p in parts if p.start < span[1] and p.end > span[0]]
            if not parts:
                raise ToolError(
                    f"no passage {passage!r}: the document changed since, or the range is "
                    "outside it; search again for a fresh id"
                )
        text = "\n\n".join(p.text for p in parts)
        page = text[offset : offset + max_chars]
        after = offset + len(page)
        return SourceResult(
            path=path,
            title=parts[0].title if parts else None,
            text=page,
            offset=offset,
            total_chars=len(text),
            next_offset=after if after < len(text) else None,
            withheld_injection=reasons,
        )

    async def document_resource(path: str, ctx: Context) -> str:
        """A document of the knowledge base as text (what its passages hold)."""
        caller = caller_of(ctx)
        try:
            parts, _ = await anyio.to_thread.run_sync(indexed_passages, caller, path)
        except ApiError as exc:
            if exc.status_code == 404:
                raise ResourceNotFoundError(
                    f"no document {path!r} for you: the list_documents tool lists them"
                ) from None
            raise ResourceError(exc.message) from None
        return "\n\n".join(p.text for p in parts)

    tools = [
        _tool(search, "Search the knowledge base"),
        _tool(ask, "Ask the knowledge base (verified answer)"),
        _tool(list_documents, "List the documents"),
        _tool(get_source, "Read a document or passage"),
    ]
    with _logging_left_alone():
        server: MCPServer = MCPServer(
            "rag-kb",
            title="Knowledge base",
            instructions=INSTRUCTIONS,
            version="0.1.0",
            tools=tools,
        )
    server.resource(
        DOCUMENT_URI,
        name="document",
        title="A document of the knowledge base",
        description="Its indexed text; list_documents gives each document's URI",
        mime_type="text/plain",
    )(document_resource)
    return server


@contextmanager
def _logging_left_alone() -> Iterator[None]:
    """``MCPServer()`` calls ``logging.basicConfig`` (a handler and level on the root logger),
    a no-op only when the root logger has a handler: one stands there meanwhile, so the
    process's logging stays as its owner (the CLI, a test, an embedding app) set it up."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def _without_attacks(point: StoredPoint, reasons: list[str], enabled: bool) -> dict[str, Any]:
    """A chunk's payload with the spans the injection detector flagged marked for cutting (as
    retrieval cuts them: ``injection_cut``), so get_source never hands an attack to an agent."""
    payload = dict(point.payload)
    if not enabled:
        return payload
    found = hit_detection(payload)
    if found.flagged:
        payload["injection_cut"] = [list(span) for span in hit_spans(payload)]
        reasons.extend(found.reasons or ["flagged"])
    return payload


# -- transports -------------------------------------------------------------------------
def caller_from_request(ctx: Context) -> Principal:
    """The key that sent this MCP message (set by :class:`McpEndpoint` from the API's own
    authentication of the HTTP request carrying it)."""
    request = ctx.request_context.request
    caller = getattr(request, "scope", {}).get(CALLER)
    if not isinstance(caller, Principal):  # McpEndpoint authenticates every request first
        raise ToolError("unauthenticated: send `Authorization: Bearer KEY`")
    return caller


class McpEndpoint:
    """``/mcp``: streamable HTTP, stateless (each POST stands alone: no session to hold or
    steal; other methods 405, a GET stream included). Each request is authenticated first as on ``/v1/query`` (401 without a valid key,
    429 past its rate limit: every MCP message counts as a request); only then does the SDK
    see it, with the caller in its scope for the tools."""

    def __init__(self, state: AppState):
        self.server = build_server(state, caller_from_request)
        self.server.streamable_http_app(
            stateless_http=True,
            max_request_body_size=state.settings.api.max_body_kb * 1000,
            # The app's TrustedHostMiddleware checks Host (DNS rebinding); a cross-origin page
            # cannot send the bearer key without a CORS preflight, which this API refuses.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.manager = self.server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's request handling, for the app's lifetime (its lifespan enters this)."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            # Stateless: no session, so nothing would ever arrive on a GET stream; the SDK would
            # hold one open for good (a connection per request, for anyone with a key).
            refusal = JSONResponse(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": INVALID_REQUEST,
                        "message": f"{scope['method']} is not allowed: this MCP endpoint is "
                        "stateless streamable HTTP, every message is a POST",
                    },
                },
                status_code=405,
                headers={"Allow": "POST"},
            )
            await refusal(scope, receive, send)
            return
        try:
            caller = await authenticate_request(Request(scope, receive))
        except ApiError as exc:
            headers = dict(exc.headers) if exc.headers else None
            await json_error(exc.status_code, exc.type, exc.message, headers)(scope, receive, send)
            return
        scope[CALLER] = caller
        await self.manager.handle_request(scope, receive, send)


async def serve_stdio(state: AppState, caller: Principal) -> None:
    """``rag mcp``: the server over this process's stdin/stdout until the client closes it,
    answering for ``caller``'s tenant (the local user's process: no key, no rate limit)."""
    server = build_server(state, lambda ctx: caller)
    await server.run_stdio_async()
