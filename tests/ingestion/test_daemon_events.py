"""The watch daemon as a user runs it: ``rag watch DIR`` in a subprocess, watched through
``rag status --json`` / ``rag export`` (which ask the running daemon over its control API).

One daemon serves the whole module (a start loads the model). Each test works on its own
files, waits (with a deadline) for the daemon to show the expected state, then checks the
same through the CLI. The last test stops it with SIGTERM. A restart after changes made
while it was down, and SIGINT, are in test_daemon_crash.py (each start loads the model).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Rows = list[dict[str, Any]]

pytestmark = pytest.mark.timeout(300)

DEBOUNCE = 0.6  # seconds a path must be quiet before the daemon syncs it


def texts(rows: Rows, source: str) -> list[str]:
    return [r["text"] for r in rows if r["source"] == source]


def sources(rows: Rows) -> set[str]:
    return {r["source"] for r in rows}


def assert_consistent(rows: Rows, status: dict[str, Any] | None) -> None:
    """Export and status agree: no duplicate chunks, none without a recorded document."""
    assert status is not None
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert status["chunks"] == len(rows)
    assert status["documents"] == len(sources(rows))


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, start_daemon: Callable[..., Any]
) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("watch")
    folder = base / "docs"
    folder.mkdir()
    (folder / "seed.md").write_text(
        "# Seed\n\nThe seed document exists before the daemon starts.\n"
    )
    d = start_daemon(folder, base / "data", env={"RAG_INGESTION__DEBOUNCE_SECONDS": str(DEBOUNCE)})
    d.wait_export(lambda rows: sources(rows) == {"seed.md"}, "the initial sync of seed.md")
    yield d
    if d.running:
        d.stop()


@pytest.fixture()
def running(daemon: Any) -> Any:
    """The module's daemon, (re)started if an earlier test stopped it."""
    if not daemon.running:
        daemon.start()
    return daemon


def totals(d: Any) -> dict[str, int]:
    stats: dict[str, int] = d.wait_idle()["daemon"]
    return stats


def test_created_file_is_indexed(running: Any) -> None:
    (running.folder / "created.md").write_text(
        "# Created\n\nThe kettle in room 4 is descaled every Friday.\n"
    )

    running.wait_export(
        lambda rows: any("kettle" in t for t in texts(rows, "created.md")), "created.md indexed"
    )

    rows = running.cli_export()
    assert any("descaled every Friday" in t for t in texts(rows, "created.md"))
    assert_consistent(rows, running.api_status())


def test_modified_file_replaces_its_chunks(running: Any) -> None:
    path = running.folder / "modified.md"
    path.write_text("# Parking\n\nVisitor parking is on level minus two.\n")
    running.wait_export(lambda rows: bool(texts(rows, "modified.md")), "modified.md v1 indexed")

    path.write_text(
        "# Parking\n\nVisitor parking moved to the north lot next to the loading dock.\n"
    )

    def only_v2(rows: Rows) -> bool:
        t = texts(rows, "modified.md")
        return bool(t) and all("north lot" in x for x in t)

    running.wait_export(only_v2, "modified.md showing only its new text")
    rows = running.cli_export()
    assert not any("minus two" in t for t in texts(rows, "modified.md"))
    assert_consistent(rows, running.api_status())


def test_deleted_file_leaves_the_index(running: Any) -> None:
    path = running.folder / "deleted.md"
    path.write_text("# Temporary\n\nThis note about the fire drill will be deleted.\n")
    running.wait_export(lambda rows: bool(texts(rows, "deleted.md")), "deleted.md indexed")

    path.unlink()

    running.wait_export(
        lambda rows: "deleted.md" not in sources(rows), "deleted.md gone from the index"
    )
    rows, status = running.cli_export(), running.cli_status()
    assert "deleted.md" not in sources(rows)
    assert all(f["path"] != "deleted.md" for f in status["failed"] + status["skipped"])
    assert_consistent(rows, status)


