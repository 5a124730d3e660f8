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
from collections.abc import Callable
from pathlib import Path

__all__ = ["Encode", "load_tokenizer", "special_token_strings", "tokenizer_file"]

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
        raise FileNotFoundError(f"tokenizer file {path} not found")
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
