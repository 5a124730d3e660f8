"""A lost vector store is noticed (issue 14, item 4): ``<data_dir>/index`` deleted under a
running server makes ``/readyz`` 503, the shutdown still ends cleanly, and the next start
re-ingests what the manifest says is indexed but the store no longer holds."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import KeyStore
from app.api_server import ApiServer
from app.runtime import Runtime
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor

QUESTION = "How many days of paid vacation do employees get?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(probe: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


@pytest.fixture()
def settings(tmp_settings: Callable[..., Settings]) -> Settings:
    return tmp_settings(evals={"after_sync": False}, generation={"chain": ["extractive"]})


def _runtime(
    settings: Settings, embedder: Embedder, docs: Path, lines: list[str]
) -> tuple[Runtime, str]:
    port = _free_port()
    runtime = Runtime(
        settings,
        [docs],
        reconcile_interval=3600,
        api=ApiServer(settings, "127.0.0.1", port, echo=lines.append),
        index=Index(settings, embedder=embedder),
        echo=lines.append,
    )
    return runtime, f"http://127.0.0.1:{port}"


def _idle(runtime: Runtime) -> dict[str, Any]:
    assert runtime.daemon is not None
    daemon = runtime.daemon
    return dict(_until(lambda: (s := daemon.stats())["idle"] and s, "the daemon idle"))


def test_a_deleted_store_is_noticed_and_rebuilt_on_restart(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vacation.md").write_text(
        "# Vacation\n\nEmployees get twenty-five days of paid vacation per year.\n"
    )
    data_dir = settings.resolved_data_dir()
    lines: list[str] = []
    first, url = _runtime(settings, embedder, docs, lines)
    first.start()
    try:
        _idle(first)
        _until(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, "ready")

        shutil.rmtree(data_dir / "index")
        (docs / "new.md").write_text("# New\n\nDeploys go out on Tuesdays after the board.\n")
        r = _until(
            lambda: (
                (r := httpx.get(url + "/readyz", timeout=10)).status_code == 503
                and "ingestion: failing" in r.text
                and r
            ),
            "/readyz 503 naming the failing sync",
        )
        message = r.json()["error"]["message"]
        assert "store: unreachable" in message and "the last sync failed" in message, message
    finally:
        first.stop()  # the store's files are gone: the shutdown still ends cleanly
    assert lines[-1] == "stopped cleanly", lines[-3:]

    second, url = _runtime(settings, embedder, docs, lines)
    second.start()
    try:
        stats = _idle(second)
        assert stats["files_ingested"] == 2 and stats["chunks_embedded"] >= 2, stats
        status = second.status()
        assert status["documents"] == 2 and status["chunks"] >= 2, status
        key = KeyStore(data_dir).local_key(settings.tenant)
        _until(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, "ready")
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as c:
            docs_listed = c.get("/v1/documents").json()["documents"]
            assert {(d["path"], d["status"]) for d in docs_listed} == {
                ("vacation.md", "ok"),
                ("new.md", "ok"),
            }
            answer = c.post("/v1/query", json={"question": QUESTION}).json()
        assert not answer["abstained"], answer
        assert [cite["source"] for cite in answer["citations"]] == ["vacation.md"]
    finally:
        second.stop()


def test_opening_an_emptied_store_marks_its_files_for_redo(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    """In process, no daemon: the next sync after the open re-embeds what the store lost, and
    an intact store costs nothing on open."""
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "vacation.md").write_text("# Vacation\n\nEmployees get twenty-five days per year.\n")
    (docs / "guides" / "deploy.md").write_text("# Deploy\n\nDeploys go out on Tuesdays.\n")
    index = Index(settings, embedder=embedder)
    index.open()
    assert Ingestor(index).sync_folder(docs).ingested == 2
    index.close()

    index = Index(settings, embedder=embedder)
    index.open()
    assert Ingestor(index).sync_folder(docs).unchanged == 2, "an intact store costs nothing"
    index.close()

    shutil.rmtree(settings.resolved_data_dir() / "index")
    index = Index(settings, embedder=embedder)
    index.open()
    try:
        assert index.collection is not None
        pending = index.manifest.records(index.collection, status="pending")
        assert sorted(r.source for r in pending) == ["guides/deploy.md", "vacation.md"]
        report = Ingestor(index).sync_folder(docs)
        assert (report.ingested, report.unchanged, report.embedded) == (2, 0, 2), report
        assert index.store.count(index.collection) == 2
        assert len(index.manifest.records(index.collection, status="ok")) == 2
        assert index.verify_store(index.collection) == 0
    finally:
        index.close()
