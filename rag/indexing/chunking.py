"""ParsedDocument → chunks: structure first (sections), then token-sized with overlap.

Token counts use the embedding model's own tokenizer, so a chunk never exceeds what the model
reads. Splitting inside a section uses LlamaIndex's ``SentenceSplitter``; each chunk's
``start``/``end`` are character offsets into the parsed text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.core.budget import check_budget
from rag.core.documents import Chunk, ParsedDocument, chunk_id, document_id, text_hash
from rag.core.errors import ConfigError

__all__ = ["Chunker"]


class Chunker:
    """Cheap to construct; the tokenizer is passed in (``rag.core.tokens.load_tokenizer``)."""

    def __init__(
        self, chunk_tokens: int, overlap_tokens: int, tokenizer: Callable[[str], Sequence[int]]
    ):
        if overlap_tokens >= chunk_tokens:
            raise ConfigError(
                f"chunking.overlap_tokens ({overlap_tokens}) must be smaller than chunking.chunk_tokens ({chunk_tokens})"
            )
        from llama_index.core.node_parser import SentenceSplitter

        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self._tokenize = tokenizer
        # A chunk of this many characters at most: a run of a few tokens can be a megabyte
        # (WordPiece reads any word over 100 characters as one unknown token), and packing
        # counts tokens, not what the passage costs a generator.
        self.max_chars = chunk_tokens * 16
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens, chunk_overlap=overlap_tokens, tokenizer=tokenizer
        )

    def run(
        self, doc: ParsedDocument, source: str, tenant: str, doc_id: str | None = None
    ) -> list[Chunk]:
        """Chunks of ``doc`` (``doc_id``: the document's id, by default a watched document's)."""
        doc_id = doc_id or document_id(tenant, source)
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for section in doc.sections:
            check_budget()
            section_text = doc.text[section.start : section.end]
            if not section_text.strip():
                continue
            for local, piece in self._pieces(section_text):
                start = section.start + local
                end = start + len(piece)
                h = text_hash(piece)
                if h in seen:  # identical text twice in one document: one point is enough
                    continue
                seen.add(h)
                chunks.append(
                    Chunk(
                        id=chunk_id(doc_id, h),
                        doc_id=doc_id,
                        source=source,
                        text=piece,
                        text_hash=h,
                        title=doc.title,
                        section=list(section.heading_path),
                        page=section.page,
                        start=start,
                        end=end,
                        index=len(chunks),
                        tenant=tenant,
                    )
                )
        return chunks

    def _pieces(self, text: str) -> list[tuple[int, str]]:
        """(offset in ``text``, chunk text) of one section's chunks, in order.

        A run without whitespace too long for one chunk, in tokens or ``max_chars`` (a base64
        blob, minified code, a wall of punctuation), is cut here, each piece tokenized once:
        the splitter would split it into single characters and tokenize each (~10x slower,
        per MB), or keep a run of few tokens whole however long."""
        out: list[tuple[int, str]] = []
        pos = 0
        for m in _LONG_RUN.finditer(text):
            check_budget()
            tokens = len(self._tokenize(m.group()))
            if tokens <= self.chunk_tokens and m.end() - m.start() <= self.max_chars:
                continue
            out.extend(self._split(text, pos, m.start()))
            out.extend(self._cut(text, m.start(), m.end(), tokens))
            pos = m.end()
        out.extend(self._split(text, pos, len(text)))
        return out

    def _split(self, text: str, begin: int, end: int) -> list[tuple[int, str]]:
        """The splitter's chunks of ``text[begin:end]``, located in ``text``; a long stretch
        goes to the splitter a segment at a time, cut at a paragraph (else line, else word)
        break: its sentence tokenizer runs over what it is given at once, and gives up
        (nltk's 5 s regex limit) on a section of megabytes."""
        out: list[tuple[int, str]] = []
        while end - begin > _SEGMENT:
            cut = -1
            for sep in ("\n\n", "\n", " "):
                cut = text.rfind(sep, begin + _SEGMENT // 2, begin + _SEGMENT)
                if cut >= 0:
                    cut += len(sep)
                    break
            cut = cut if cut > begin else begin + _SEGMENT
            out.extend(self._split_segment(text, begin, cut))
            begin = cut
        out.extend(self._split_segment(text, begin, end))
        return out

    def _split_segment(self, text: str, begin: int, end: int) -> list[tuple[int, str]]:
        segment = text[begin:end]
        out: list[tuple[int, str]] = []
        if not segment.strip():
            return out
        cursor = 0
        for piece in self._splitter.split_text(segment):
            check_budget()
            piece = piece.strip()
            if not piece:
                continue
            local = _locate(segment, piece, cursor)
            # Overlap means the next chunk starts before this one ends.
            cursor = local + 1
            out.append((begin + local, piece))
        return out

    def _cut(self, text: str, begin: int, end: int, tokens: int) -> list[tuple[int, str]]:
        """``text[begin:end]`` (one run of ``tokens`` tokens) cut into pieces that each fit a
        chunk: sized from the run's characters per token, shrunk where a piece is over."""
        out: list[tuple[int, str]] = []
        step = max(1, min(self.max_chars, int((end - begin) * self.chunk_tokens * 0.9 / tokens)))
        start = begin
        while start < end:
            check_budget()
            stop = min(end, start + step)
            while stop - start > 1 and len(self._tokenize(text[start:stop])) > self.chunk_tokens:
                stop = start + max(1, (stop - start) * 3 // 4)
            out.append((start, text[start:stop]))
            start = stop
        return out


# The most text handed to the splitter at once (characters).
_SEGMENT = 65_536
# A run of this many characters without whitespace may hold more tokens than a chunk.
_LONG_RUN = re.compile(r"\S{256,}")


def _locate(haystack: str, piece: str, cursor: int) -> int:
    """Offset of ``piece`` in ``haystack`` at or after ``cursor`` (the splitter keeps text verbatim)."""
    idx = haystack.find(piece, cursor)
    if idx < 0:
        idx = haystack.find(piece)
    if idx < 0:
        # Defensive: the splitter normalised whitespace; anchor on the first words.
        head = piece[:40]
        idx = haystack.find(head, cursor)
        if idx < 0:
            idx = max(0, min(cursor, len(haystack) - 1))
    return idx
