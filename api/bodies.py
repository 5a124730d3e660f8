"""JSON bodies sent as forms: ``curl -d '{"question": ...}'`` labels its body
``application/x-www-form-urlencoded``, and FastAPI reads a body as JSON only when it is labelled
JSON (its strict content type check refuses an unlabelled one too), so the request got a 422.

``FormJsonMiddleware`` relabels a form-typed or unlabelled body that parses as JSON as
``application/json`` before the app sees it. Any other body passes untouched: real form data,
multipart uploads, JSON already labelled as such.

It also refuses (422) a JSON body with a string holding an unpaired UTF-16 surrogate escape
(``"\\ud800"``): JSON allows the escape, Python decodes it, and no text can hold it — the
tokenizers, the store and UTF-8 refuse it, deep in a request (a 500, found by fuzzing).
"""

from __future__ import annotations

import json
import re
from typing import Any

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


def _is_json_type(media: bytes | None) -> bool:
    return media is not None and (media == b"application/json" or media.endswith(b"+json"))


_NOT_JSON = object()


def _parse(body: bytes) -> Any:
    """The body's JSON value, or ``_NOT_JSON``."""
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both derive from it
        return _NOT_JSON
    except RecursionError:
        # `[[[[…` nested past the parser's depth (a 64 kB body holds 60,000 levels): no JSON
        # the app could read, so it is left as sent and refused like any other non-JSON body.
        return _NOT_JSON


# A \uD800-\uDFFF escape: only then can a decoded string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]  # no recursion: the value may be nested nearly as deep as the parser goes
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


LONE_SURROGATE = (
    "body: a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is no "
    "character; send the text itself as UTF-8, or both halves of the pair"
)


class FormJsonMiddleware:
    """Relabels a JSON body sent with the form content type or none, and refuses one holding a
    lone surrogate; install it inside the body limit (added before ``BodyLimitMiddleware``) so
    the body it reads is already bounded."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media = _media_type(scope["headers"]) if scope["type"] == "http" else None
        if (
            scope["type"] != "http"
            or scope["method"] not in _METHODS
            or not (media in _RELABELLED or _is_json_type(media))
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
        relabel = media in _RELABELLED
        if not pending and (relabel or _SURROGATE_ESCAPE.search(body)):
            value = _parse(body)
            if value is not _NOT_JSON and _has_lone_surrogate(value):
                await json_error(422, "invalid_request", LONE_SURROGATE)(scope, receive, send)
                return
            if relabel and value is not _NOT_JSON:
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        # After a disconnect the body stays unfinished, so the app sees the request as cut off.
        pending.insert(0, {"type": "http.request", "body": body, "more_body": bool(pending)})

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)
