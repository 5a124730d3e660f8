"""Lost watcher events (a kernel queue overflow) are caught up by a reconcile."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from ingestion.daemon import WatchDaemon
from rag.core.config import load_settings
from rag.indexing.index import Index


def _wait(cond, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_overflow_warning_triggers_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("first document about tea")
    index = Index(load_settings(overrides={"data_dir": str(tmp_path / "data")}))
    index.open()
    daemon = WatchDaemon(index, [docs], debounce_seconds=0.05)
    daemon.start()
    try:
        assert daemon.ready.wait(120)
        # Events for the next file are lost, as in an overflow.
        monkeypatch.setattr(daemon, "mark_dirty", lambda root, rel: None)
        (docs / "b.txt").write_text("second document about coffee")
        time.sleep(0.5)
        assert index.manifest.get(index.collection or "", "b.txt") is None
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert _wait(lambda: index.manifest.get(index.collection or "", "b.txt") is not None)
        assert index.store.count(index.collection or "") == 2
    finally:
        daemon.stop()
        index.close()
