"""A small real HTTP server that speaks the OpenAI chat-completions protocol.

It stands in for vLLM (``vllm serve`` exposes exactly this API) in fast tests: streaming
Server-Sent Events with ``stream_options.include_usage``, plain JSON completions, and
scripted faults — status codes (429/503 with ``Retry-After``), a connection dropped
mid-stream, a stall longer than the client's read timeout. The real-vLLM integration test
runs the same client against ``scripts/vllm/serve.sh``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ChatServer", "Fault"]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (the fallback tests cut streams on purpose) are not errors here.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Fault:
    """What the next request gets instead of a normal answer."""

    status: int | None = None  # reply with this HTTP status and an error body
    retry_after: str | None = None
    drop_after_tokens: int | None = None  # stream this many tokens, then cut the connection
    stall_seconds: float = 0.0  # wait this long before the first byte


@dataclass
class ChatServer:
    """``reply``: the answer text, streamed one word at a time (words keep their spaces), cut
    at the request's ``max_tokens`` words (``finish_reason: length`` then, as vLLM says)."""

    reply: str = "The tower was built in 1889 [1]."
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    send_usage: bool = True
    token_delay: float = 0.0  # seconds between streamed words
    # Called with each word's index before it is streamed (a test can hold generation there).
    before_token: Callable[[int], None] | None = None
    sent_tokens: int = 0  # words streamed so far, over all requests
    # The reply to one request (its body), when a test answers requests differently (the
    # condense stage's rewrite and the answer); None: ``reply`` for every request.
    reply_for: Callable[[dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": "smollm2-135m-instruct", "object": "model"}],
                        },
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                fault = server.faults.popleft() if server.faults else Fault()
                if fault.stall_seconds:
                    time.sleep(fault.stall_seconds)
                if fault.status is not None:
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    self._json(
                        fault.status, {"error": {"message": f"scripted {fault.status}"}}, headers
                    )
                    return
                if not self.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                text = server.reply_for(body) if server.reply_for is not None else server.reply
                words = server.pieces(body, text)
                finish = "length" if len(words) < len(text.split(" ")) else "stop"
                prompt_tokens = sum(len(m["content"].split()) for m in body.get("messages", []))
                if not body.get("stream"):
                    self._json(
                        200,
                        {
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": "".join(words)},
                                    "finish_reason": finish,
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": len(words),
                                "total_tokens": prompt_tokens + len(words),
                            },
                        },
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, word in enumerate(words):
                    if fault.drop_after_tokens is not None and i >= fault.drop_after_tokens:
                        # Die like a killed server: no terminating chunk, connection closed.
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if server.token_delay:
                        time.sleep(server.token_delay)
                    if server.before_token is not None:
                        server.before_token(i)
                    self._event(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [
                                {"index": 0, "delta": {"content": word}, "finish_reason": None}
                            ],
                        }
                    )
                    server.sent_tokens += 1
                self._event(
                    {
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                    }
                )
                if server.send_usage and (body.get("stream_options") or {}).get("include_usage"):
                    self._event(
                        {
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": {
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": len(words),
                            },
                        }
                    )
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, payload: dict[str, Any]) -> None:
                self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def pieces(self, body: dict[str, Any], text: str | None = None) -> list[str]:
        words = (self.reply if text is None else text).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)][
            : int(body.get("max_tokens") or 10_000)
        ]

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
