"""A file response served from a file the route already opened (``GET /v1/sources``).

Starlette's ``FileResponse`` takes a path and opens it again when the response is sent: a
file deleted in between was a 500 ("File at path … does not exist", the path in the server
log). This one streams from the open handle, so what was checked is what is sent, and the
handle is closed however the response ends. No ``Range`` support: sources are read whole.
No ``Content-Length`` either (chunked): a file truncated in place while it is sent ends the
body early instead of breaking the declared length (a protocol error, a traceback).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import BinaryIO
from urllib.parse import quote

import anyio
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

__all__ = ["OpenFileResponse"]

CHUNK = 64 * 1024


def _disposition(filename: str) -> str:
    quoted = quote(filename)
    if quoted != filename:  # RFC 6266: a non-ASCII (or quote-bearing) name in filename*
        return f"inline; filename*=utf-8''{quoted}"
    return f'inline; filename="{filename}"'


class OpenFileResponse(StreamingResponse):
    """``file`` (open, binary, positioned at 0) sent whole; ``info`` is its ``fstat``."""

    def __init__(
        self,
        file: BinaryIO,
        info: os.stat_result,
        *,
        media_type: str,
        filename: str,
        headers: dict[str, str] | None = None,
    ):
        self.file = file

        async def chunks() -> AsyncIterator[bytes]:
            try:
                left = (
                    info.st_size
                )  # the size seen when opened: a file growing meanwhile is cut there
                while left > 0:
                    chunk = await anyio.to_thread.run_sync(file.read, min(CHUNK, left))
                    if not chunk:
                        break  # truncated meanwhile: the client sees a short body
                    left -= len(chunk)
                    yield chunk
            finally:
                file.close()

        super().__init__(
            chunks(),
            media_type=media_type,
            headers={
                **(headers or {}),
                "Last-Modified": formatdate(info.st_mtime, usegmt=True),
                "Content-Disposition": _disposition(filename),
            },
            # HEAD, or a client gone before the body: the generator never ran its finally.
            background=BackgroundTask(self.close),
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
