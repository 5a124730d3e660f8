"""Failure reasons name no absolute server path (issue 14, item 15): they reach API callers
(``GET /v1/documents``) and ``rag status``. A broken link's target is named relative to the
watched folder, or not at all when it lies outside; any other absolute path in a parser's or
a transform's message is relative to the folder or ``<path>``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.documents import ParsedDocument
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.parsing import ParseError, read_file_bytes
from rag.indexing.status import collect_status

# A path that starts at the root: "/" not inside a word or a relative path.
ABSOLUTE = re.compile(r"(?<![\w.~-])/\w")


class LeakyTransform:
    """A transform whose error message holds absolute paths (as OSError messages do)."""

    name = "leaky"

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def identity(self) -> dict[str, Any]:
        return {"version": 1}

    def warm_up(self) -> None:
        return None

    def run(self, document: ParsedDocument, source: str) -> ParsedDocument:
        if source == "leaky.md":
            a, b = self.paths
            raise OSError(f"cannot open '{a}' nor {b}/other.txt")
        return document


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "watched" / "docs"
    (docs / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (docs / "good.md").write_text("# Good\n\nThe staging cluster is rebuilt every Sunday.\n")
    (docs / "leaky.md").write_text("# Leaky\n\nA transform fails on this one.\n")
    # Broken links: to an absolute path inside the folder, outside it, and relative outside.
    os.symlink(docs / "sub" / "missing.md", docs / "inside-absolute.md")
    os.symlink(tmp_path / "elsewhere" / "gone.md", docs / "outside-absolute.md")
    os.symlink("../../elsewhere/gone.md", docs / "outside-relative.md")
    os.symlink("missing-too.md", docs / "sub" / "relative.md")
    return docs


@pytest.fixture()
def index(
    tmp_settings: Callable[..., Settings], embedder: Embedder, folder: Path, tmp_path: Path
) -> Iterator[Index]:
    settings = tmp_settings()
    idx = Index(
        settings,
        embedder=embedder,
        transforms=[LeakyTransform([folder / "leaky.md", settings.resolved_data_dir()])],
    )
    idx.open()
    yield idx
    idx.close()


def assert_no_server_path(reasons: dict[str, str], tmp_path: Path) -> None:
    for path, reason in reasons.items():
        assert str(tmp_path) not in reason, (path, reason)
        assert not ABSOLUTE.search(reason), (path, reason)


def test_ingestor_reasons_name_no_server_path(index: Index, folder: Path, tmp_path: Path) -> None:
    report = Ingestor(index).sync_folder(folder)

    reasons = {f["path"]: f["reason"] for f in report.failures}
    assert set(reasons) == {
        "inside-absolute.md",
        "outside-absolute.md",
        "outside-relative.md",
        "sub/relative.md",
        "leaky.md",
    }
    assert_no_server_path(reasons, tmp_path)
    assert (
        reasons["inside-absolute.md"] == "broken symlink: its target sub/missing.md does not exist"
    )
    assert reasons["sub/relative.md"] == (
        "broken symlink: its target sub/missing-too.md does not exist"
    )
    for outside in ("outside-absolute.md", "outside-relative.md"):
        assert reasons[outside] == (
            "broken symlink: its target (outside the watched folder) does not exist"
        )
    assert reasons["leaky.md"] == "could not parse (OSError: cannot open 'leaky.md' nor <path>)"
    status = {f["path"]: f["reason"] for f in collect_status(index)["failed"]}
    assert status == reasons
    # The next sync repeats the recorded reasons.
    again = Ingestor(index).sync_folder(folder)
    assert {f["path"]: f["reason"] for f in again.failures} == reasons


def test_read_file_bytes_names_a_broken_links_target_relative_to_the_root(
    folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(ParseError) as outside:
        read_file_bytes(folder / "outside-absolute.md", 1000, folder)
    assert str(tmp_path) not in str(outside.value)
    with pytest.raises(ParseError, match=r"its target missing-too\.md does not exist"):
        read_file_bytes(folder / "sub" / "relative.md", 1000)  # root: the link's own folder


def test_cli_ingest_and_status_reasons_name_no_server_path(
    folder: Path, tmp_path: Path, rag_cli: Any
) -> None:
    (folder / "leaky.md").unlink()  # no transform through the CLI
    data = tmp_path / "data"
    report = rag_cli.json("ingest", "--json", str(folder), data_dir=data)
    reasons = {f["path"]: f["reason"] for f in report["failures"]}
    assert len(reasons) == 4
    assert_no_server_path(reasons, tmp_path)
    status = rag_cli.json("status", "--json", data_dir=data)
    assert {f["path"]: f["reason"] for f in status["failed"]} == reasons
