"""Security headers, and the API docs served from this origin alone.

The chat page keeps the API key in ``localStorage``: any script that runs on this origin can
read it. So no page here loads a script from another origin or runs an inline one
(``script-src 'self'``), no other site may frame a page (``frame-ancestors 'none'``,
``X-Frame-Options: DENY``), no response is content-sniffed into something runnable
(``nosniff``), and no address (with a ``#key=`` or a document path) leaks as a referrer.

``/docs`` is Swagger UI from the ``fastapi-offline`` package's copy of ``swagger-ui-dist``
(FastAPI's own ``/docs`` page loads it from a CDN, and ReDoc too, so ``/redoc`` is not
offered); its start-up script is ``/static/docs.js`` instead of an inline one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import json_error

__all__ = [
    "API_POLICY",
    "CHAT_POLICY",
    "DOCS_ASSETS",
    "DOCS_POLICY",
    "REPORT_POLICY",
    "SecurityHeadersMiddleware",
    "TrustedHostMiddleware",
    "docs_assets",
    "docs_html",
    "host_allowed",
    "is_loopback",
]

DOCS_ASSETS = "/docs/assets"


def _policy(**directives: str) -> str:
    return "; ".join(f"{name.replace('_', '-')} {value}" for name, value in directives.items())


_COMMON = {"base_uri": "'none'", "form_action": "'self'", "frame_ancestors": "'none'"}

# The chat page. Inline styles: the eval report and source files it opens as blob: URLs
# inherit this policy (the report has a <style>); blob: objects let a PDF source render.
CHAT_POLICY = _policy(
    default_src="'none'",
    script_src="'self'",
    style_src="'self' 'unsafe-inline'",
    img_src="'self' data: blob:",
    connect_src="'self'",
    object_src="'self' blob:",
    **_COMMON,
)
# Swagger UI sets style attributes and draws its icons as data: URIs; it fetches /openapi.json
# and, with "Try it out", this API.
DOCS_POLICY = _policy(
    default_src="'none'",
    script_src="'self'",
    style_src="'self' 'unsafe-inline'",
    img_src="'self' data:",
    connect_src="'self'",
    font_src="'self'",
    **_COMMON,
)
# The eval report page: its own inline <style>, nothing else.
REPORT_POLICY = _policy(
    default_src="'none'", style_src="'unsafe-inline'", img_src="data:", **_COMMON
)
# JSON and everything else: nothing to run, nothing to frame.
API_POLICY = _policy(default_src="'none'", frame_ancestors="'none'")

_PAGE_POLICIES = {"/": CHAT_POLICY, "/docs": DOCS_POLICY}

_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Adds the headers to every HTTP response that does not set its own (a route may: the
    source files carry ``sandbox``, the eval report its page policy)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = _PAGE_POLICIES.get(scope["path"], API_POLICY)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = policy
            await send(message)

        await self.app(scope, receive, send_with_headers)


def docs_assets() -> Path | None:
    """The folder holding ``swagger-ui-bundle.js`` and ``swagger-ui.css`` (None: not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "static"
        if (folder / "swagger-ui-bundle.js").is_file():
            return folder
    return None


def docs_html(title: str) -> str:
    """The Swagger UI page: local assets, no inline script (``/static/docs.js`` starts it)."""
    from html import escape

    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)} - API docs</title>
  <link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{DOCS_ASSETS}/favicon.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""


# -- the Host a request names (DNS rebinding) ------------------------------------------------
LOCAL_NAMES = ("localhost",)
# A Host header: a name or IPv4 address, or an IPv6 address in brackets; an optional port.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::\d{1,5})?")


def _host_name(header: str | None) -> str | None:
    """The host a ``Host`` header names, lower-case, without port or final dot (None: malformed)."""
    match = _HOST.fullmatch(header or "")
    if match is None:
        return None
    if match["ipv6"] is not None:
        return match["ipv6"].lower() if _ip(match["ipv6"]) is not None else None
    return match["name"].lower().rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether a bind address (or name) only listens on this machine."""
    if host.strip().lower().rstrip(".") in LOCAL_NAMES:
        return True
    ip = _ip(host.strip())
    return ip is not None and ip.is_loopback


def host_allowed(host_header: str | None, names: Iterable[str]) -> bool:
    """Whether a request's ``Host`` header is one this server answers to.

    A DNS-rebinding page points a name of its own at this machine, so that the visitor's
    browser, thinking it talks to the attacker's site, sends it our responses: its requests
    carry the attacker's name in ``Host``. Allowed, then: IP addresses (a browser that asks
    for one has an IP origin, never another site's), ``localhost`` and ``names`` (exact,
    ``*.example.com`` for its subdomains, ``*`` for any)."""
    host = _host_name(host_header)
    if not host:
        return False
    if _ip(host) is not None or host in LOCAL_NAMES:
        return True
    for pattern in names:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class TrustedHostMiddleware:
    """400 ``invalid_host`` for HTTP and WebSocket requests whose ``Host`` is not allowed
    (:func:`host_allowed`): ``names`` are the bind host and ``api.allowed_hosts``."""

    def __init__(self, app: ASGIApp, names: Iterable[str]):
        self.app = app
        self.names = tuple(n for n in names if n)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host_allowed(host, self.names):
            await self.app(scope, receive, send)
            return
        shown = (host or "")[:100].encode("ascii", "replace").decode()
        await json_error(
            400,
            "invalid_host",
            f"this server does not answer to the name {shown!r} (Host header): if that is how "
            "it is reached, add the name to api.allowed_hosts",
        )(scope, receive, send)
