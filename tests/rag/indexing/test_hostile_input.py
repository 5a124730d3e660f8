"""Hostile input: no single file or folder stops ingestion for everyone (issue 25, items 2-4).

In process with ``Ingestor`` (real store, parsers, tokenizer and embedder):

- a folder nested ~1,100 deep (past Python's recursion limit) is skipped with its reason, and
  the other tenants' files beside it are still ingested;
- pathological files (quadratic shapes for the old parsers and detectors) finish quickly or
  fail with a reason, and a normal file queued after them is ingested;
- a file over ``ingestion.parse_timeout_s`` is failed with the reason and recorded, so the
  next sync does not retry it until it changes or the limit is raised;
- a .docx zip bomb fails with a reason, whatever its zip directory claims.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag.core.config import Settings
from rag.indexing import ingest
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor
from rag.indexing.status import collect_status

pytestmark = pytest.mark.timeout(300)

DEEP = 1100  # folders: past sys.getrecursionlimit() (1000), where a recursive walk dies


def make_deep(base: Path, depth: int, name: str = "d") -> Path:
    """``base/d/d/.../d`` ``depth`` folders deep, made one by one (``os.makedirs`` recurses)."""
    base.mkdir(parents=True, exist_ok=True)
    path = base
    for _ in range(depth):
        path = path / name
        path.mkdir(exist_ok=True)
    return path


def remove_deep(base: Path) -> None:
    """Remove a tree bottom-up without recursion (``shutil.rmtree`` recurses and would fail)."""
    stack = [base]
    order: list[Path] = []
    while stack:
        folder = stack.pop()
        order.append(folder)
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            else:
                os.unlink(entry.path)
    for folder in reversed(order):
        folder.rmdir()


@pytest.fixture()
def index(tmp_settings: Callable[..., Settings], embedder: Embedder) -> Iterator[Index]:
    idx = Index(tmp_settings(), embedder=embedder)
    idx.open()
    yield idx
    idx.close()


def sources_in_store(index: Index) -> set[str]:
    assert index.collection is not None
    return {p.payload["source"] for p in index.store.scroll(index.collection)}


# -- item 2: a deep folder -----------------------------------------------------------------
def test_a_folder_too_deep_is_skipped_and_other_tenants_are_still_ingested(index: Index) -> None:
    tenants = index.data_dir / TENANTS_DIR
    bottom = make_deep(tenants / "acme", DEEP)
    (bottom / "deep.md").write_text("# Deep\n\nNobody reads this far down.\n")
    (tenants / "acme" / "near.md").write_text("# Near\n\nAcme's badges are blue.\n")
    (tenants / "globex").mkdir()
    (tenants / "globex" / "plans.md").write_text("# Plans\n\nThe volcano lair opens in May.\n")
    try:
        report = Ingestor(index).sync_folder(tenants)

        assert sources_in_store(index) == {"acme/near.md", "globex/plans.md"}
        assert report.ingested == 2 and report.failed == 0
        limit = index.settings.ingestion.max_depth
        # Folders are counted below the tenant's own: acme/ + 32 folders are walked.
        folder = "acme/" + "/".join(["d"] * (limit + 1))
        skipped = collect_status(index)["skipped"]
        assert [s["path"] for s in skipped] == [folder]
        assert f"ingestion.max_depth ({limit} folders)" in skipped[0]["reason"]

        # The next sync leaves the record alone (nothing churns) and still ingests.
        (tenants / "globex" / "more.md").write_text("# More\n\nThe lair has a monorail.\n")
        again = Ingestor(index).sync_folder(tenants)
        assert (again.ingested, again.deleted, again.skipped) == (1, 0, 1)
        # A targeted sync of a path inside the deep folder (a watcher event) skips it too.
        deep_source = bottom.relative_to(tenants).as_posix() + "/deep.md"
        targeted = Ingestor(index).sync_paths(tenants, [deep_source, "globex/more.md"])
        assert targeted.ingested == 0 and "acme/" + deep_source not in sources_in_store(index)
        assert [s["path"] for s in collect_status(index)["skipped"]] == [folder]
    finally:
        remove_deep(tenants / "acme")


def test_the_walk_is_not_recursive_and_reports_what_it_did_not_enter(tmp_path: Path) -> None:
    bottom = make_deep(tmp_path / "docs", DEEP)
    (bottom / "deep.md").write_text("deep")
    (tmp_path / "docs" / "top.md").write_text("top")
    try:
        unlimited = ingest.scan_folder(tmp_path / "docs")
        assert unlimited.files == ["top.md", "/".join(["d"] * DEEP) + "/deep.md"]
        capped = ingest.scan_folder(tmp_path / "docs", max_depth=3)
        assert capped.files == ["top.md"]
        assert [p for p, _ in capped.skipped] == ["d/d/d/d"]
    finally:
        remove_deep(tmp_path / "docs")
