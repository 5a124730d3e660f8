"""The process behind `rag watch`/`rag serve`, in this process: the index, the watch daemon, the
control API the CLI talks to, and the HTTP API, started and stopped as one."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.api_server import ApiServer
from app.control import find_daemon
from app.runtime import Runtime
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def settings(tmp_settings: Callable[..., Settings]) -> Settings:
    return tmp_settings(evals={"after_sync": False}, generation={"chain": ["extractive"]})


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vacation.md").write_text(
        "# Vacation\n\nEmployees get twenty-five days of paid vacation per year.\n",
        encoding="utf-8",
    )
    return docs


def test_runtime_serves_the_control_api_and_the_http_api_then_stops(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    docs = _docs(tmp_path)
    port = _free_port()
    lines: list[str] = []
    runtime = Runtime(
        settings,
        [docs],
        reconcile_interval=3600,
        api=ApiServer(settings, "127.0.0.1", port, echo=lines.append),
        index=Index(settings, embedder=embedder),
        echo=lines.append,
    )
    data_dir = settings.resolved_data_dir()
    runtime.start()
    try:
        client = find_daemon(data_dir)
        assert client is not None, "the control API announces itself in daemon.json"
        deadline = time.monotonic() + 120
        while not (status := client.status())["daemon"]["idle"]:
            assert time.monotonic() < deadline, f"initial sync did not finish: {status}"
            time.sleep(0.1)
        assert status["documents"] == 1 and status["daemon"]["files_ingested"] == 1
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert f"serving the API and chat page on http://127.0.0.1:{port}" in lines
        before = status["collection"]
        result = client.reindex()
        assert result["previous"] == before and result["collection"] != before
        assert client.status()["collection"] == result["collection"]
        client.close()
        assert runtime.wait(timeout=0.3) is False, "nothing asked it to stop yet"
        runtime.request_stop()
        assert runtime.wait(timeout=5) is True
    finally:
        runtime.stop()
    runtime.stop()  # a second stop is a no-op
    assert lines[-2:] == ["stopping: finishing the sync in flight…", "stopped cleanly"]
    assert find_daemon(data_dir) is None, "daemon.json removed"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_runtime_that_fails_to_start_leaves_nothing_running(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    class BrokenApi:
        def start(self, index: Index, daemon: object, pipeline: object) -> None:
            raise RuntimeError("the API did not start")

        def stop(self) -> None:
            pass

    runtime = Runtime(
        settings,
        [_docs(tmp_path)],
        api=BrokenApi(),
        index=Index(settings, embedder=embedder),
        echo=lambda m: None,
    )
    with pytest.raises(RuntimeError, match="did not start"):
        runtime.start()
    assert find_daemon(settings.resolved_data_dir()) is None
    assert runtime.daemon is not None and not runtime.daemon.running
