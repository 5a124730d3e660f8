"""kill -9 in the middle of a large ingest, files changed while it is down, then a restart:
the index must equal a clean ingest of the final folder (same chunk ids and payloads, no
duplicates, no orphans). Both sides are read with ``rag export``.

Where the large ingest's kill lands is chance; the orphan case needs it to land between a
group's upsert and its manifest write, so a second test kills the daemon exactly there.

This is also the suite's "changes made while the daemon was down are caught up on restart"
case, and its SIGINT stop (SIGTERM is in test_daemon_events.py): each daemon start loads the
model, so starts are shared between cases.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor, walk_folder
from tests.ingestion.conftest import START_TIMEOUT

pytestmark = pytest.mark.timeout(420)

FILES = 300
GROUP = 16  # files of one chunk each: a manifest commit every 16 files

_WORDS = [
    "invoice",
    "ledger",
    "audit",
    "quarterly",
    "forecast",
    "budget",
    "vendor",
    "contract",
    "renewal",
    "shipment",
    "warehouse",
    "pallet",
    "freight",
    "customs",
    "tariff",
    "compliance",
    "policy",
    "review",
    "approval",
    "signature",
    "deadline",
    "milestone",
    "roadmap",
    "release",
    "sprint",
    "backlog",
    "incident",
    "outage",
    "latency",
    "throughput",
    "replica",
    "shard",
    "cluster",
    "failover",
    "backup",
    "restore",
    "snapshot",
    "archive",
    "retention",
    "encryption",
    "rotation",
    "certificate",
    "gateway",
    "firewall",
    "subnet",
    "router",
    "printer",
    "badge",
    "visitor",
    "parking",
    "canteen",
    "kettle",
    "meeting",
    "agenda",
    "minutes",
    "summary",
    "appendix",
    "glossary",
]


def write_corpus(folder: Path, count: int) -> None:
    rng = random.Random(20240611)
    for i in range(count):
        sub = folder / f"part-{i % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        # Short notes: embedding time is what the ingest spends, and a few hundred small
        # files still take many group commits to get through.
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 12)))
        (sub / f"note-{i:04d}.txt").write_text(f"Note {i}: {body}.\n")


def recorded_sources(data_dir: Path) -> set[str]:
    """Files the manifest records as ingested, read the way `sqlite3 -readonly` would."""
    path = data_dir / "manifest.sqlite"
    if not path.exists():
        return set()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return {row[0] for row in db.execute("SELECT source FROM files WHERE status='ok'")}
        finally:
            db.close()
    except sqlite3.OperationalError:  # created but no table yet
        return set()


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r["id"])


def test_kill_9_mid_ingest_and_offline_changes_then_restart_equals_a_clean_ingest(
    tmp_path: Path,
    start_daemon: Callable[..., Any],
    poll: Callable[..., Any],
    rag_cli: Any,
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
) -> None:
    folder, crashed = tmp_path / "docs", tmp_path / "crashed"
    write_corpus(folder, FILES)
    order = walk_folder(folder)  # the order the sync works through
    assert len(order) == FILES

    daemon = start_daemon(
        folder, crashed, env={"RAG_INGESTION__GROUP_CHUNKS": str(GROUP)}, wait_ready=False
    )
    # Partial progress: a few groups committed, most of the folder still to go.
    done = poll(
        lambda: (n := len(recorded_sources(crashed))) >= 3 * GROUP and n,
        "the first groups recorded in the manifest",
        timeout=240,
        every=0.02,
    )
    daemon.kill9()
    recorded = recorded_sources(crashed)
    assert done <= len(recorded) < FILES - 2 * GROUP, (
        f"ingest was too far along when killed ({len(recorded)}/{FILES}); the test needs a mid-way kill"
    )
    assert (crashed / "daemon.json").exists(), (
        "a killed daemon cannot clean up; the restart must cope"
    )

    # While it is down: edits around the kill point (the group in flight may have written
    # chunks it never recorded) and among files already recorded.
    n = len(recorded)
    in_flight = [s for s in order if s not in recorded][:8]
    settled = sorted(recorded)[:4]
    for source in (in_flight[0], in_flight[1], settled[0]):
        (folder / source).unlink()
    for source in (in_flight[2], in_flight[3], settled[1]):
        (folder / source).write_text(
            f"Rewritten after the crash: {source} now covers the disaster recovery drill.\n"
        )
    (folder / in_flight[4]).rename(folder / "part-0" / "renamed-in-flight.txt")
    (folder / settled[2]).rename(folder / "renamed-settled.txt")
    (folder / "added-after-crash.md").write_text(
        "# Added\n\nA file created while the daemon was down.\n"
    )

    daemon.start()  # returns once the start-up reconcile has finished
    after_restart = daemon.cli_export()
    status = daemon.cli_status()
    assert daemon.stop(signal.SIGINT) == 0, daemon.log()
    assert not (crashed / "daemon.json").exists(), (
        "a clean stop removes daemon.json (even a stale one)"
    )
    assert "stopped cleanly" in daemon.log()

    # The reference: a clean ingest of the final folder into a fresh data dir.
    clean_settings = tmp_settings("clean")
    clean_index = Index(clean_settings, embedder=embedder)
    clean_index.open()
    try:
        report = Ingestor(clean_index).sync_folder(folder)
    finally:
        clean_index.close()
    assert report.failed == 0 and report.ingested == len(walk_folder(folder))
    clean = rag_cli.export(clean_settings.data_dir)

    ids = [r["id"] for r in after_restart]
    assert not [i for i, c in Counter(ids).items() if c > 1], (
        "duplicate chunk ids after the restart"
    )
    files_now = set(walk_folder(folder))
    assert {r["source"] for r in after_restart} == files_now, "orphaned or missing documents"
    assert comparable(after_restart) == comparable(clean)
    assert status["failed"] == [] and status["documents"] == len(files_now)
    assert status["chunks"] == len(after_restart)
    assert recorded_sources(crashed) == files_now
    # Only what was not recorded before the kill (less 3 deleted/renamed away), plus the 2
    # renamed, 1 added and 1 rewritten recorded file, was ingested again.
    assert status["daemon"]["files_ingested"] == FILES - n + 1


# Imported by the daemon's interpreter at start (``sitecustomize`` on its PYTHONPATH): the
# process SIGKILLs itself once the CRASH_AT_RECORD-th group of files is upserted and flushed
# but not yet recorded in the manifest — the one moment a crash leaves chunks no record names.
CRASH_HOOK = """
import os, signal
from rag.indexing.manifest import Manifest

