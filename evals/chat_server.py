"""A small real HTTP server on loopback that speaks the OpenAI chat-completions protocol and
answers from a script.

It stands in for vLLM (``vllm serve`` exposes exactly this API) in tests and in the
verification eval (``rag eval verify``): streaming Server-Sent Events with
``stream_options.include_usage``, plain JSON completions, ``GET /models``, and scripted faults
— status codes (429/503 with ``Retry-After``), a connection dropped mid-stream, a stall longer
than the client's read timeout. The real-vLLM integration test runs the same client against
``scripts/vllm/serve.sh``.

What it answers is decided per request by a *responder* — a function from the
:class:`ChatRequest` it was sent (messages, the question, the numbered passages parsed out of
the prompt) to the reply text. Built in (:data:`MODES`, each a factory of responders):

- ``fixed(template)``: always the same template (the default: ``reply``);
- ``by_question({substring: template, ...}, default)``: the template of the first substring
  the question contains.

Templates may hold placeholders, resolved against the passages of that request, so a script
can cite "the passage that says 35 days" whatever number retrieval gave it:

- ``{cite:PHRASE}`` → ``[n]``, the first passage containing PHRASE (case and spacing ignored);
  ``{cite:A|B}`` → ``[n][m]``, one marker per phrase;
- ``{cite_other:PHRASE}`` → ``[n]``, the first passage *not* containing PHRASE (a wrong citation);
- ``{n:PHRASE}`` / ``{n_other:PHRASE}`` → the bare number;
- ``{top}`` → ``[1]``.

A phrase no passage holds resolves to ``[0]`` (no passage has that number) and is recorded in
``ChatRequest.unresolved`` and ``ChatServer.unresolved``: the caller can tell a retrieval miss
from a verdict. A new mode is a function ``(ChatRequest) -> str`` assigned to
``server.respond`` (or registered in :data:`MODES` for callers that name modes); it may read
anything of the request (e.g. instructions planted in a passage, to obey them).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MODES",
    "ChatRequest",
    "ChatServer",
    "Fault",
    "Responder",
    "by_question",
    "fixed",
    "parse_passages",
    "resolve",
]

_HEADER = re.compile(r"^\[(\d+)\] ", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(cite|cite_other|n|n_other):([^{}]+)\}|\{top\}")
_QUESTION = re.compile(r"^Question:\s*(.+)$", re.MULTILINE)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def parse_passages(prompt: str) -> dict[int, str]:
    """The numbered passages of a rendered prompt (``[n] Title — Section`` then the text,
    passages separated by blank lines), number → header and text, as the model reads them."""
    found = list(_HEADER.finditer(prompt))
    out: dict[int, str] = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(prompt)
        body = prompt[m.start() : end]
        # the prompt's own text after the last passage ("</passages>", "Question: ...")
        cut = re.search(r"\n\s*(?:</passages>|Question:)", body)
        out[int(m.group(1))] = (body[: cut.start()] if cut else body).strip()
    return out


@dataclass
class ChatRequest:
    """One chat-completions request as a responder sees it."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    passages: dict[int, str]  # number -> header and text, as rendered in the prompt
    question: str
    unresolved: list[str] = field(default_factory=list)  # phrases no passage held

    @classmethod
    def of(cls, body: dict[str, Any]) -> ChatRequest:
        messages = list(body.get("messages") or [])
        user = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        asked = _QUESTION.findall(user)
        return cls(body, messages, parse_passages(user), asked[-1].strip() if asked else user)

    def passage_with(self, phrase: str) -> int | None:
        want = _norm(phrase)
        return next((n for n, text in sorted(self.passages.items()) if want in _norm(text)), None)

    def passage_without(self, phrase: str) -> int | None:
        want = _norm(phrase)
        return next(
            (n for n, text in sorted(self.passages.items()) if want not in _norm(text)), None
        )


