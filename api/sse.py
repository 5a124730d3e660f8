"""Server-Sent Events responses that notice a client going away.

The response listens for ``http.disconnect`` while it streams (whatever ASGI spec version
the server speaks) and then cancels the pipeline stream, so generation stops at the next
token instead of running to the end for nobody.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.errors import ApiError, rag_error_status
from api.service import EventStream, first_error
from rag.core.errors import RagError

__all__ = ["SSEResponse", "sse_frame"]

log = logging.getLogger("api")

Renderer = Callable[[str, Any], Iterable[str]]


def sse_frame(data: Any, event: str | None = None) -> str:
    payload = (
        data
        if isinstance(data, str)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    )
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, stream: EventStream, render: Renderer, trailer: Iterable[str] = ()):
        # Like StreamingResponse: no body attribute, so no Content-Length header.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.stream = stream
        self.renderer = render
        self.trailer = list(trailer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False
        finished = False
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            # After the last byte the server reports the (finished) request as gone too.
                            disconnected = not finished
                            self.stream.close()
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_disconnect)
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                async for chunk in self._frames():
                    await send(
                        {
                            "type": "http.response.body",
                            "body": chunk.encode("utf-8"),
                            "more_body": True,
                        }
                    )
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except OSError:
            disconnected = True
        except BaseExceptionGroup as group:
            error = first_error(group)
            if not isinstance(error, OSError):
                raise error from None
            disconnected = True
        finally:
            self.stream.close()
        if disconnected:
            log.info("client disconnected: generation cancelled")

    async def _frames(self) -> Any:
        try:
            async for event in self.stream.events():
                for frame in self.renderer(event.kind, event.data()):
                    yield frame
        except ApiError as exc:
            for frame in self.renderer("error", {"type": exc.type, "message": exc.message}):
                yield frame
            return
        except RagError as exc:  # the library's own: its message says what to do
            for frame in self.renderer(
                "error", {"type": rag_error_status(exc)[1], "message": str(exc)}
            ):
                yield frame
            return
        except Exception:  # headers are sent: report in-band, never a trace
            log.exception("stream failed")
            for frame in self.renderer(
                "error",
                {
                    "type": "internal_error",
                    "message": "the answer stream failed; see the server log",
                },
            ):
                yield frame
            return
        for tail in self.trailer:
            yield tail
