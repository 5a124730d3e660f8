"""The process behind `rag watch`/`rag serve`, in this process: the index, the watch daemon, the
control API the CLI talks to, and the HTTP API, started and stopped as one."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api_server import ApiServer
from app.control import find_daemon
from app.runtime import Runtime
from rag.core.config import Settings
from rag.core.types import Query
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.query.pipeline import QueryPipeline


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


def test_one_pipeline_answers_the_http_api_and_the_control_api(
    settings: Settings, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One front door per process: one QueryPipeline (one answer cache, one generator chain,
    models loaded once) behind both the HTTP API and the control API."""
    from api.auth import KeyStore

    built: list[QueryPipeline] = []
    init = QueryPipeline.__init__

    def counted(self: QueryPipeline, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(QueryPipeline, "__init__", counted)
    port = _free_port()
    api = ApiServer(settings, "127.0.0.1", port, echo=lambda m: None)
    runtime = Runtime(
        settings,
        [_docs(tmp_path)],
        reconcile_interval=3600,
        api=api,
        index=Index(settings, embedder=embedder),
        echo=lambda m: None,
    )
    runtime.start()
    try:
        assert runtime.pipeline is not None and built == [runtime.pipeline], built
        assert api.app is not None and api.app.state.rag.service.pipeline is runtime.pipeline
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while (ready := httpx.get(f"{base}/readyz", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, f"not ready: {ready.text}"
            time.sleep(0.2)
        key = KeyStore(settings.resolved_data_dir(), settings.api.keys).local_key(settings.tenant)
        question = "How many days of paid vacation do employees get?"
        resp = httpx.post(
            f"{base}/v1/query",
            json={"question": question},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert "twenty-five days" in resp.json()["answer"] and not resp.json()["cached"]
        client = find_daemon(settings.resolved_data_dir())
        assert client is not None
        answer = client.run(Query(question))
        client.close()
        assert answer.cached and answer.answer == resp.json()["answer"]
        # Both requests went through the one answer cache: the API's missed, the control's hit.
        cache = runtime.pipeline.stats()["cache"]
        assert (cache["misses"], cache["hits"]) == (1, 1), cache
        assert built == [runtime.pipeline], "nothing built a second pipeline since"
    finally:
        runtime.stop()


def test_the_daemon_releases_the_configured_prompt_and_gates_its_reindex(
    tmp_settings: Callable[..., Settings], embedder: Embedder, tmp_path: Path
) -> None:
    import shutil

    from app.control import DaemonError
    from rag.query.releases import release_store

    docs = tmp_path / "docs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "docs", docs)
    settings = tmp_settings(
        evals={"after_sync": False, "verify": False},
        generation={"chain": ["extractive"]},
        releases={"prompt": "answer@v2", "steps": [20, 100]},
    )
    lines: list[str] = []
    runtime = Runtime(
        settings,
        [docs],
        reconcile_interval=3600,
        index=Index(settings, embedder=embedder),
        echo=lines.append,
    )
    runtime.start()
    store = release_store(settings.resolved_data_dir())
    try:
        deadline = time.monotonic() + 120
        while (store.release("answer") or {}).get("status") != "running":
            assert time.monotonic() < deadline, f"releases.prompt not released: {lines}"
            time.sleep(0.2)
        release = store.release("answer") or {}
        assert (release["live"], release["candidate"], release["steps"]) == ("v3", "v2", [20, 100])
        client = find_daemon(settings.resolved_data_dir())
        assert client is not None
        with pytest.raises(DaemonError, match="is running"):
            client.release_prompt({"prompt": "answer@v1"})
        with pytest.raises(DaemonError, match="steps"):
            client.release_prompt({"prompt": "answer@v1", "steps": "5,50"})
        # the daemon's reindex passes the gate (same settings: no worse) and switches
        before = client.status()["collection"]
        result = client.reindex()
        assert result["promoted"] and result["gate"]["promote"] and result["collection"] != before
        client.close()
    finally:
        runtime.stop()
        store.close()
