"""Talking to the process that holds the index (``rag watch`` / ``rag serve``).

An embedded store can be open in one process only, so that process writes
``<data_dir>/daemon.json`` (pid, loopback port and a random token; mode 0600) and answers a
tiny HTTP control API; ``rag status`` / ``rag export`` / ``rag reindex`` / ``rag query`` ask it
when it is running.

Every call must carry ``Authorization: Bearer <token>`` (only the data dir's owner can read
it), a ``Host`` of ``127.0.0.1:<port>`` or ``localhost:<port>`` (a web page that rebinds a DNS
name to 127.0.0.1 sends its own name), and POST bodies must be ``application/json`` (what a
browser form or a no-preflight ``text/plain`` fetch cannot send).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ControlServer", "DaemonClient", "find_daemon"]

_FILE = "daemon.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DaemonClient:
    def __init__(self, base_url: str, token: str, timeout: float = 600.0):
        self.base_url = base_url
        self._client = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/status")

    def reindex(self) -> dict[str, Any]:
        return self._json("POST", "/reindex")

    def sync(self) -> dict[str, Any]:
        return self._json("POST", "/sync")

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        """The running daemon answers with its own pipeline (it holds the store open)."""
        resp = self._client.post("/query", json=body)
        data: dict[str, Any] = resp.json()
        if resp.status_code >= 400:
            raise RuntimeError(
                data.get("error", {}).get("message") or f"daemon answered {resp.status_code}"
            )
        return data

    def export_lines(self) -> Iterator[str]:
        with self._client.stream("GET", "/export") as resp:
            resp.raise_for_status()
            yield from resp.iter_lines()

    def _json(self, method: str, path: str) -> dict[str, Any]:
        resp = self._client.request(method, path)
        data: dict[str, Any] = resp.json()
        if resp.status_code >= 400:
            raise RuntimeError(
                data.get("error", {}).get("message") or f"daemon answered {resp.status_code}"
            )
        return data

    def close(self) -> None:
        self._client.close()


def find_daemon(data_dir: Path) -> DaemonClient | None:
    path = data_dir / _FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(info.get("pid", -1))):
        return None
    client = DaemonClient(f"http://127.0.0.1:{int(info['port'])}", str(info.get("token", "")))
    try:
        client._client.get("/healthz", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        client.close()
        return None
    return client


Handler = Callable[[], Any]
QueryHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Loopback-only HTTP server: GET /healthz, /status, /export; POST /reindex, /sync, /query."""

    def __init__(
        self,
        data_dir: Path,
        status: Handler,
        export: Callable[[], Iterator[dict[str, Any]]],
        reindex: Handler,
        sync: Handler,
        query: QueryHandler | None = None,
    ):
        self.data_dir = data_dir
        self.token = secrets.token_urlsafe(32)
        token = self.token.encode()
        routes: dict[tuple[str, str], Handler] = {
            ("GET", "/healthz"): lambda: {"ok": True},
            ("GET", "/status"): status,
            ("POST", "/reindex"): reindex,
            ("POST", "/sync"): sync,
        }

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send_json(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _refused(self, method: str) -> tuple[int, str, str] | None:
                """Why this request is refused, before anything is read or run."""
                port = int(self.server.server_address[1])  # type: ignore[index]
                host = (self.headers.get("Host") or "").lower()
                if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                    return 421, "wrong_host", "the control API answers only 127.0.0.1 requests"
                scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
                if scheme != "Bearer" or not hmac.compare_digest(given.encode(), token):
                    return (
                        401,
                        "unauthorized",
                        "missing or wrong control token (it is in <data dir>/daemon.json)",
                    )
                if method == "POST" and int(self.headers.get("Content-Length") or 0) > 0:
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    if ctype.lower() != "application/json":
                        return 415, "unsupported_media_type", "send the body as application/json"
                return None

            def _dispatch(self, method: str) -> None:
                refused = self._refused(method)
                if refused is not None:
                    code, kind, message = refused
                    self._send_json(code, {"error": {"type": kind, "message": message}})
                    return
                if method == "GET" and self.path == "/export":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.end_headers()
                    for row in export():
                        self.wfile.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
                    return
                if method == "POST" and self.path == "/query" and query is not None:
                    try:
                        length = int(self.headers.get("Content-Length") or 0)
                        body = json.loads(self.rfile.read(length) or b"{}")
                        self._send_json(200, query(body))
                    except ValueError as exc:  # a bad question or filter: the caller's doing
                        self._send_json(
                            400, {"error": {"type": "invalid_request", "message": str(exc)}}
                        )
                    except Exception as exc:  # noqa: BLE001 - reported to the caller, the daemon keeps running
                        self._send_json(
                            500, {"error": {"type": type(exc).__name__, "message": str(exc)}}
                        )
                    return
                handler = routes.get((method, self.path))
                if handler is None:
                    self._send_json(404, {"error": {"type": "not_found", "message": self.path}})
                    return
                try:
                    self._send_json(200, handler())
                except Exception as exc:  # noqa: BLE001 - reported to the caller, the daemon keeps running
                    self._send_json(
                        500, {"error": {"type": type(exc).__name__, "message": str(exc)}}
                    )

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rag-control", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / (_FILE + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # 0600 from the start: the token must never be readable by anyone else, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "port": self.port, "token": self.token}, fh)
        os.replace(tmp, self.data_dir / _FILE)

    def stop(self) -> None:
        try:
            info = json.loads((self.data_dir / _FILE).read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                (self.data_dir / _FILE).unlink()
        except (OSError, ValueError):
            pass
        self._server.shutdown()
        self._server.server_close()
