"""A file watcher that cannot start never stops the daemon (issue 25, item 2).

watchdog's inotify backend walks the watched tree recursively when it starts: a folder nested
~1,100 deep (past Python's recursion limit) made it raise ``RecursionError``, which killed the
watch thread, so ``rag serve`` exited at every start. The daemon must log it, reconcile by
polling, and keep ingesting everyone else's files.

In process (the real ``WatchDaemon``, Qdrant Edge store and embedder): the deep tree is made
before the daemon starts, as after the restart in the issue.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingestion.daemon import WatchDaemon
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR

pytestmark = pytest.mark.timeout(300)


def _hostile() -> Any:
    # tests/ is not a package (importlib import mode): the deep-tree helpers by path.
    spec = importlib.util.spec_from_file_location(
        "hostile",
        Path(__file__).resolve().parents[1] / "rag" / "indexing" / "test_hostile_input.py",
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_daemon_survives_a_watcher_that_cannot_start(
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile = _hostile()
    index = Index(tmp_settings(evals={"after_sync": False}), embedder=embedder)
    index.open()
    tenants = index.data_dir / TENANTS_DIR
    hostile.make_deep(tenants / "acme", hostile.DEEP)
    (tenants / "globex").mkdir()
    monkeypatch.setattr(WatchDaemon, "POLL_SECONDS", 0.5, raising=False)
    daemon = WatchDaemon(index, [tenants], debounce_seconds=0.1, reconcile_interval=3600)
    try:
        daemon.start()
        assert daemon.ready.wait(120), f"the initial sync never finished: {daemon.stats()}"
        assert daemon.running, "the watch thread died"
        stats = daemon.stats()
        assert stats["watcher"].startswith("polling: RecursionError"), stats
        assert stats["sync_error"] is None, stats
        assert any("file watcher could not start" in r.getMessage() for r in caplog.records)

        # Another tenant's upload is still ingested (by the polling reconcile).
        (tenants / "globex" / "plans.md").write_text("# Plans\n\nThe lair opens in May.\n")
        deadline = time.monotonic() + 60
        while index.manifest.get(index.collection or "", "globex/plans.md") is None:
            assert daemon.running, "the watch thread died"
            assert time.monotonic() < deadline, f"never ingested: {daemon.stats()}"
            time.sleep(0.1)
        record = index.manifest.get(index.collection or "", "globex/plans.md")
        assert record is not None and record.status == "ok", record
    finally:
        daemon.stop()
        index.close()
        hostile.remove_deep(tenants / "acme")
