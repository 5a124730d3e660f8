"""ParsedDocument → chunks: structure first (sections), then token-sized with overlap.

Token counts use the embedding model's own tokenizer, so a chunk never exceeds what the model
reads. Splitting inside a section uses LlamaIndex's ``SentenceSplitter``; each chunk's
``start``/``end`` are character offsets into the parsed text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
            section_text = doc.text[section.start : section.end]
            if not section_text.strip():
                continue
            cursor = 0
            for piece in self._splitter.split_text(section_text):
                piece = piece.strip()
                if not piece:
                    continue
                local = _locate(section_text, piece, cursor)
                start = section.start + local
                end = start + len(piece)
                # Overlap means the next chunk starts before this one ends.
                cursor = local + 1
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
