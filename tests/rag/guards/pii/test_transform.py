"""`pii.ingest: redact`: stored chunks without the values, the policy locked in the collection
like the embedding model, changed only through `rag reindex`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.core.config import load_settings
from rag.core.documents import ParsedDocument, Section
from rag.core.errors import EmbeddingMismatchError
from rag.guards.pii import PiiSettings
from rag.guards.pii.transform import PiiRedactTransform
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.reindex import reindex
from rag.indexing.status import export_chunks

TEXT = (
    "# Billing\n\nThe billing owner is John Miller, john.miller@gmail.com, +44 20 7946 0958.\n\n"
    "## Backups\n\nBackups are kept for 35 days.\n"
)


def _index(tmp_path: Path, embedder: Embedder, **pii: Any) -> Index:
    settings = load_settings(overrides={"data_dir": str(tmp_path / "data"), "pii": pii})
    return Index(settings, embedder=embedder)


def test_redaction_keeps_section_offsets_valid() -> None:
    start = TEXT.index("## Backups")
    doc = ParsedDocument(
        TEXT, "Billing", [Section(0, start, ("Billing",)), Section(start, len(TEXT), ("Backups",))]
    )
    out = PiiRedactTransform(PiiSettings()).run(doc, "a.md")
    assert "John Miller" not in out.text and "gmail" not in out.text and "7946" not in out.text
    assert "<PERSON>" in out.text and "<EMAIL_ADDRESS>" in out.text and "<PHONE_NUMBER>" in out.text
    first, second = out.sections
    assert out.text[second.start :].startswith("## Backups") and second.end == len(out.text)
    assert first.start == 0 and first.end == second.start


def test_redact_at_ingest_is_locked_and_changed_by_reindex(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "billing.md").write_text(TEXT, encoding="utf-8")

    index = _index(tmp_path, embedder, ingest="redact")
    index.open(create=True)
    Ingestor(index).sync_folder(docs)
    stored = " ".join(r["text"] for r in export_chunks(index))
    assert "John Miller" not in stored and "john.miller@gmail.com" not in stored
    assert "<PERSON>" in stored and "35 days" in stored
    meta = index.store.collection_metadata(index.collection or "")
    (lock,) = meta["transforms"]
    assert lock["name"] == "pii-redact" and lock["policy"] == "redact"
    assert lock["detector"] == PiiSettings().detector_fingerprint()
    index.close()

    # Another policy (off, or a detector with other entities) is refused until a reindex.
    for other in ({"ingest": "off"}, {"ingest": "redact", "entities": ["EMAIL_ADDRESS"]}):
        again = _index(tmp_path, embedder, **other)
        with pytest.raises(EmbeddingMismatchError, match=r"rag reindex") as err:
            again.open()
        assert "pii-redact" in str(err.value)
        again.close()

    rebuilt = _index(tmp_path, embedder, ingest="off")
    result = reindex(rebuilt, [docs])
    assert result["collection"] != result["previous"]
    rebuilt.open()
    assert "John Miller" in " ".join(r["text"] for r in export_chunks(rebuilt))
    assert rebuilt.store.collection_metadata(rebuilt.collection or "")["transforms"] == []
    rebuilt.close()


def test_off_is_the_default_and_adds_no_transform(tmp_path: Path, embedder: Embedder) -> None:
    index = _index(tmp_path, embedder)
    assert index.transforms == []
    # In-process default chain (extractive): nothing is detected at ingest either.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(TEXT, encoding="utf-8")
    index.open(create=True)
    Ingestor(index).sync_folder(docs)
    assert all("pii" not in r for r in export_chunks(index))
    index.close()
