"""Document identity across roots (issue 14, items 3 and 6).

A watched folder's documents are named by their path in that folder (``policies/backup.md``),
a tenant's uploads by ``<tenant>/<path>`` under ``<data_dir>/tenants/``: the two namespaces
meet when a tenant is named like a top-level folder of a watched folder. Neither root may
take over, hide or delete the other's document. Vectors are reused by text only within one
tenant, so an upload's embedding count says nothing about other tenants' texts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rag.indexing.ingest
from rag.core.config import Settings
from rag.core.documents import document_id
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor

DEFAULT_TEXT = (
    "# Backup policy\n\nProduction backups are kept for thirty five days in cold storage.\n"
)
TENANT_TEXT = "# Backup policy\n\nThe policies tenant keeps its backups for seven days only.\n"
SOURCE = "policies/backup-policy.md"


@pytest.fixture()
def index(tmp_settings: Callable[..., Settings], embedder: Embedder) -> Any:
    idx = Index(tmp_settings(), embedder=embedder)
    idx.open()
    yield idx
    idx.close()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _texts_by_tenant(index: Index, source: str) -> dict[str, str]:
    assert index.collection is not None
    out: dict[str, str] = {}
    for p in index.store.scroll(index.collection, filter={"source": source}):
        out[p.payload["tenant"]] = out.get(p.payload["tenant"], "") + p.payload["text"]
    return out


def _setup_roots(index: Index, tmp_path: Path) -> tuple[Path, Path]:
    watched = tmp_path / "docs"
    _write(watched / SOURCE, DEFAULT_TEXT)
    tenants = index.data_dir / TENANTS_DIR
    _write(tenants / SOURCE, TENANT_TEXT)  # tenant "policies", path backup-policy.md
    return watched, tenants


@pytest.mark.parametrize("first", ["watched", "upload"])
def test_a_tenant_named_like_a_watched_folder_takes_nothing_over(
    index: Index, tmp_path: Path, first: str
) -> None:
    watched, tenants = _setup_roots(index, tmp_path)
    order = [watched, tenants] if first == "watched" else [tenants, watched]
    ingestor = Ingestor(index)
    for root in order:
        assert ingestor.sync_folder(root).ingested == 1
    # The next reconciles (the daemon runs them every few minutes) keep both, embed nothing.
    for _ in range(2):
        for root in order:
            report = ingestor.sync_folder(root)
            assert (report.ingested, report.embedded, report.chunks_deleted) == (0, 0, 0), (
                root,
                report,
            )
            assert report.unchanged == 1

    texts = _texts_by_tenant(index, SOURCE)
    assert set(texts) == {"default", "policies"}, texts
    assert "thirty five days" in texts["default"] and "seven days" in texts["policies"]
    assert index.collection is not None
    rows = [r for r in index.manifest.records(index.collection) if r.source == SOURCE]
    assert sorted((Path(r.root).name, r.status) for r in rows) == [
        ("docs", "ok"),
        (TENANTS_DIR, "ok"),
    ]
    assert len({r.doc_id for r in rows}) == 2

    # Deleting one leaves the other alone.
    (tenants / SOURCE).unlink()
    report = ingestor.sync_folder(tenants)
    assert report.deleted == 1
    assert set(_texts_by_tenant(index, SOURCE)) == {"default"}
    assert ingestor.sync_folder(watched).unchanged == 1
    assert set(_texts_by_tenant(index, SOURCE)) == {"default"}


def test_the_default_tenants_uploads_and_watched_folders_have_distinct_ids(
    index: Index, tmp_path: Path
) -> None:
    """The default tenant ("default") uploads ``x.md`` (source ``default/x.md``) while its watched
    folder has a folder ``default/``: same tenant, same source, two documents."""
    watched = tmp_path / "docs"
    _write(watched / "default" / "x.md", DEFAULT_TEXT)
    tenants = index.data_dir / TENANTS_DIR
    _write(tenants / "default" / "x.md", TENANT_TEXT)
    ingestor = Ingestor(index)
    for _ in range(2):
        ingestor.sync_folder(watched)
        ingestor.sync_folder(tenants)
    text = _texts_by_tenant(index, "default/x.md")["default"]
    assert "thirty five days" in text and "seven days" in text, text
    ingestor.sync_paths(tenants, ["default/x.md"])
    assert ingestor.sync_paths(watched, ["default/x.md"]).unchanged == 1
    text = _texts_by_tenant(index, "default/x.md")["default"]
    assert "thirty five days" in text and "seven days" in text, text


def _to_old_schema(path: Path) -> None:
    """The manifest as releases before this one wrote it: one row per (collection, source)."""
    db = sqlite3.connect(str(path))
    db.executescript(
        """
        CREATE TABLE files_old (
            collection TEXT NOT NULL, source TEXT NOT NULL, root TEXT NOT NULL,
            doc_id TEXT NOT NULL, status TEXT NOT NULL, signature TEXT NOT NULL,
            chunks INTEGER NOT NULL DEFAULT 0, reason TEXT, updated_at REAL NOT NULL,
            PRIMARY KEY (collection, source)
        );
        INSERT INTO files_old SELECT collection, source, root, doc_id, status, signature, chunks,
            reason, updated_at FROM files;
        DROP TABLE files;
        ALTER TABLE files_old RENAME TO files;
        """
    )
    db.commit()
    db.close()


def test_an_index_from_before_the_change_keeps_working(
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Old manifests (keyed by source) and old upload ids (f(tenant, source)) are migrated:
    nothing is embedded again, old chunk ids go, every document stays answerable."""
    settings = tmp_settings()
    watched = tmp_path / "docs"
    _write(watched / "handbook.md", DEFAULT_TEXT)
    tenants = settings.resolved_data_dir() / TENANTS_DIR
    _write(tenants / "acme" / "plan.md", TENANT_TEXT)

    legacy = rag.indexing.ingest.document_id

    def old_document_id(tenant: str, source: str, **_: Any) -> str:
        return legacy(tenant, source)

    with monkeypatch.context() as m:
        m.setattr(rag.indexing.ingest, "document_id", old_document_id)
        old = Index(settings, embedder=embedder)
        old.open()
        Ingestor(old).sync_folder(watched)
        Ingestor(old).sync_folder(tenants)
        assert old.collection is not None
        old_ids = {p.payload["doc_id"] for p in old.store.scroll(old.collection)}
        old.close()
    assert document_id("acme", "acme/plan.md") in old_ids
    _to_old_schema(settings.resolved_data_dir() / "manifest.sqlite")

    index = Index(settings, embedder=embedder)
    index.open()
    try:
        ingestor = Ingestor(index)
        watched_report = ingestor.sync_folder(watched)
        assert (watched_report.unchanged, watched_report.embedded) == (1, 0)
        report = ingestor.sync_folder(tenants)
        assert (report.ingested, report.embedded) == (1, 0), report
        assert index.collection is not None
        points = list(index.store.scroll(index.collection))
        ids = {p.payload["doc_id"] for p in points}
        assert document_id("acme", "acme/plan.md") not in ids, "the old upload id is gone"
        assert len(points) == 2 and {p.payload["tenant"] for p in points} == {"default", "acme"}
        # Migrated: two roots may now hold the same source.
        _write(watched / "acme" / "plan.md", DEFAULT_TEXT)
        assert ingestor.sync_folder(watched).ingested == 1
        assert ingestor.sync_folder(tenants).unchanged == 1
        assert len(index.manifest.records(index.collection, status="ok")) == 3
    finally:
        index.close()