def test_moved_and_renamed_file_keeps_its_vectors(running: Any) -> None:
    (running.folder / "inbox").mkdir()
    old = running.folder / "inbox" / "draft.md"
    old.write_text("# Travel\n\nTrain tickets over 200 euros need approval from a director.\n")
    rows = running.wait_export(
        lambda rows: bool(texts(rows, "inbox/draft.md")), "inbox/draft.md indexed"
    )
    old_texts = sorted(texts(rows, "inbox/draft.md"))
    before = totals(running)

    (running.folder / "policies").mkdir()
    old.rename(running.folder / "policies" / "travel.md")

    running.wait_export(
        lambda rows: (
            "inbox/draft.md" not in sources(rows) and bool(texts(rows, "policies/travel.md"))
        ),
        "the file indexed under its new path only",
    )
    rows = running.cli_export()
    assert sorted(texts(rows, "policies/travel.md")) == old_texts
    after = totals(running)
    assert after["chunks_embedded"] == before["chunks_embedded"], (
        "a rename must reuse the stored vectors"
    )
    assert_consistent(rows, running.api_status())


def test_renamed_directory_moves_every_file(running: Any) -> None:
    team = running.folder / "team-a"
    (team / "nested").mkdir(parents=True)
    (team / "roster.md").write_text("# Roster\n\nAlice and Bob share the Monday on-call shift.\n")
    (team / "nested" / "rituals.md").write_text(
        "# Rituals\n\nRetrospectives happen every second Thursday.\n"
    )
    running.wait_export(
        lambda rows: {"team-a/roster.md", "team-a/nested/rituals.md"} <= sources(rows),
        "team-a indexed",
    )
    before = totals(running)

    team.rename(running.folder / "team-b")

    def moved(rows: Rows) -> bool:
        s = sources(rows)
        return {"team-b/roster.md", "team-b/nested/rituals.md"} <= s and not any(
            x.startswith("team-a/") for x in s
        )

    running.wait_export(moved, "team-a/* re-indexed as team-b/*")
    rows, status = running.cli_export(), running.api_status()
    assert any("Monday on-call" in t for t in texts(rows, "team-b/roster.md"))
    assert not any(r["source"].startswith("team-a/") for r in rows)
    assert totals(running)["chunks_embedded"] == before["chunks_embedded"]
    assert_consistent(rows, status)


def test_deleted_directory_takes_its_files_along(running: Any) -> None:
    doomed = running.folder / "doomed"
    (doomed / "deep" / "deeper").mkdir(parents=True)
    (doomed / "one.md").write_text("# One\n\nThe old wiki lives here until March.\n")
    (doomed / "deep" / "deeper" / "two.txt").write_text(
        "Legacy printers are configured by IT only.\n"
    )
    running.wait_export(
        lambda rows: {"doomed/one.md", "doomed/deep/deeper/two.txt"} <= sources(rows),
        "doomed/ indexed",
    )

    shutil.rmtree(doomed)

    running.wait_export(
        lambda rows: not any(s.startswith("doomed/") for s in sources(rows)), "doomed/* removed"
    )
    rows, status = running.cli_export(), running.api_status()
    assert not any(r["source"].startswith("doomed/") for r in rows)
    assert_consistent(rows, status)


def test_editor_save_via_temp_file_and_rename(running: Any) -> None:
    target = running.folder / "editor.md"
    target.write_text("# Lunch\n\nThe canteen opens at 11:30.\n")
    running.wait_export(lambda rows: bool(texts(rows, "editor.md")), "editor.md v1 indexed")
    before = totals(running)

    # What many editors do on save: write a temp file beside the target, then rename it over.
    for tmp_name in (".editor.md.swp", "editor.md.tmp"):
        tmp = running.folder / tmp_name
        tmp.write_text(f"# Lunch\n\nThe canteen now opens at noon (saved via {tmp_name}).\n")
        os.replace(tmp, target)
        running.wait_export(
            lambda rows, name=tmp_name: any(name in t for t in texts(rows, "editor.md")),
            f"save via {tmp_name}",
        )

    rows, status = running.cli_export(), running.cli_status()
    assert texts(rows, "editor.md") and all("editor.md.tmp" in t for t in texts(rows, "editor.md"))
    listed = {f["path"] for f in status["failed"] + status["skipped"]} | sources(rows)
    assert not {".editor.md.swp", "editor.md.tmp"} & listed, (
        "temp files must not be indexed or listed"
    )
    assert totals(running)["files_ingested"] - before["files_ingested"] == 2  # one ingest per save
    assert_consistent(rows, status)


