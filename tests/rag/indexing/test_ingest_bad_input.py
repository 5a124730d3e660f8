"""Bad input is recorded with a reason a person understands, never fatal, and retried once the file changes.

In process with ``Ingestor`` (real store, parsers and embedder) for each kind of bad file, plus
one run of the real ``rag ingest``/``rag status`` as an unprivileged user (permission denied
cannot be staged as root, which reads any file).
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.documents import document_id
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor, walk_folder
from rag.indexing.parsing import ParseError, read_file_bytes
from rag.indexing.status import collect_status

# A FIFO used to block the sync forever: fail instead of hanging the suite.
pytestmark = pytest.mark.timeout(180)

MAX_FILE_MB = 0.01  # 10 kB, so "too large" needs only a small file


def _pdfgen() -> Any:
    # tests/ is not a package (importlib import mode): load the shared PDF writer by path.
    spec = importlib.util.spec_from_file_location(
        "pdfgen", Path(__file__).resolve().parents[2] / "pdfgen.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("pw")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def valid_pdf(text: str) -> bytes:
    data: bytes = _pdfgen().make_pdf([[text]], title="Fixed")
    return data


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _symlink_cycle(p: Path) -> None:
    os.symlink("cycle-b", p)
    os.symlink(p.name, p.with_name("cycle-b"))


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda p: os.symlink(target, p)


@dataclass(frozen=True)
class BadFile:
    name: str
    make: Callable[[Path], None]
    reason: str  # regex the recorded reason must match

    def __str__(self) -> str:
        return self.name


BAD_FILES = [
    BadFile("empty.md", _write(b""), r"^empty file \(0 bytes\)"),
    BadFile(
        "blob.txt",
        _write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        r"^binary content in a \.txt file",
    ),
    BadFile(
        "broken.pdf",
        _write(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pa"),
        r"^corrupt or unreadable PDF",
    ),
    BadFile(
        "locked.pdf",
        lambda p: p.write_bytes(encrypted_pdf()),
        r"^encrypted PDF .*remove the password",
    ),
    BadFile(
        "latin1.txt",
        _write("Café crème brûlée\n".encode("latin-1")),
        r"^not valid UTF-8 .*save the file as UTF-8",
    ),
    BadFile(
        "huge.txt",
        _write(b"A line of perfectly fine text.\n" * 1000),
        r"^file is 0\.031 MB, over the 0\.01 MB limit \(raise ingestion\.max_file_mb",
    ),
    BadFile("loop.md", _symlink("loop.md"), r"^symlink loop"),
    # Two links pointing at each other (the second has no document extension: it is only skipped).
    BadFile("cycle-a.md", _symlink_cycle, r"^symlink loop"),
    BadFile(
        "dangling.md",
        _symlink("no-such-file.md"),
        r"^broken symlink: its target no-such-file\.md does not exist",
    ),
    BadFile("pipe.md", lambda p: os.mkfifo(p), r"^not a regular file \(a FIFO"),
]


@pytest.fixture()
def index(tmp_settings: Callable[..., Settings], embedder: Embedder) -> Iterator[Index]:
    idx = Index(tmp_settings(ingestion={"max_file_mb": MAX_FILE_MB}), embedder=embedder)
    idx.open()
    yield idx
    idx.close()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThe staging cluster is rebuilt every Sunday night.\n")
    return docs


def sources_in_store(index: Index) -> set[str]:
    assert index.collection is not None
    return {p.payload["source"] for p in index.store.scroll(index.collection)}


def texts_of(index: Index, source: str) -> list[str]:
    assert index.collection is not None
    return [p.payload["text"] for p in index.store.scroll(index.collection, {"source": source})]


def replace_with_good_content(path: Path, phrase: str) -> None:
    # Unlink first: the bad file may be a symlink, a FIFO or read-only.
    for p in (path, path.with_name("cycle-b")):
        if os.path.lexists(p):
            p.unlink()
    if path.suffix == ".pdf":
        path.write_bytes(valid_pdf(phrase))
    else:
        path.write_text(f"{phrase}\n")


@pytest.mark.parametrize("bad", BAD_FILES, ids=str)
def test_bad_file_is_recorded_not_fatal_and_retried_once_fixed(
    bad: BadFile, folder: Path, index: Index
) -> None:
    bad.make(folder / bad.name)

    report = Ingestor(index).sync_folder(folder)

    assert report.ingested == 1, "the good file beside the bad one must still be ingested"
    assert report.failed == 1 and [f["path"] for f in report.failures] == [bad.name]
    reason = report.failures[0]["reason"]
    assert re.search(bad.reason, reason), reason
    status = collect_status(index)
    assert status["failed"] == [{"path": bad.name, "reason": reason}]
    assert status["documents"] == 1
    assert sources_in_store(index) == {"good.md"}

    # Unchanged bad file: still failed on the next sync, nothing embedded.
    again = Ingestor(index).sync_folder(folder)
    assert (again.failed, again.embedded, again.ingested) == (1, 0, 0)

    phrase = f"The {bad.name} file now holds readable text about quarterly budgets."
    replace_with_good_content(folder / bad.name, phrase)
    fixed = Ingestor(index).sync_folder(folder)

    assert (fixed.failed, fixed.ingested) == (0, 1), fixed.failures
    assert collect_status(index)["failed"] == []
    assert any("quarterly budgets" in t for t in texts_of(index, bad.name))


def test_file_that_turns_bad_stops_serving_its_old_text(folder: Path, index: Index) -> None:
    (folder / "notes.txt").write_text("Office plants are watered on Mondays.\n")
    Ingestor(index).sync_folder(folder)
    assert texts_of(index, "notes.txt")

    (folder / "notes.txt").write_bytes(b"Office plants \xff\xfe are watered")
    report = Ingestor(index).sync_folder(folder)

    assert report.failed == 1 and "not valid UTF-8" in report.failures[0]["reason"]
    assert texts_of(index, "notes.txt") == []
    assert (
        index.store.count(
            index.collection or "", {"doc_id": document_id(index.settings.tenant, "notes.txt")}
        )
        == 0
    )


def test_unsupported_extensions_are_listed_as_skipped(folder: Path, index: Index) -> None:
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "archive.zip").write_bytes(b"PK\x03\x04")
    (folder / "Makefile").write_text("all:\n\ttrue\n")
    # Editor leftovers and hidden files are neither documents nor worth listing.
    (folder / "good.md~").write_text("backup")
    (folder / ".hidden.md").write_text("hidden")

    report = Ingestor(index).sync_folder(folder)

    assert (report.skipped, report.failed, report.ingested) == (3, 0, 1)
    skipped = {s["path"]: s["reason"] for s in collect_status(index)["skipped"]}
    assert set(skipped) == {"photo.png", "archive.zip", "Makefile"}
    assert skipped["photo.png"].startswith(
        "unsupported file type '.png': supported are .md, .markdown, .txt"
    )
    assert skipped["Makefile"].startswith("unsupported file type '(none)'")
    assert sources_in_store(index) == {"good.md"}

    (folder / "photo.png").unlink()
    Ingestor(index).sync_folder(folder)
    assert {s["path"] for s in collect_status(index)["skipped"]} == {"archive.zip", "Makefile"}


def test_file_vanishing_between_listing_and_reading(folder: Path, index: Index) -> None:
    """A real race, staged: the progress callback deletes the next file after the first is read."""
    (folder / "a-first.md").write_text("First file, read normally.\n")
    (folder / "b-vanishing.md").write_text("This file is deleted before it is read.\n")
    assert walk_folder(folder) == ["a-first.md", "b-vanishing.md", "good.md"]

    def delete_next(phase: str, done: int, total: int) -> None:
        if done == 1:
            (folder / "b-vanishing.md").unlink()

    report = Ingestor(index).sync_folder(folder, progress=delete_next)

    assert report.failures == [
        {"path": "b-vanishing.md", "reason": "file vanished while it was being read"}
    ]
    assert report.ingested == 2
    assert "b-vanishing.md" not in sources_in_store(index)

    # It comes back (changed): retried and ingested.
    (folder / "b-vanishing.md").write_text("Back again with new text about the cafeteria menu.\n")
    Ingestor(index).sync_folder(folder)
    assert collect_status(index)["failed"] == []
    assert any("cafeteria" in t for t in texts_of(index, "b-vanishing.md"))


def test_read_file_bytes_on_a_path_deleted_after_listing(folder: Path) -> None:
    listed = walk_folder(folder)
    (folder / listed[0]).unlink()
    with pytest.raises(ParseError, match=r"^file vanished while it was being read$"):
        read_file_bytes(folder / listed[0], 1_000_000)


# -- through the CLI, as an unprivileged user ----------------------------------------------


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_read_override() -> None:
    """In the child before exec: drop the capabilities that let root read any file.

    Switching to ``nobody`` does not work here: the venv's interpreter lives under /root
    (mode 0700). Root without these two capabilities is held to file modes like anyone else.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture()
