"""Any OpenAI-compatible chat-completions server over HTTP; this is how vLLM is used.

Streaming is Server-Sent Events (``data: {...}`` lines, ``data: [DONE]`` last) with
``stream_options.include_usage`` so the server reports token usage; servers that do not
are counted locally. Before the first token, 429, 5xx and connection errors are retried
with exponential backoff (a ``Retry-After`` header wins), within the request's deadline.
After tokens have been sent a failure is not retried here (the text would repeat): it is
raised, and the fallback chain lets the next backend answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx

from rag.core.config import OpenAIGeneratorSettings
from rag.core.textguard import neutralise_messages
from rag.generate.base import (
    GenerationError,
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
    approximate_counter,
    hf_token_counter,
)

__all__ = ["OpenAIGenerator"]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_RETRY_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.PoolTimeout,
)


class OpenAIGenerator(Generator):
    name = "openai"

    def __init__(
        self,
        settings: OpenAIGeneratorSettings,
        timeout_seconds: float = 60.0,
        fallback_tokens: Callable[[], TokenCounter] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._fallback_tokens = fallback_tokens
        self._transport = transport
        self._client: httpx.Client | None = None
        self._tokens: TokenCounter | None = None
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.retries = 0  # retries made so far (for tests and metrics)

    @property
    def context_window(self) -> int:
        return self.settings.context_window

    @property
    def tokens(self) -> TokenCounter:
        if self._tokens is None:
            if self.settings.tokenizer_path:
                self._tokens = hf_token_counter(self.settings.tokenizer_path)
            elif self._fallback_tokens is not None:
                self._tokens = self._fallback_tokens()
            else:
                self._tokens = approximate_counter()
        return self._tokens

    @property
    def special_tokens(self) -> frozenset[str]:
        try:
            return self.tokens.special_tokens
        except GenerationError:  # no tokenizer to read: the known list still applies
            return frozenset()

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key or os.environ.get(self.settings.api_key_env or "", "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                transport=self._transport,
                headers=self._headers(),
                timeout=httpx.Timeout(
                    self.settings.read_timeout_seconds,
                    connect=self.settings.connect_timeout_seconds,
                ),
            )
        return self._client

    def warm_up(self) -> None:
        _ = self.tokens
        try:
            r = self._http().get(
                self.settings.base_url.rstrip("/") + "/models",
                timeout=self.settings.connect_timeout_seconds,
            )
            if r.status_code >= 400:
                log.warning(
                    "openai backend %s answered %s to /models",
                    self.settings.base_url,
                    r.status_code,
                )
        except httpx.HTTPError as exc:
            # Not fatal: the chain falls back while the server is down.
            log.warning("openai backend %s is not reachable yet: %s", self.settings.base_url, exc)

    def health(self) -> str:
        """The server answers ``GET /models`` within the connect timeout (``/readyz``)."""
        try:
            r = self._http().get(
                self.settings.base_url.rstrip("/") + "/models",
                timeout=self.settings.connect_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok" if r.status_code < 400 else f"answered {r.status_code} to /models"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "base_url": self.settings.base_url, "model": self.settings.model}

    # -- requests --------------------------------------------------------------------
    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            # The server's chat template and tokenizer would turn control-token strings in
            # the text into real tokens (a question could open a system turn): broken here too.
            "messages": neutralise_messages(request.messages, self.special_tokens),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _timeout(self, request: GenerationRequest) -> httpx.Timeout:
        read = self.settings.read_timeout_seconds
        left = request.seconds_left()
        if left is not None:
            read = max(0.05, min(read, left))
        return httpx.Timeout(read, connect=min(self.settings.connect_timeout_seconds, read))

    def _backoff(self, attempt: int, retry_after: str | None, request: GenerationRequest) -> float:
        delay: float = min(
            self.settings.max_backoff_seconds, self.settings.backoff_seconds * (2**attempt)
        )
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(self.settings.max_backoff_seconds, max(0.0, float(retry_after)))
        left = request.seconds_left()
        if left is not None and delay >= left:
            raise GenerationError(
                f"openai: gave up retrying, the time limit is reached ({self.url})",
                retryable=True,
                backend=self.name,
            )
        return delay

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        stream = bool(request.extra.get("stream", True))
        attempt = 0
        while True:
            request.check_deadline(self.name)
            sent_any = False
            try:
                if stream:
                    for item in self._stream_once(request):
                        if isinstance(item, str):
                            sent_any = True
                        yield item
                else:
                    yield from self._complete_once(request)
                return
            except _RetryableStatus as exc:
                retry_after, reason = exc.retry_after, str(exc)
            except httpx.TimeoutException as exc:
                # A read timeout means the server went quiet; only a connect timeout is worth a retry.
                if sent_any or not isinstance(exc, httpx.ConnectTimeout):
                    raise GenerationError(
                        f"openai: no data from {self.url} for {self.settings.read_timeout_seconds}s "
                        "(raise generation.openai.read_timeout_seconds for slow servers)",
                        retryable=True,
                        backend=self.name,
                    ) from exc
                retry_after, reason = None, f"connect timeout: {exc}"
            except _RETRY_ERRORS as exc:
                if sent_any:
                    raise GenerationError(
                        f"openai: the stream from {self.url} broke off: {exc}",
                        retryable=True,
                        backend=self.name,
                    ) from exc
                retry_after, reason = None, f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                raise GenerationError(
                    f"openai: request to {self.url} failed: {exc}", backend=self.name
                ) from exc
            if attempt >= self.settings.max_retries:
                raise GenerationError(
                    f"openai: {self.url} failed after {attempt + 1} attempt(s): {reason}; is the server up "
                    "(for vLLM: bash scripts/vllm/serve.sh)?",
                    retryable=True,
                    backend=self.name,
                )
            delay = self._backoff(attempt, retry_after, request)
            log.warning("openai: %s; retrying in %.2fs", reason, delay)
            time.sleep(delay)
            attempt += 1
            self.retries += 1

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        body = response.read().decode("utf-8", "replace")[:500]
        if response.status_code in _RETRY_STATUS:
            raise _RetryableStatus(
                f"HTTP {response.status_code}: {body}", response.headers.get("retry-after")
            )
        raise GenerationError(
            f"openai: {self.url} refused the request with HTTP {response.status_code}: {body} "
            "(check generation.openai.model, api_key and the server's context length)",
            backend=self.name,
        )

    def _stream_once(self, request: GenerationRequest) -> Iterator[str | Usage]:
        body = self._body(request, stream=True)
        usage: Usage | None = None
        pieces: list[str] = []
        finish: str | None = None
        done = False
        with self._http().stream(
            "POST", self.url, json=body, timeout=self._timeout(request)
        ) as response:
            self._check_status(response)
            for line in response.iter_lines():
                request.check_deadline(self.name)
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise GenerationError(
                        f"openai: unreadable stream event {data[:200]!r}", backend=self.name
                    ) from exc
                if "error" in event:
                    raise GenerationError(
                        f"openai: the server reported {event['error']}",
                        retryable=True,
                        backend=self.name,
                    )
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        pieces.append(piece)
                        yield piece
                    finish = choice.get("finish_reason") or finish
                if event.get("usage"):
                    usage = Usage(
                        int(event["usage"].get("prompt_tokens") or 0),
                        int(event["usage"].get("completion_tokens") or 0),
                    )
        if not done:
            # A clean close without the end marker is a cut-off answer all the same.
            raise httpx.ReadError(
                f"the stream ended before data: [DONE] after {len(pieces)} piece(s)"
            )
        usage = usage or self._count_usage(request, "".join(pieces))
        yield usage.model_copy(update={"finish_reason": _finish_reason(finish)})

    def _complete_once(self, request: GenerationRequest) -> Iterator[str | Usage]:
        response = self._http().post(
            self.url, json=self._body(request, stream=False), timeout=self._timeout(request)
        )
        self._check_status(response)
        try:
            data = response.json()
            text = str(data["choices"][0]["message"].get("content") or "")
            finish = data["choices"][0].get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GenerationError(
                f"openai: unexpected response {response.text[:200]!r}", backend=self.name
            ) from exc
        if text:
            yield text
        u = data.get("usage") or {}
        usage = (
            Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
            if u
            else self._count_usage(request, text)
        )
        yield usage.model_copy(update={"finish_reason": _finish_reason(finish)})

    def _count_usage(self, request: GenerationRequest, text: str) -> Usage:
        return Usage(self.tokens.count_messages(request.messages), self.tokens(text))


def _finish_reason(reported: Any) -> Literal["stop", "length"] | None:
    """The server's ``finish_reason``: ``length`` (cut at max_tokens) or, for any other it
    gives (``stop``, ``eos``, ``abort``, ...), ``stop``; None when it sent none."""
    if not reported:
        return None
    return "length" if reported == "length" else "stop"


class _RetryableStatus(Exception):
    def __init__(self, message: str, retry_after: str | None):
        super().__init__(message)
        self.retry_after = retry_after
