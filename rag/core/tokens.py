"""The one loader of Hugging Face ``tokenizer.json`` files: for counting, so nothing is cut off.

A shipped ``tokenizer.json`` stores the truncation and padding the model was run with
(all-MiniLM-L6-v2's truncates and pads to 128 tokens). Kept, every text would count as at
most (and at least) that many tokens: chunks would grow past what the embedder reads and
packing would under-count long passages. Every count of a ``tokenizer.json`` (chunking, the
API's chat history, a remote generator's ``tokenizer_path``) loads it here, with both off.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence, Sized
from pathlib import Path

from rag.core.errors import GenerationError, TokenizerError

__all__ = [
    "Encode",
    "TokenCounter",
    "approximate_counter",
    "hf_token_counter",
    "load_tokenizer",
    "special_token_strings",
    "tokenizer_file",
]

# text -> its token ids, no special tokens added
Encode = Callable[[str], list[int]]


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself, or the ``tokenizer.json`` inside it when it is a folder."""
    p = Path(path).expanduser()
    return p / "tokenizer.json" if p.is_dir() else p


def load_tokenizer(path: str | Path) -> Encode:
    """An encoder for a ``tokenizer.json`` (or a folder holding one), never truncating or padding.

    Raises ``FileNotFoundError`` when there is no such file. Loaded once per file."""
    return _load(str(tokenizer_file(path).resolve()))


@functools.lru_cache(maxsize=16)
def _load(path: str) -> Encode:
    from tokenizers import Tokenizer

    if not Path(path).is_file():
        raise TokenizerError(f"tokenizer file {path} not found")
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()

    def encode(text: str) -> list[int]:
        ids: list[int] = tok.encode(text, add_special_tokens=False).ids
        return ids

    return encode


def special_token_strings(path: str | Path) -> frozenset[str]:
    """The texts of a ``tokenizer.json``'s special added tokens (``<|im_start|>``, ``</s>``…):
    what its tokenizer turns into control tokens. Empty when the file cannot be read."""
    return _specials(str(tokenizer_file(path).resolve()))


@functools.lru_cache(maxsize=16)
def _specials(path: str) -> frozenset[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            added = json.load(fh).get("added_tokens") or []
    except (OSError, ValueError, AttributeError):
        return frozenset()
    return frozenset(
        str(t["content"])
        for t in added
        if isinstance(t, dict) and t.get("special") and isinstance(t.get("content"), str)
    )


class TokenCounter:
    """Counts tokens of text and of chat messages as the generator's chat template renders them.

    ``per_message`` and ``reply_prefix`` are the template's fixed costs (ChatML, which SmolLM2
    and most instruct models use: ``<|im_start|>role\\n ... <|im_end|>\\n`` and the opening
    ``<|im_start|>assistant\\n``); ``count_messages`` is exact when the template is ChatML and
    an upper bound otherwise, since the margin is generous. ``special_tokens``: the strings this
    tokenizer turns into control tokens, when known (broken in what it is sent: ``rag.core.textguard``).
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
    try:
        return TokenCounter(load_tokenizer(path), special_tokens=special_token_strings(path))
    except FileNotFoundError as exc:
        raise GenerationError(
            f"tokenizer file {tokenizer_file(path)} not found: point tokenizer_path at a "
            "tokenizer.json or its folder"
        ) from exc


def approximate_counter() -> TokenCounter:
    """The one estimate where no tokenizer is available: about 3 characters a token, which
    errs on the safe side (budgets and billed usage count high rather than low)."""
    return TokenCounter(lambda text: range((len(text) + 2) // 3))