def unprivileged_run(tmp_path: Path) -> dict[str, Any]:
    """Subprocess kwargs under which a mode-000 file really cannot be read."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0o000)
    kwargs: dict[str, Any] = {"preexec_fn": _drop_file_read_override} if os.geteuid() == 0 else {}
    try:
        check = subprocess.run(["cat", str(probe)], capture_output=True, **kwargs)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(
            f"cannot drop CAP_DAC_OVERRIDE here ({exc}), so permission denied cannot be staged"
        )
    if check.returncode == 0:
        pytest.skip(
            "this process can read a mode-000 file even without DAC capabilities: cannot stage the case"
        )
    return kwargs


def test_cli_records_permission_denied_and_other_bad_files(
    tmp_path: Path, unprivileged_run: dict[str, Any], rag_cli: Any
) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    (docs / "secret.md").write_text("# Salaries\n\nNot for everyone.\n")
    (docs / "secret.md").chmod(0o000)
    (docs / "empty.md").write_bytes(b"")
    (docs / "locked.pdf").write_bytes(encrypted_pdf())
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    report = rag_cli.json("ingest", "--json", str(docs), data_dir=data, **unprivileged_run)

    reasons = {f["path"]: f["reason"] for f in report["failures"]}
    assert set(reasons) == {"secret.md", "empty.md", "locked.pdf"}
    assert reasons["secret.md"].startswith("permission denied")
    assert (report["failed"], report["skipped"], report["ingested"]) == (3, 1, 0)

    status = rag_cli.json("status", "--json", data_dir=data, **unprivileged_run)
    assert {f["path"]: f["reason"] for f in status["failed"]} == reasons
    assert [s["path"] for s in status["skipped"]] == ["photo.png"]
    assert status["documents"] == 0 and status["chunks"] == 0

    # The human-readable status names each failure and its reason too.
    text = rag_cli.run("status", data_dir=data, **unprivileged_run).stdout
    assert re.search(r"failed: secret\.md: permission denied", text), text
