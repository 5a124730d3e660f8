"""Document transforms plugged in from outside: applied between parsing and chunking, locked in
the collection's metadata like the embedding model, changed only through `rag reindex`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import load_settings
from rag.core.documents import ParsedDocument
from rag.core.errors import EmbeddingMismatchError
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex
from rag.indexing.status import export_chunks
from rag.indexing.transforms import DocumentTransform


class MaskDigits:
    """Same-length masking keeps every offset valid."""

    name = "mask-digits"

    def __init__(self, mask: str = "#"):
        self.mask = mask
        self.warmed = False

    def identity(self) -> dict[str, Any]:
        return {"version": 1, "mask": self.mask}

    def warm_up(self) -> None:
        self.warmed = True

    def run(self, document: ParsedDocument, source: str) -> ParsedDocument:
        text = re.sub(r"\d", self.mask, document.text)
        return ParsedDocument(text, document.title, document.sections, dict(document.metadata))


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.md").write_text("# Backups\n\nBackups run nightly at 02:00 UTC, kept for 35 days.\n")
    return d


def _index(tmp_path: Path, embedder: Embedder, *transforms: DocumentTransform) -> Index:
    settings = load_settings(overrides={"data_dir": str(tmp_path / "data")})
    return Index(settings, embedder=embedder, transforms=list(transforms))


def test_a_transform_changes_what_is_chunked_and_is_locked(
    tmp_path: Path, docs: Path, embedder: Embedder
) -> None:
    mask = MaskDigits()
    assert isinstance(mask, DocumentTransform)
    index = _index(tmp_path, embedder, mask)
    index.open()
    index.warm_up()
    assert mask.warmed
    Ingestor(index).sync_folder(docs)
    rows = list(export_chunks(index))
    assert rows and all(not re.search(r"\d", r["text"]) for r in rows)
    assert "##:## UTC" in rows[0]["text"]
    meta = index.store.collection_metadata(index.collection or "")
    assert meta["transforms"] == [{"name": "mask-digits", "version": 1, "mask": "#"}]
    index.close()

    # Another configuration of transforms (none, or other settings) is refused, naming both.
    for other in ([], [MaskDigits("*")]):
        again = _index(tmp_path, embedder, *other)
        with pytest.raises(EmbeddingMismatchError, match=r"rag reindex.*") as err:
            again.open()
        assert "mask-digits" in str(err.value)
        again.close()

    # `rag reindex` with the new configuration rebuilds, and then it opens.
    rebuilt = _index(tmp_path, embedder, MaskDigits("*"))
    result = reindex(rebuilt, [docs])
    assert result["collection"] != result["previous"]
    rebuilt.open()
    assert "**:** UTC" in next(iter(export_chunks(rebuilt)))["text"]
    rebuilt.close()


def test_no_transforms_is_the_default(tmp_path: Path, docs: Path, embedder: Embedder) -> None:
    index = _index(tmp_path, embedder)
    index.open()
    Ingestor(index).sync_folder(docs)
    assert index.store.collection_metadata(index.collection or "")["transforms"] == []
    assert any("35 days" in r["text"] for r in export_chunks(index))
    index.close()