_put_many = Manifest.put_many
_groups = [0]

def put_many(self, records):
    records = list(records)
    if records and all(r.status == "ok" for r in records):
        _groups[0] += 1
        if _groups[0] == int(os.environ["CRASH_AT_RECORD"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return _put_many(self, records)

Manifest.put_many = put_many
"""


def test_chunks_upserted_but_not_recorded_at_a_kill_9_are_removed_on_restart(
    tmp_path: Path, start_daemon: Callable[..., Any], rag_cli: Any
) -> None:
    folder, data_dir, hook = tmp_path / "docs", tmp_path / "data", tmp_path / "hook"
    write_corpus(folder, 6)
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    group = {"RAG_INGESTION__GROUP_CHUNKS": "2"}  # one-chunk files: two files a group
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    crashing = start_daemon(
        folder,
        data_dir,
        env={**group, "CRASH_AT_RECORD": "2", "PYTHONPATH": path},
        wait_ready=False,
    )
    assert crashing.proc is not None
    assert crashing.proc.wait(START_TIMEOUT) == -signal.SIGKILL, crashing.log()

    # The second group's chunks are in the store; the manifest names only the first group.
    stored = {r["source"] for r in rag_cli.export(data_dir)}
    recorded = recorded_sources(data_dir)
    in_flight = sorted(stored - recorded)
    assert len(recorded) == 2 and len(in_flight) == 2, (recorded, stored)

    # While it is down: an in-flight file goes (its chunks are now orphans: no file, no
    # record), the other is rewritten, and a recorded file goes too.
    (folder / in_flight[0]).unlink()
    (folder / in_flight[1]).write_text("Rewritten while the daemon was down: a kettle note.\n")
    (folder / sorted(recorded)[0]).unlink()

    daemon = start_daemon(folder, data_dir, env=group)  # returns after the start-up reconcile
    rows = daemon.cli_export()
    assert daemon.stop(signal.SIGINT) == 0, daemon.log()
    files_now = set(walk_folder(folder))
    assert in_flight[0] not in {r["source"] for r in rows}, "the orphan's chunks survived"
    assert {r["source"] for r in rows} == files_now
    assert len(rows) == len(files_now), "one chunk per file, no duplicates"
    texts = {r["source"]: r["text"] for r in rows}
    assert "Rewritten while the daemon was down" in texts[in_flight[1]]
    assert recorded_sources(data_dir) == files_now
