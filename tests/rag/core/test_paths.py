"""ingestion.exclude: .gitignore-style patterns decide which files are documents.

The matcher is checked against a table of paths; then a real sync (real embedder and store)
shows that an excluded file is never indexed, that excluding one already indexed removes it
(full and targeted sync), and that a bad pattern fails at config load with the key named.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.paths import PathFilter
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor, walk_folder

CASES = [
    # pattern, path, excluded
    ("_sources/", "_sources/library/heapq.rst.txt", True),
    ("_sources/", "library/_sources/x.txt", True),  # unanchored: a folder name at any depth
    ("_sources/", "_sources.txt", False),  # trailing slash: folders only
    ("_sources", "_sources.txt", False),
    ("_sources", "a/_sources", True),  # a file named like it, too
    ("*.txt", "notes.txt", True),
    ("*.txt", "a/b/notes.txt", True),
    ("*.txt", "notes.txt.md", False),
    ("/drafts", "drafts/plan.md", True),
    ("/drafts", "team/drafts/plan.md", False),  # anchored at the watched folder
    ("docs/_static", "docs/_static/a.html", True),
    ("docs/_static", "x/docs/_static/a.html", False),  # a slash anchors it
    ("**/tmp/*.md", "tmp/a.md", True),
    ("**/tmp/*.md", "x/y/tmp/a.md", True),
    ("**/tmp/*.md", "x/y/tmp/z/a.md", False),
    ("logs/**", "logs/2026/12/a.md", True),
    ("draft-?.md", "draft-1.md", True),
    ("draft-?.md", "draft-12.md", False),
    ("draft-[0-9].md", "draft-7.md", True),
    ("draft-[!0-9].md", "draft-7.md", False),
    ("genindex*.html", "genindex-A.html", True),
    ("genindex*.html", "library/genindex.html", True),
    ("a+b(1).md", "a+b(1).md", True),  # regex characters are literal
    ("a+b(1).md", "aab1.md", False),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), CASES)
def test_patterns_match_like_gitignore(pattern: str, path: str, excluded: bool) -> None:
    assert PathFilter([pattern]).excludes(path) is excluded


@pytest.mark.parametrize("pattern", ["", "   ", "!keep.md", "/", "# comment"])
def test_a_pattern_that_cannot_mean_anything_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"ingestion\.exclude"):
        PathFilter([pattern])


def test_a_bad_pattern_fails_at_config_load(tmp_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="exclude"):
        tmp_settings(ingestion={"exclude": ["!important.md"]})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _sources(index: Index) -> set[str]:
    assert index.collection is not None
    return {p.payload["source"] for p in index.store.scroll(index.collection)}


def test_excluded_files_are_never_indexed_and_excluding_removes_them(
    tmp_path: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    _write(docs / "library" / "heapq.html", "<h1>heapq</h1><p>Heap queue algorithm.</p>")
    _write(docs / "_sources" / "library" / "heapq.rst.txt", "heapq --- Heap queue algorithm")
    _write(docs / "notes.bak.txt", "Backups are kept for thirty five days.")

    plain = Index(tmp_settings("plain"), embedder=embedder)
    plain.open()
    try:
        Ingestor(plain).sync_folder(docs)
        assert _sources(plain) == {
            "library/heapq.html",
            "_sources/library/heapq.rst.txt",
            "notes.bak.txt",
        }
        # Now exclude what is indexed: the next full sync removes it (nothing else changes).
        plain.settings.ingestion.exclude = ["_sources/", "*.bak.txt"]
        report = Ingestor(plain).sync_folder(docs)
        assert report.deleted == 2 and report.embedded == 0
        assert _sources(plain) == {"library/heapq.html"}
        assert {r.source for r in plain.manifest.records(plain.collection or "")} == {
            "library/heapq.html"
        }
    finally:
        plain.close()

    settings = tmp_settings("excluding", ingestion={"exclude": ["_sources/"]})
    assert sorted(walk_folder(docs, exclude=settings.ingestion.path_filter())) == [
        "library/heapq.html",
        "notes.bak.txt",
    ]
    index = Index(settings, embedder=embedder)
    index.open()
    try:
        Ingestor(index).sync_folder(docs)
        assert _sources(index) == {"library/heapq.html", "notes.bak.txt"}
        # A targeted sync (what the daemon does on a file event) honours it too, and a
        # pattern added later removes the file on its next event.
        Ingestor(index).sync_paths(docs, ["_sources/library/heapq.rst.txt"])
        assert "_sources/library/heapq.rst.txt" not in _sources(index)
        index.settings.ingestion.exclude = ["_sources/", "notes.*"]
        report = Ingestor(index).sync_paths(docs, ["notes.bak.txt"])
        assert report.deleted == 1
        assert _sources(index) == {"library/heapq.html"}
        assert (docs / "notes.bak.txt").exists()  # excluding never touches the file itself
    finally:
        index.close()
