"""Symlinks in a watched folder never lead out of it (issue 14, item 2): a link to /etc/passwd,
to the data dir's keys or to another tenant's upload is recorded as failed, not indexed; a
watched folder that holds the data dir never indexes what is in it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor


def _sources(index: Index) -> set[str]:
    assert index.collection is not None
    return {p.payload["source"] for p in index.store.scroll(index.collection)}


def _texts(index: Index) -> str:
    assert index.collection is not None
    return "\n".join(p.payload["text"] for p in index.store.scroll(index.collection))


def test_links_out_of_the_folder_are_refused_and_links_inside_work(
    tmp_settings: Callable[..., Settings], embedder: Embedder, tmp_path: Path
) -> None:
    settings = tmp_settings()
    index = Index(settings, embedder=embedder)
    index.open()
    secret = index.data_dir / "local.key"
    secret.write_text("rk_secret_key_material_never_to_be_indexed\n")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("A private note kept outside the watched folder entirely.\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.md").write_text("# Real\n\nThe staging cluster is rebuilt every Sunday night.\n")
    os.symlink("/etc/passwd", docs / "passwd.txt")
    os.symlink(secret, docs / "k.txt")
    os.symlink(outside, docs / "note.txt")
    os.symlink("real.md", docs / "alias.md")  # inside the folder: fine

    report = Ingestor(index).sync_folder(docs)

    refused = {f["path"]: f["reason"] for f in report.failures}
    assert set(refused) == {"passwd.txt", "k.txt", "note.txt"}, refused
    assert all("outside the watched folder" in r for r in refused.values())
    assert all(str(tmp_path) not in r and "/etc" not in r for r in refused.values()), (
        "reasons name no paths"
    )
    assert _sources(index) == {"real.md", "alias.md"}
    text = _texts(index)
    assert "root:" not in text and "rk_secret" not in text and "private note" not in text
    index.close()


def test_a_link_to_another_tenants_upload_is_refused(
    tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    settings = tmp_settings()
    index = Index(settings, embedder=embedder)
    index.open()
    tenants = index.data_dir / TENANTS_DIR
    (tenants / "globex").mkdir(parents=True)
    (tenants / "acme").mkdir(parents=True)
    (tenants / "globex" / "plan.md").write_text("# Plan\n\nGlobex will acquire Initech in May.\n")
    os.symlink(tenants / "globex" / "plan.md", tenants / "acme" / "stolen.md")

    report = Ingestor(index).sync_folder(tenants)

    assert [f["path"] for f in report.failures] == ["acme/stolen.md"]
    assert _sources(index) == {"globex/plan.md"}
    index.close()


def test_a_watched_folder_holding_the_data_dir_skips_it(
    tmp_settings: Callable[..., Settings], embedder: Embedder, tmp_path: Path
) -> None:
    # `rag watch .` with the default ./data: the store, manifest and keys are not documents.
    project = tmp_path / "project"
    project.mkdir()
    (project / "readme.md").write_text("# Project\n\nDeploys happen on Tuesdays after review.\n")
    settings = tmp_settings(name="project/data")
    index = Index(settings, embedder=embedder)
    index.open()
    (index.data_dir / "local.key").write_text("rk_secret_key_material\n")
    (index.data_dir / "notes.md").write_text("# Internal\n\nNot a document of the project.\n")

    report = Ingestor(index).sync_folder(project)

    assert report.failures == [] and _sources(index) == {"readme.md"}
    index.close()