# -- item 6: vector reuse stays inside a tenant ------------------------------------------

PARAGRAPH = "Office plants are watered every Friday morning by the facilities team on duty."


def test_the_same_paragraph_in_another_tenant_is_embedded_again(index: Index) -> None:
    tenants = index.data_dir / TENANTS_DIR
    ingestor = Ingestor(index)
    _write(tenants / "acme" / "plants.md", PARAGRAPH)
    assert ingestor.sync_folder(tenants).embedded == 1
    # globex guesses acme's paragraph: its upload costs an embedding like any new text, so
    # the embedded-chunks counter (public on /metrics) says nothing about acme's documents.
    _write(tenants / "globex" / "guess.md", PARAGRAPH)
    report = ingestor.sync_folder(tenants)
    assert (report.ingested, report.embedded) == (1, 1), report
    # Both at once: each tenant's copy is embedded for that tenant.
    _write(tenants / "initech" / "a.md", PARAGRAPH + " Initech.")
    _write(tenants / "umbrella" / "b.md", PARAGRAPH + " Initech.")
    report = ingestor.sync_folder(tenants)
    assert (report.ingested, report.embedded) == (2, 2), report
    # The default tenant's watched folder is one more tenant.
    watched = index.data_dir.parent / "docs"
    _write(watched / "plants.md", PARAGRAPH)
    assert ingestor.sync_folder(watched).embedded == 1


def test_within_a_tenant_a_rename_or_copy_still_reuses_vectors(index: Index) -> None:
    tenants = index.data_dir / TENANTS_DIR
    ingestor = Ingestor(index)
    _write(tenants / "acme" / "plants.md", PARAGRAPH)
    assert ingestor.sync_folder(tenants).embedded == 1
    (tenants / "acme" / "plants.md").rename(tenants / "acme" / "moved.md")
    report = ingestor.sync_folder(tenants)
    assert (report.ingested, report.deleted, report.embedded) == (1, 1, 0), report
    _write(tenants / "acme" / "copy.md", PARAGRAPH)
    report = ingestor.sync_folder(tenants)
    assert (report.ingested, report.embedded, report.reused) == (1, 0, 1), report
