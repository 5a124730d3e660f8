"""Every token counter sees a whole text, past the truncation stored in the tokenizer file.

The shipped MiniLM ``tokenizer.json`` truncates (and pads) to 128 tokens: a counter that kept
that setting would count any long passage as 128 tokens, and packing would overfill prompts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from api.app import _token_counter
from rag.core.config import LocalGeneratorSettings, OpenAIGeneratorSettings
from rag.core.documents import ParsedDocument, Section
from rag.core.tokens import load_tokenizer, tokenizer_file
from rag.generate import GenerationError
from rag.generate.base import hf_token_counter
from rag.generate.local import local_token_counter
from rag.generate.openai import OpenAIGenerator
from rag.indexing.chunking import Chunker
from rag.indexing.embedding import default_model_path

MODEL_DIR = default_model_path()


def _stored_limit() -> int:
    """The truncation ``max_length`` written in the shipped tokenizer file."""
    spec = json.loads((MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["truncation"] and spec["padding"], "the file no longer truncates: test is moot"
    return int(spec["truncation"]["max_length"])


LIMIT = _stored_limit()
SENTENCE = "Production backups are kept for thirty-five days and copied to a second region. "
LONG = SENTENCE * (3 * LIMIT // 10)


def _full_count(text: str) -> int:
    """The reference: the file loaded by hand, truncation and padding off."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_the_long_text_is_past_the_stored_limit() -> None:
    assert _full_count(LONG) > 2 * LIMIT


def _hf_counters() -> dict[str, Callable[[str], int]]:
    encode = load_tokenizer(MODEL_DIR)
    remote = OpenAIGenerator(
        OpenAIGeneratorSettings(
            base_url="http://127.0.0.1:9/v1", model="m", tokenizer_path=str(MODEL_DIR)
        )
    )
    return {
        "load_tokenizer": lambda t: len(encode(t)),
        "load_tokenizer(file)": lambda t: len(load_tokenizer(MODEL_DIR / "tokenizer.json")(t)),
        "hf_token_counter": hf_token_counter(MODEL_DIR),
        "openai tokenizer_path": remote.tokens,
        "api history counter": _token_counter(
            SimpleNamespace(embedder=SimpleNamespace(model_dir=MODEL_DIR))
        ),
    }


@pytest.mark.parametrize("name", list(_hf_counters()))
def test_tokenizer_json_counters_count_past_the_stored_truncation(name: str) -> None:
    count = _hf_counters()[name]
    assert count(LONG) == _full_count(LONG)
    # Nor padded up: a short text is its own length.
    assert count("backups") == _full_count("backups") < 5


def test_the_local_models_counter_counts_in_full() -> None:
    count = local_token_counter(LocalGeneratorSettings())
    one = count(SENTENCE)
    assert count(LONG) > 2 * LIMIT
    # Every repetition is counted (a seam token or two may merge differently).
    repeats = len(LONG) // len(SENTENCE)
    assert abs(count(LONG) - repeats * one) <= repeats


def test_a_chunk_larger_than_the_stored_limit_stays_whole() -> None:
    text = LONG.strip()
    doc = ParsedDocument(text=text, title="t", sections=[Section(0, len(text))])
    size = _full_count(text) + 64
    chunks = Chunker(size, 16, load_tokenizer(MODEL_DIR)).run(doc, "a.md", "t")
    assert len(chunks) == 1 and chunks[0].text == text
    # And a limit under the real length splits it (a truncating counter would see <= 128).
    small = Chunker(LIMIT, 16, load_tokenizer(MODEL_DIR)).run(doc, "a.md", "t")
    assert len(small) > 1 and all(_full_count(c.text) <= LIMIT for c in small)


def test_a_missing_tokenizer_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path)
    with pytest.raises(GenerationError, match="tokenizer_path"):
        hf_token_counter(tmp_path / "nope.json")
    assert tokenizer_file(tmp_path) == tmp_path / "tokenizer.json"
