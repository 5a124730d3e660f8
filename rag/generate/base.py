"""The one interface every generator implements: a request in, a stream of text pieces out.

``stream(request)`` yields ``str`` pieces as they are produced and, last, one :class:`Usage`.
It raises :class:`GenerationError` when it cannot answer (the chain then asks the next
backend). Closing the iterator early (the client went away) must stop the model promptly.
"""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rag.errors import GenerationError
from rag.types import Usage

if TYPE_CHECKING:
    from rag.pack import PackedContext

__all__ = [
    "GenerationError",
    "GenerationRequest",
    "Generator",
    "TokenCounter",
    "Usage",
    "approximate_counter",
    "close_quietly",
    "hf_token_counter",
]


def close_quietly(iterator: object) -> None:
    """Close a generator (stops the model behind it); plain iterators have nothing to close."""
    close = getattr(iterator, "close", None)
    if callable(close):
        close()


@dataclass
class GenerationRequest:
    messages: list[dict[str, str]]
    question: str
    context: PackedContext
    max_tokens: int
    temperature: float = 0.0
    stop: Sequence[str] = ()
    # time.monotonic() by which the whole answer must be done; None = no limit.
    deadline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check_deadline(self, backend: str) -> None:
        left = self.seconds_left()
        if left is not None and left <= 0:
            raise GenerationError(
                f"{backend}: no answer within the time limit", retryable=True, backend=backend
            )


class TokenCounter:
    """Counts tokens of text and of chat messages as the generator's chat template renders them.

    ``per_message`` and ``reply_prefix`` are the template's fixed costs (ChatML, which SmolLM2
    and most instruct models use: ``<|im_start|>role\\n ... <|im_end|>\\n`` and the opening
    ``<|im_start|>assistant\\n``); ``count_messages`` is exact when the template is ChatML and
    an upper bound otherwise, since the margin is generous. ``special_tokens``: the strings this
    tokenizer turns into control tokens, when known (broken in what it is sent: ``rag.textguard``).
    """

    def __init__(
        self,
        encode: Callable[[str], Sized],
        per_message: int = 5,
        reply_prefix: int = 3,
        cache_size: int = 8192,
        special_tokens: frozenset[str] = frozenset(),
    ):
        self._encode = encode
        self.special_tokens = special_tokens
        self.per_message = per_message
        self.reply_prefix = reply_prefix
        # The same passages are counted again and again across queries (packing re-renders the
        # top chunks): counts are cached by text. lru_cache is thread-safe.
        self._count = functools.lru_cache(maxsize=cache_size)(self._uncached)

    def _uncached(self, text: str) -> int:
        return len(self._encode(text))

    def __call__(self, text: str) -> int:
        return self._count(text) if text else 0

    def count_messages(self, messages: Sequence[dict[str, str]]) -> int:
        return (
            sum(self(m["role"]) + self(m["content"]) + self.per_message for m in messages)
            + self.reply_prefix
        )


def hf_token_counter(path: str | Path) -> TokenCounter:
    """A counter from a Hugging Face ``tokenizer.json`` (or a folder holding one)."""
    from rag.tokens import load_tokenizer, special_token_strings, tokenizer_file

    try:
        return TokenCounter(load_tokenizer(path), special_tokens=special_token_strings(path))
    except FileNotFoundError as exc:
        raise GenerationError(
            f"tokenizer file {tokenizer_file(path)} not found: point tokenizer_path at a "
            "tokenizer.json or its folder"
        ) from exc


class Generator(abc.ABC):
    """A backend. Construction is cheap; ``warm_up`` loads models or checks the server."""

    name: ClassVar[str] = "base"
    uses_llm: ClassVar[bool] = True  # False: needs no token budget of its own (extractive)

    @property
    @abc.abstractmethod
    def context_window(self) -> int: ...

    @property
    @abc.abstractmethod
    def tokens(self) -> TokenCounter:
        """Counts with this generator's own tokenizer."""

    @property
    def special_tokens(self) -> frozenset[str]:
        """This backend's own special-token strings (its tokenizer's control tokens), broken in
        every text it is sent besides ``rag.textguard``'s known ones; empty when unknown."""
        return self.tokens.special_tokens

    def warm_up(self) -> None:
        return None

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]: ...

    def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def approximate_counter() -> TokenCounter:
    """The one estimate where no tokenizer is available: about 3 characters a token, which
    errs on the safe side (budgets and billed usage count high rather than low)."""
    return TokenCounter(lambda text: range((len(text) + 2) // 3))
