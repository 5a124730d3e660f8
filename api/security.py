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

from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_POLICY",
    "CHAT_POLICY",
    "DOCS_ASSETS",
    "DOCS_POLICY",
    "REPORT_POLICY",
    "SecurityHeadersMiddleware",
    "docs_assets",
    "docs_html",
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
