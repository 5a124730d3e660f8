"""``/readyz`` follows ingestion (issue 14, item 4): a daemon whose syncs fail makes it 503,
naming the error, until a sync succeeds again."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.auth import KeyStore
from ingestion.daemon import WatchDaemon
from rag.core.errors import StoreError
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from tests.api.conftest import LiveServer, settings_for, wait_for


def test_readyz_is_503_naming_the_error_while_syncs_fail(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe staging cluster is rebuilt every Sunday night.\n")
    settings = settings_for(tmp_path / "data")
    index = Index(settings, embedder=embedder)
    index.open()
    Ingestor(index).sync_folder(docs)
    daemon = WatchDaemon(index, [docs], debounce_seconds=0.1, reconcile_interval=3600)
    daemon.start()
    assert daemon.ready.wait(60)
    app = create_app(settings, index=index, daemon=daemon, keys=KeyStore(index.data_dir))
    server = LiveServer(app).start()
    try:
        server.wait_ready()

        def readyz() -> httpx.Response:
            return httpx.get(server.url + "/readyz", timeout=10)

        def refuse(*args: object, **kwargs: object) -> None:
            raise StoreError("disk full (test)")

        monkeypatch.setattr(index.store, "upsert", refuse)
        (docs / "b.md").write_text("# B\n\nDeploys go out on Tuesdays after the change board.\n")
        r: httpx.Response = wait_for(
            lambda: (r := readyz()).status_code == 503 and r, "readyz 503 while syncs fail"
        )
        error = r.json()["error"]
        assert error["type"] == "not_ready"
        assert (
            "ingestion: failing: the last sync failed: StoreError: disk full (test)"
            in (error["message"])
        ), error
        assert "store:" not in error["message"], "the store itself answers"
        assert daemon.stats()["sync_error"]

        monkeypatch.undo()  # the store works again: the daemon's retry succeeds
        wait_for(lambda: readyz().status_code == 200, "readyz 200 after a good sync")
        assert daemon.stats()["sync_error"] is None
        assert readyz().json()["checks"]["ingestion"] == "ok"
    finally:
        server.stop()
        daemon.stop()
        index.close()


@pytest.mark.parametrize(
    ("chain", "ready"), [(["openai"], False), (["openai", "extractive"], True)]
)
def test_readyz_names_a_generator_that_cannot_answer(
    tmp_path: Path, embedder: Embedder, chain: list[str], ready: bool
) -> None:
    """Each backend's own ``health()``: an OpenAI-compatible server nobody listens on is named;
    readiness fails only when no backend of the chain can answer (the chain falls back)."""
    from tests.api.conftest import free_port

    settings = settings_for(
        tmp_path / "data",
        generation={
            "chain": chain,
            "openai": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "max_retries": 0},
        },
    )
    index = Index(settings, embedder=embedder)
    index.open()
    app = create_app(settings, index=index, keys=KeyStore(index.data_dir))
    server = LiveServer(app).start()
    try:
        r = wait_for(
            lambda: (
                (r := httpx.get(server.url + "/readyz", timeout=10)).status_code in (200, 503)
                and "warming" not in r.text
                and r
            ),
            "readyz settled",
        )
        text = r.text
        assert "openai: unreachable" in text, text
        if ready:
            assert r.status_code == 200, text
            assert "extractive: ok" in r.json()["checks"]["generator"]
            # Issue 29: what embeds queries as warm-up resolved the setting, and why.
            line = r.json()["checks"]["embedding"]
            assert f"queries {embedder.query_precision}: " in line, line
            assert embedder.query_precision_reason in line and "documents fp32" in line, line
        else:
            assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready", text
    finally:
        server.stop()
        index.close()
