"""The data dir is private (issue 14, item 7): every folder in it 0700, every file 0600 or
stricter — the store and its write-ahead log, the manifest, reports, daemon.json — whether
the ``rag`` command wrote it or the library was used directly. The process starts with the
common umask 022 (what would make them 0755/0644)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def too_open(data_dir: Path) -> list[str]:
    """Every path under ``data_dir`` (itself included) that group or other may use."""
    assert data_dir.is_dir()
    bad = []
    for root, _dirs, files in os.walk(data_dir):
        for p in [Path(root)] + [Path(root, f) for f in files]:
            mode = stat.S_IMODE(p.lstat().st_mode)
            if (p.is_dir() and mode != 0o700) or (not p.is_dir() and mode & 0o077):
                bad.append(f"{oct(mode)} {p.relative_to(data_dir.parent)}")
    return bad


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "team").mkdir(parents=True)
    (folder / "salaries.md").write_text("# Salaries\n\nThe CFO earns more than the CEO.\n")
    (folder / "team" / "notes.txt").write_text("The offsite is in Lisbon this year.\n")
    return folder


def test_library_index_and_ingest_leave_nothing_readable_by_others(
    umask_022: None, tmp_settings: Callable[..., Settings], embedder: Embedder, docs: Path
) -> None:
    settings = tmp_settings()
    index = Index(settings, embedder=embedder)
    try:
        index.open()
        assert Ingestor(index).sync_folder(docs).ingested == 2
        index.store.flush(index.collection or "")
    finally:
        index.close()
    data_dir = settings.resolved_data_dir()
    assert (data_dir / "manifest.sqlite").is_file()
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert len(files) > 5, files  # the store's segments, its WAL, the manifest
    assert too_open(data_dir) == []


def test_an_existing_data_dir_open_to_others_is_made_private(
    umask_022: None,
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = tmp_settings()
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    with caplog.at_level(logging.WARNING, logger="rag.core.datadir"):
        Index(settings, embedder=embedder).close()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert any("made it 0700" in r.getMessage() for r in caplog.records), caplog.text


def test_the_cli_writes_a_private_data_dir(
    umask_022: None, tmp_path: Path, docs: Path, rag_cli: Any
) -> None:
    data = tmp_path / "data"
    report = rag_cli.json("ingest", "--json", str(docs), data_dir=data)
    assert report["ingested"] == 2
    rag_cli.json("status", "--json", data_dir=data)
    assert too_open(data) == []
