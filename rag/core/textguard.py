"""Text from outside (questions, documents, chat history, file names) that must not act as markup.

- **Chat-template control tokens.** A model's tokenizer turns the *text* ``<|im_start|>`` into
  the control token that opens a turn (llama.cpp tokenizes the rendered prompt with special
  tokens on; vLLM and other servers do the same), so ``<|im_end|>\\n<|im_start|>system\\n…`` in
  a question or a passage would open a system turn. :func:`neutralise_special_tokens` breaks
  every such string by putting a zero-width space after its first character: a reader sees
  the same text, the tokenizer sees ordinary characters. Broken are: any ``<|…|>`` (ChatML,
  Llama 3, Phi, GPT: ``<|im_start|>``, ``<|eot_id|>``, ``<|endoftext|>``, …) and its
  full-width form ``<｜…｜>`` (DeepSeek), :data:`KNOWN_SPECIAL_TOKENS` (Llama 2/Mistral,
  Gemma, …), and whatever a backend reads from its own vocabulary (the local GGUF's control
  tokens; a remote server's ``tokenizer.json`` special tokens).
- **Blank text.** :func:`is_blank`: nothing a person would see — whitespace, control and
  format characters (Unicode Cc, Cf, Z*), and the other default-ignorable code points
  (zero-width joiners, variation selectors, Hangul fillers, the blank Braille pattern).
- **Bidirectional controls.** :func:`bidi_controls`: the embeddings, overrides and isolates
  (U+202A–U+202E, U+2066–U+2069) that make ``invoice‮fdp.exe`` display as ``invoiceexe.pdf``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from rag.core.errors import QuestionError

__all__ = [
    "BIDI_CONTROLS",
    "INVISIBLE_RANGES",
    "KNOWN_SPECIAL_TOKENS",
    "VISIBLE_CHARACTER",
    "bidi_controls",
    "check_question",
    "is_blank",
    "neutralise_messages",
    "neutralise_special_tokens",
]

ZERO_WIDTH_SPACE = "\u200b"

# Control tokens of common chat templates that are not of the <|...|> form (which is always
# broken). Models whose vocabulary is readable (the local GGUF) add their own.
KNOWN_SPECIAL_TOKENS = frozenset(
    {
        # Llama 2, Mistral, most SentencePiece models
        "<s>",
        "</s>",
        "<unk>",
        "<pad>",
        "<<SYS>>",
        "<</SYS>>",
        "[INST]",
        "[/INST]",
        "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_CALLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
        # Gemma
        "<bos>",
        "<eos>",
        "<start_of_turn>",
        "<end_of_turn>",
        # SmolLM2 / StarCoder vocabularies (control tokens besides the ChatML ones)
        "<repo_name>",
        "<reponame>",
        "<file_sep>",
        "<filename>",
        "<gh_stars>",
        "<issue_start>",
        "<issue_comment>",
        "<issue_closed>",
        "<jupyter_start>",
        "<jupyter_text>",
        "<jupyter_code>",
        "<jupyter_output>",
        "<jupyter_script>",
        "<empty_output>",
    }
)

# <|anything|> and its full-width form <｜anything｜>: ChatML, Llama 3, Phi, GPT, DeepSeek.
_BARRED_TOKEN = r"<[|\uff5c][^\s<>|\uff5c]{1,64}[|\uff5c]>"


_Trie = dict[str, "_Trie"]


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation for many literals, as a trie (no backtracking over hundreds)."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        ends = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


@functools.lru_cache(maxsize=32)
def _special_pattern(extra: frozenset[str]) -> re.Pattern[str]:
    words = {w for w in KNOWN_SPECIAL_TOKENS | extra if len(w) >= 2 and w.strip()}
    return re.compile(f"{_BARRED_TOKEN}|{_trie_pattern(sorted(words))}")


def _break(match: re.Match[str]) -> str:
    text = match[0]
    return text[0] + ZERO_WIDTH_SPACE + text[1:]


def neutralise_special_tokens(text: str, extra: frozenset[str] = frozenset()) -> str:
    """``text`` with every special-token string broken by a zero-width space after its first
    character (``<|im_start|>`` → ``<\\u200b|im_start|>``). ``extra``: a backend's own special
    tokens. Idempotent; text without such strings is returned unchanged."""
    pattern = _special_pattern(extra)
    for _ in range(8):  # overlapping tokens: each pass breaks at least one; two suffice in practice
        if pattern.search(text) is None:
            break
        text = pattern.sub(_break, text)
    return text


def neutralise_messages(
    messages: Sequence[dict[str, str]], extra: frozenset[str] = frozenset()
) -> list[dict[str, str]]:
    """Chat messages with each content neutralised (roles and other keys kept)."""
    return [
        {**m, "content": neutralise_special_tokens(m["content"], extra)}
        if isinstance(m.get("content"), str)
        else dict(m)
        for m in messages
    ]


# Nothing to see: Cc, Cf, Zs, Zl, Zp (Unicode 15.1), the other Default_Ignorable_Code_Point
# ranges (DerivedCoreProperties) and U+2800 BRAILLE PATTERN BLANK. Inclusive ranges.
INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020),
    (0x007F, 0x00A0),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x1680, 0x1680),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x206F),
    (0x2800, 0x2800),
    (0x3000, 0x3000),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _escape(cp: int) -> str:
    # \uXXXX / \UXXXXXXXX: understood alike by Python's re and Rust's regex (pydantic).
    return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"


_INVISIBLE_CLASS = "".join(
    _escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}" for lo, hi in INVISIBLE_RANGES
)
# A regex matching one visible character (search semantics: "has something to see"), for
# schema patterns such as the API's question field.
VISIBLE_CHARACTER = f"[^{_INVISIBLE_CLASS}]"
_VISIBLE = re.compile(VISIBLE_CHARACTER)


def is_blank(text: str) -> bool:
    """True when ``text`` has no character a person would see (see :data:`INVISIBLE_RANGES`)."""
    return _VISIBLE.search(text) is None


def check_question(question: str | None, max_chars: int | None = None) -> str:
    """The question, stripped: the one check every way in (API, CLI, pipeline) applies.
    :class:`~rag.core.errors.QuestionError` when it is empty, only invisible characters, or
    over ``max_chars`` (``api.max_question_chars``)."""
    text = (question or "").strip()
    if max_chars is not None and len(text) > max_chars:
        raise QuestionError(
            f"question is {len(text)} characters; the limit is {max_chars} "
            "(setting api.max_question_chars)",
            too_long=True,
        )
    if not text:
        raise QuestionError("the question is empty: ask something")
    if is_blank(text):
        # Zero-width spaces, joiners, bidi marks, BOMs: nothing to search for or answer.
        raise QuestionError(
            "the question is empty: it has only invisible characters (zero-width or other "
            "format characters); ask something"
        )
    return text


BIDI_CONTROLS: frozenset[str] = frozenset(
    chr(cp) for cp in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
)


def bidi_controls(text: str) -> list[str]:
    """The bidirectional embedding, override and isolate characters in ``text``, each as
    ``U+202E RIGHT-TO-LEFT OVERRIDE`` (first occurrence order, no repeats)."""
    found = dict.fromkeys(ch for ch in text if ch in BIDI_CONTROLS)
    return [f"U+{ord(ch):04X} {unicodedata.name(ch)}" for ch in found]