def test_burst_of_writes_is_ingested_once_with_the_settled_content(running: Any) -> None:
    path = running.folder / "churn.md"
    before = totals(running)

    # Writes 25 ms apart for ~1.5 s: longer than a sync takes, so a daemon that syncs before
    # the file settles (e.g. on the folder's own "modified" events) ingests it several times.
    gaps: list[float] = []
    last = time.monotonic()
    for i in range(60):
        path.write_text(f"# Counter\n\nThe counter value is {i} and version marker v{i}-of-60.\n")
        time.sleep(0.025)
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    assert max(gaps) < DEBOUNCE, (
        f"the machine stalled the writer for {max(gaps):.2f}s: not a burst any more"
    )

    def settled(rows: Rows) -> bool:
        return any("v59-of-60" in t for t in texts(rows, "churn.md"))

    running.wait_export(settled, "churn.md at its final version")
    rows = running.cli_export()
    assert texts(rows, "churn.md") == [t for t in texts(rows, "churn.md") if "v59-of-60" in t], (
        "stale chunks remain"
    )
    after = totals(running)
    assert after["files_ingested"] - before["files_ingested"] == 1, (
        "the burst must be ingested once"
    )
    assert after["chunks_embedded"] - before["chunks_embedded"] == len(texts(rows, "churn.md"))
    assert_consistent(rows, running.api_status())


def test_bad_files_are_recorded_and_retried_while_the_daemon_keeps_going(running: Any) -> None:
    bad = running.folder / "bad"
    bad.mkdir()
    (bad / "empty.md").write_bytes(b"")
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02\x03 not text")
    (bad / "latin1.txt").write_bytes("Caf\u00e9".encode("latin-1"))
    (bad / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (bad / "fine.md").write_text(
        "# Fine\n\nThe good file next to the bad ones is indexed anyway.\n"
    )

    def recorded(status: dict[str, Any] | None) -> bool:
        return status is not None and {f["path"] for f in status["failed"]} >= {
            "bad/empty.md",
            "bad/binary.txt",
            "bad/latin1.txt",
        }

    running.wait_export(lambda rows: bool(texts(rows, "bad/fine.md")), "bad/fine.md indexed")
    running.wait_export(
        lambda rows: recorded(running.api_status()), "the bad files recorded as failed"
    )
    status = running.cli_status()
    reasons = {f["path"]: f["reason"] for f in status["failed"]}
    assert reasons["bad/empty.md"].startswith("empty file")
    assert reasons["bad/binary.txt"].startswith("binary content")
    assert reasons["bad/latin1.txt"].startswith("not valid UTF-8")
    assert {s["path"] for s in status["skipped"]} >= {"bad/diagram.png"}

    # Fixing a file is enough: the daemon retries it on the change.
    (bad / "empty.md").write_text("# Filled\n\nThe empty file now has words about the library.\n")
    running.wait_export(
        lambda rows: any("library" in t for t in texts(rows, "bad/empty.md")), "fixed file indexed"
    )
    status = running.api_status()
    assert "bad/empty.md" not in {f["path"] for f in status["failed"]}
    assert running.running


def test_daemon_goes_quiet_after_syncing(running: Any) -> None:
    """Its own reads (open/close events) must not make it sync again and again."""
    (running.folder / "quiet.md").write_text(
        "# Quiet\n\nNothing should re-trigger after this is indexed.\n"
    )
    running.wait_export(lambda rows: bool(texts(rows, "quiet.md")), "quiet.md indexed")
    syncs = totals(running)["syncs"]
    # An absence can only be observed over a window: 3 debounce periods and more.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        status = running.api_status()
        assert status["daemon"]["syncs"] == syncs and status["daemon"]["pending_paths"] == 0, (
            status["daemon"]
        )
        time.sleep(0.1)


def test_sigterm_stops_cleanly(running: Any) -> None:
    code = running.stop(signal.SIGTERM)
    assert code == 0, running.log()
    assert not (running.data_dir / "daemon.json").exists()
    assert "stopped cleanly" in running.log()
