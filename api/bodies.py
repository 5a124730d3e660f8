"""JSON bodies sent as forms: ``curl -d '{"question": ...}'`` labels its body
``application/x-www-form-urlencoded``, and FastAPI reads a body as JSON only when it is labelled
JSON (its strict content type check refuses an unlabelled one too), so the request got a 422.

``FormJsonMiddleware`` relabels a form-typed or unlabelled body that parses as JSON as
``application/json`` before the app sees it. Any other body passes untouched: real form data,
multipart uploads, JSON already labelled as such.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, json_error

__all__ = ["FormJsonMiddleware"]

# The media types a JSON body may arrive under: curl -d's, and none at all.
_RELABELLED = frozenset({b"application/x-www-form-urlencoded", None})
_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _media_type(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return None


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both derive from it
        return False
    except RecursionError:
        # `[[[[…` nested past the parser's depth (a 64 kB body holds 60,000 levels): no JSON
        # the app could read, so it is left as sent and refused like any other non-JSON body.
        return False
    return True


class FormJsonMiddleware:
    """Relabels a JSON body sent with the form content type or none; install it inside the body
    limit (added before ``BodyLimitMiddleware``) so the body it reads is already bounded."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _METHODS
            or _media_type(scope["headers"]) not in _RELABELLED
        ):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        pending: list[Message] = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left: let the app see it
                    pending.append(message)
                    break
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except ApiError as exc:  # the body limit, raised while the body streamed in
            await json_error(exc.status_code, exc.type, exc.message, {"Connection": "close"})(
                scope, receive, send
            )
            return
        body = b"".join(parts)
        if not pending and _is_json(body):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        # After a disconnect the body stays unfinished, so the app sees the request as cut off.
        pending.insert(0, {"type": "http.request", "body": body, "more_body": bool(pending)})

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)
