from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rag.core.documents import chunk_id, document_id, text_hash
from rag.core.tokens import load_tokenizer
from rag.indexing.chunking import Chunker
from rag.indexing.embedding import default_model_path
from rag.indexing.parsing import ParseError, parse_bytes

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "docs"


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(40, 8, load_tokenizer(default_model_path()))


@pytest.mark.parametrize(
    "name",
    [
        "onboarding.md",
        "api-rate-limits.html",
        "incident-runbook.txt",
        "policies/security-handbook.pdf",
        "policies/expense-policy.docx",
        "policies/backup-policy.md",
    ],
)
def test_every_sample_format_parses_with_offsets(name: str, chunker: Chunker) -> None:
    path = EXAMPLES / name
    doc = parse_bytes(path.read_bytes(), path.suffix, path.name)
    assert doc.title and doc.text.strip()
    chunks = chunker.run(doc, name, "default")
    assert chunks
    for c in chunks:
        # Offsets point into the parsed text: citations depend on this.
        assert doc.text[c.start : c.end] == c.text
        assert c.source == name and c.doc_id == document_id("default", name)
        assert c.id == chunk_id(c.doc_id, text_hash(c.text))
    assert len({c.id for c in chunks}) == len(chunks)


def test_markdown_heading_paths_and_code_fences(chunker: Chunker) -> None:
    md = "# Top\n\nintro\n\n## A\n\ntext a\n\n```\n# not a heading\n```\n\n### A1\n\ndeep\n\n## B\n\ntext b\n"
    doc = parse_bytes(md.encode(), ".md", "x.md")
    assert doc.title == "Top"
    paths = [s.heading_path for s in doc.sections]
    assert paths == [("Top",), ("Top", "A"), ("Top", "A", "A1"), ("Top", "B")]
    chunks = chunker.run(doc, "x.md", "t")
    assert any(c.section == ["Top", "A", "A1"] and "deep" in c.text for c in chunks)


def test_pdf_pages_are_kept(chunker: Chunker) -> None:
    path = EXAMPLES / "policies" / "security-handbook.pdf"
    doc = parse_bytes(path.read_bytes(), ".pdf", path.name)
    chunks = chunker.run(doc, "s.pdf", "t")
    assert {c.page for c in chunks} == {1, 2}
    assert any("full-disk encryption" in c.text and c.page == 2 for c in chunks)


def test_chunks_respect_token_size_with_overlap() -> None:
    tok = load_tokenizer(default_model_path())
    ch = Chunker(32, 8, tok)
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    doc = parse_bytes(text.encode(), ".txt", "long.txt")
    chunks = ch.run(doc, "long.txt", "t")
    assert len(chunks) > 5
    assert all(len(tok(c.text)) <= 32 for c in chunks)
    # Overlap: consecutive chunks share text (the next starts before the previous ends).
    assert any(b.start < a.end for a, b in itertools.pairwise(chunks))


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        Chunker(10, 10, load_tokenizer(default_model_path()))


@pytest.mark.parametrize(
    ("data", "suffix", "reason"),
    [
        (b"", ".md", "empty file"),
        (b"abc\x00\x01\x02", ".txt", "binary content"),
        (b"caf\xe9 au lait", ".txt", "not valid UTF-8"),
        (b"%PDF-1.4 garbage", ".pdf", "corrupt or unreadable PDF"),
        (b"PK\x03\x04 not really", ".docx", "corrupt or unreadable .docx"),
        (b"   \n\n  ", ".txt", "no text could be extracted"),
        (b"x", ".xyz", "unsupported file type"),
    ],
)
def test_bad_input_reasons(data: bytes, suffix: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_bytes(data, suffix, "f" + suffix)
