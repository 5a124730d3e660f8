"""Documents of the caller's tenant: upload, list, status, delete, and the source file itself.

Uploads are written atomically into the tenant's folder (``<data_dir>/tenants/<tenant>/``),
which the daemon watches: it ingests them like any other file, so an upload answers 202
and the document shows ``pending`` until the daemon has recorded it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse

from api.deps import Caller, State
from api.documents import PATH_MAX_CHARS
from api.errors import ApiError, error_responses
from api.files import OpenFileResponse
from api.limits import too_large
from api.models import DeleteResult, DocumentInfo, DocumentList, UploadResult
from rag.core.access import check_groups

__all__ = ["document_info", "router"]

router = APIRouter(tags=["documents"])

# Served as plain text: a tenant's HTML must never run as a page on this origin.
_TEXT = "text/plain; charset=utf-8"
_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_MEDIA_BY_SUFFIX = {".pdf": "application/pdf", ".docx": _DOCX}
_SOURCE_TYPES = ("text/plain", "application/pdf", _DOCX, "application/octet-stream")
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def upload_groups(raw: str | None) -> list[str] | None:
    """The ``groups`` form field as a list (None: not given); 422 for a bad group name."""
    if raw is None:
        return None
    try:
        return list(check_groups(raw.split(","), "groups"))
    except ValueError as exc:
        raise ApiError(422, "invalid_groups", str(exc)) from None


def document_info(view: Any) -> dict[str, Any]:
    """A document as ``GET /v1/documents`` and the MCP ``list_documents`` tool show it."""
    return {
        "path": view.path,
        "status": view.status,
        "chunks": view.chunks,
        "reason": view.reason,
        "origin": view.origin,
        "flagged_chunks": view.flagged_chunks,
        "injection_reasons": list(view.injection_reasons),
    }


@router.get("/v1/documents", response_model=DocumentList, responses=error_responses(401, 429, 500))
async def list_documents(state: State, caller: Caller) -> Any:
    """Every document of the key's tenant: ok, pending (not ingested yet), failed or skipped with the reason."""
    docs = await anyio.to_thread.run_sync(state.documents.list, caller.reader(state.settings))
    return {
        "documents": [document_info(d) for d in docs],
        "total": len(docs),
        "tenant": caller.tenant,
    }


@router.post(
    "/v1/documents",
    response_model=UploadResult,
    status_code=202,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 500, 503),
)
async def upload_document(
    state: State,
    caller: Caller,
    file: Annotated[UploadFile, File(description="The document (one of ingestion.extensions)")],
    path: Annotated[
        str | None,
        Form(
            # Checked by Documents.upload_path, as the file name is when `path` is left out.
            json_schema_extra={"maxLength": PATH_MAX_CHARS},
            description="Where in your folder, e.g. `policies/leave.md` (default: the file name)",
        ),
    ] = None,
    groups: Annotated[
        str | None,
        Form(
            json_schema_extra={"maxLength": 2000},
            description="Who may read it: comma-separated groups the key reads with, e.g. "
            "`hr` or `hr,legal` (`all`: everyone in the tenant). Default: as access.rules and "
            "the folder's .access.yaml say (a replaced upload keeps its groups)",
        ),
    ] = None,
) -> Any:
    """Upload (or replace) a document; the daemon ingests it within a second or so (status `pending` until then).

    422 `invalid_path` for a path (or, without one, a file name) over 1024 characters, a name
    over 255 bytes, or more folders than `ingestion.max_depth`;
    409/413 `quota_exceeded` past the tenant's quota (`api.quota.max_files`, `api.quota.max_bytes`);
    403 `forbidden` for `groups` the key does not read with, or a path holding a document it may not read;
    503 `storage_unavailable` when the tenant folder or the manifest cannot be written."""
    reader = caller.reader(state.settings)
    chosen = upload_groups(groups)
    if path:
        target = state.documents.upload_target(reader, path, groups=chosen)
    else:
        target = state.documents.upload_target(
            reader, file.filename or "", "file name", groups=chosen
        )
    limit = int(
        (state.settings.api.max_upload_mb or state.settings.ingestion.max_file_mb) * 1_000_000
    )
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise too_large("upload", None, limit, "api.max_upload_mb")
    digest = await anyio.to_thread.run_sync(state.documents.write, target, data)
    return {"path": target.source, "status": "pending", "bytes": len(data), "sha256": digest}


@router.get(
    "/v1/documents/{path:path}",
    response_model=DocumentInfo,
    responses=error_responses(401, 404, 429, 500),
)
async def document_status(path: str, state: State, caller: Caller) -> Any:
    """Status of one document (404 for documents of other tenants)."""
    view = await anyio.to_thread.run_sync(state.documents.get, caller.reader(state.settings), path)
    return document_info(view)


@router.delete(
    "/v1/documents/{path:path}",
    response_model=DeleteResult,
    status_code=202,
    responses=error_responses(401, 404, 409, 422, 429, 500, 503),
)
async def delete_document(path: str, state: State, caller: Caller) -> Any:
    """Delete an uploaded document; the daemon removes its chunks. Watched-folder files answer 409."""
    await anyio.to_thread.run_sync(state.documents.delete, caller.reader(state.settings), path)
    return {"path": path, "status": "deleting"}


@router.get(
    "/v1/sources/{path:path}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The original file (HTML and Markdown as plain text)",
            "content": {t: _BINARY for t in _SOURCE_TYPES},
        },
        **error_responses(401, 404, 422, 429, 500),
    },
)
async def source_file(path: str, state: State, caller: Caller) -> Any:
    """The original file of a cited document (what the chat page opens)."""
    file, info = await anyio.to_thread.run_sync(
        state.documents.open_source, caller.reader(state.settings), path
    )
    suffix = PurePosixPath(path).suffix.lower()
    media = _MEDIA_BY_SUFFIX.get(suffix) or (
        _TEXT if suffix in (".md", ".txt", ".html", ".htm") else "application/octet-stream"
    )
    return OpenFileResponse(
        file,
        info,
        media_type=media,
        headers={"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"},
        filename=PurePosixPath(path).name,
    )