def resolve(template: str, request: ChatRequest) -> str:
    """``template`` with its placeholders replaced for ``request`` (see the module docstring)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{top}":
            return "[1]"
        kind, phrases = m.group(1), m.group(2).split("|")
        numbers = []
        for phrase in phrases:
            n = (
                request.passage_with(phrase)
                if kind in ("cite", "n")
                else request.passage_without(phrase)
            )
            if n is None:
                request.unresolved.append(phrase)
                n = 0
            numbers.append(n)
        if kind.startswith("n"):
            return ", ".join(str(n) for n in numbers)
        return "".join(f"[{n}]" for n in numbers)

    return _PLACEHOLDER.sub(one, template)


Responder = Callable[[ChatRequest], str]


def fixed(template: str) -> Responder:
    """The same template for every request."""
    return lambda request: resolve(template, request)


def by_question(templates: Mapping[str, str], default: str = "") -> Responder:
    """The template of the first key the question contains (case ignored), else ``default``."""
    keyed = [(_norm(k), v) for k, v in templates.items()]

    def respond(request: ChatRequest) -> str:
        asked = _norm(request.question)
        for key, template in keyed:
            if key in asked:
                return resolve(template, request)
        return resolve(default, request)

    return respond


# Responder factories by name, for callers that pick a mode by name (evals, tests). Add one
# with ``MODES["mine"] = factory``.
MODES: dict[str, Callable[..., Responder]] = {"fixed": fixed, "by_question": by_question}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (the fallback tests cut streams on purpose) are not errors here.
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
    """``reply``: the answer template (placeholders resolved per request), streamed one word
    at a time (words keep their spaces), cut at the request's ``max_tokens`` words
    (``finish_reason: length`` then, as vLLM says). ``respond``, when set, decides instead."""

    reply: str = "The tower was built in 1889 [1]."
    respond: Responder | None = None
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    send_usage: bool = True
    token_delay: float = 0.0  # seconds between streamed words
    # Called with each word's index before it is streamed (a test can hold generation there).
    before_token: Callable[[int], None] | None = None
    sent_tokens: int = 0  # words streamed so far, over all requests
    hung_up: int = 0  # streams the client closed before their end (a write failed)
    # The reply to one request body, when a test answers requests differently (the condense
    # stage's rewrite and the answer); None: ``respond`` or ``reply``. Not resolved further.
    reply_for: Callable[[dict[str, Any]], str] | None = None
    model: str = "smollm2-135m-instruct"
    unresolved: list[str] = field(default_factory=list)  # phrases no passage held, all requests
    last: ChatRequest | None = None  # the last request answered, as the responder saw it
    last_text: str | None = None  # the last reply, placeholders resolved

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
                        {"object": "list", "data": [{"id": server.model, "object": "model"}]},
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
                server.last_text = None
                words = server.pieces(body)
                # (a subclass answering in pieces of its own sets ``reply`` instead)
                text = server.last_text if server.last_text is not None else server.reply
                finish = "length" if len(words) < len(text.split(" ")) else "stop"
                prompt_tokens = sum(
                    len(str(m.get("content") or "").split()) for m in body.get("messages", [])
                )
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
                try:
                    self._stream(body, fault, words, finish, prompt_tokens)
                except (BrokenPipeError, ConnectionResetError):
                    server.hung_up += 1  # the client closed the request: nobody reads on
                    self.close_connection = True

            def _stream(
                self,
                body: dict[str, Any],
                fault: Fault,
                words: list[str],
                finish: str,
                prompt_tokens: int,
            ) -> None:
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

    def answer(self, body: dict[str, Any]) -> str:
        """The reply text for one request body (placeholders resolved)."""
        if self.reply_for is not None:
            return self.reply_for(body)
        request = ChatRequest.of(body)
        respond = self.respond or fixed(self.reply)
        text = respond(request)
        self.unresolved.extend(request.unresolved)
        self.last = request
        self.last_text = text
        return text

    def pieces(self, body: dict[str, Any]) -> list[str]:
        """What is streamed for one request: the answer a word at a time (words keep their
        spaces), cut at the request's ``max_tokens`` words."""
        words = self.answer(body).split(" ")
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

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
