"""The sync engine (``Ingestor``) in process: re-syncs cost only what changed, ids are deterministic.

Real parts throughout: Qdrant Edge store, the MiniLM embedder (shared, warmed once), the real
chunker. ``SyncReport.embedded`` counts the texts actually sent to the model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.documents import chunk_id, document_id
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor

SECTIONS = {
    "Backups": "Backups run nightly at 02:00 UTC and are kept for thirty five days in cold storage.",
    "Rate limits": "The public API answers 429 with a Retry-After header once a client exceeds its quota.",
    "Rotation": "Signing keys rotate every ninety days; the previous key stays valid for one extra week.",
    "Regions": "Customer data stays in the region chosen at sign-up: Frankfurt, Dublin or Virginia.",
    "Support": "Severity one incidents page the on-call engineer within five minutes, day or night.",
}


def handbook(sections: dict[str, str]) -> str:
    # Headings split chunks (structure first), so each section is its own chunk.
    return "# Handbook\n\n" + "".join(
        f"## {title}\n\n{body}\n\n" for title, body in sections.items()
    )


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "guides").mkdir(parents=True)
    (folder / "handbook.md").write_text(handbook(SECTIONS))
    (folder / "faq.txt").write_text(
        "Passwords must be at least sixteen characters and are checked against leaks."
    )
    (folder / "guides" / "deploy.md").write_text(
        "# Deploy\n\nDeploys go out on Tuesdays after the change board.\n"
    )
    return folder


IndexFactory = Callable[..., Index]


@pytest.fixture()
def open_index(tmp_settings: Callable[..., Settings], embedder: Embedder) -> Any:
    opened: list[Index] = []

    def make(name: str = "data") -> Index:
        index = Index(tmp_settings(name), embedder=embedder)
        index.open()
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


def points_by_source(index: Index) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    assert index.collection is not None
    for p in index.store.scroll(index.collection):
        out.setdefault(p.payload["source"], []).append({"id": p.id, **p.payload})
    return out


def test_unchanged_resync_embeds_nothing(docs: Path, open_index: IndexFactory) -> None:
    index = open_index()
    first = Ingestor(index).sync_folder(docs)
    assert first.ingested == 3 and first.embedded > 0 and first.failed == 0
    before = points_by_source(index)

    again = Ingestor(index).sync_folder(docs)

    assert (again.embedded, again.ingested, again.unchanged, again.deleted) == (0, 0, 3, 0)
    assert again.chunks_written == 0 and again.chunks_deleted == 0
    assert points_by_source(index) == before


def test_changing_one_paragraph_reembeds_only_that_chunk(
    docs: Path, open_index: IndexFactory
) -> None:
    index = open_index()
    Ingestor(index).sync_folder(docs)
    old = {p["text"] for p in points_by_source(index)["handbook.md"]}
    assert len(old) >= len(SECTIONS), (
        "the handbook must span several chunks for this test to mean anything"
    )

    edited = dict(
        SECTIONS,
        Rotation="Signing keys now rotate every thirty days, and old keys are revoked at once.",
    )
    (docs / "handbook.md").write_text(handbook(edited))
    report = Ingestor(index).sync_folder(docs)

    new = {p["text"] for p in points_by_source(index)["handbook.md"]}
    changed = new - old
    assert len(changed) == 1 and "thirty days" in next(iter(changed))
    assert report.embedded == len(changed) == 1
    assert report.ingested == 1 and report.unchanged == 2
    # The replaced paragraph's chunk is gone, not kept beside the new one.
    assert report.chunks_deleted == len(old - new) == 1
    assert not any("ninety days" in t for t in new)


@pytest.mark.parametrize("how", ["sync_folder", "sync_paths"])
def test_renamed_file_reuses_its_vectors(docs: Path, open_index: IndexFactory, how: str) -> None:
    index = open_index()
    Ingestor(index).sync_folder(docs)
    old_points = points_by_source(index)["handbook.md"]
    assert index.collection is not None
    old_vectors = {
        p.payload["text"]: p.dense
        for p in index.store.retrieve(index.collection, [p["id"] for p in old_points], True)
    }

    (docs / "archive").mkdir()
    (docs / "handbook.md").rename(docs / "archive" / "handbook-2024.md")
    if how == "sync_folder":
        report = Ingestor(index).sync_folder(docs)
    else:  # what the daemon does for a move event: both ends at once
        report = Ingestor(index).sync_paths(docs, ["handbook.md", "archive/handbook-2024.md"])

    assert report.embedded == 0
    assert (report.ingested, report.deleted) == (1, 1)
    points = points_by_source(index)
    assert "handbook.md" not in points
    moved = points["archive/handbook-2024.md"]
    assert sorted(p["text"] for p in moved) == sorted(old_vectors)
    new_vectors = {
        p.payload["text"]: p.dense
        for p in index.store.retrieve(index.collection, [p["id"] for p in moved], True)
    }
    assert new_vectors == old_vectors
    assert index.manifest.get(index.collection, "handbook.md") is None


def test_deleted_file_leaves_no_chunk(docs: Path, open_index: IndexFactory) -> None:
    index = open_index()
    Ingestor(index).sync_folder(docs)
    doc = document_id(index.settings.tenant, "guides/deploy.md")
    assert index.collection is not None
    assert index.store.count(index.collection, {"doc_id": doc}) > 0

    shutil.rmtree(docs / "guides")
    report = Ingestor(index).sync_folder(docs)

    assert report.deleted == 1 and report.embedded == 0
    every = list(index.store.scroll(index.collection))
    assert not [
        p for p in every if p.payload["doc_id"] == doc or p.payload["source"].startswith("guides/")
    ]
    assert {p.payload["source"] for p in every} == {"handbook.md", "faq.txt"}
    assert index.manifest.get(index.collection, "guides/deploy.md") is None


def test_chunk_ids_are_deterministic_across_fresh_data_dirs(
    docs: Path, open_index: IndexFactory
) -> None:
    first, second = open_index("data-a"), open_index("data-b")
    Ingestor(first).sync_folder(docs)
    Ingestor(second).sync_folder(docs)

    a, b = points_by_source(first), points_by_source(second)
    assert a == b  # same ids, same payloads
    ids = [p["id"] for rows in a.values() for p in rows]
    assert len(ids) == len(set(ids))
    for source, rows in a.items():
        for p in rows:
            assert p["id"] == chunk_id(document_id(first.settings.tenant, source), p["text_hash"])


def test_moved_directory_reported_with_its_files_is_synced_once(
    docs: Path, open_index: IndexFactory
) -> None:
    """The daemon hears of a directory move once for the directory and once per file inside it."""
    index = open_index()
    Ingestor(index).sync_folder(docs)
    (docs / "guides").rename(docs / "runbooks")

    report = Ingestor(index).sync_paths(
        docs, ["guides", "guides/deploy.md", "runbooks", "runbooks/deploy.md"]
    )

    assert (report.ingested, report.deleted, report.embedded, report.files_seen) == (1, 1, 0, 1)
    assert "runbooks/deploy.md" in points_by_source(index)
    assert "guides/deploy.md" not in points_by_source(index)
