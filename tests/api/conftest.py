"""A real server for the API tests: uvicorn on a free loopback port, in a thread of this process.

One index per session (the shared, warmed MiniLM embedder; a real Qdrant Edge store) holds:
- the default tenant's documents: ``examples/docs`` (a watched folder, like `rag serve --watch`);
- tenants ``acme`` and ``globex``: files in ``<data_dir>/tenants/<tenant>/`` that collide on
  purpose (same file names, one identical paragraph) — the worst case for isolation.
A ``WatchDaemon`` follows the tenants folder, so uploads are ingested as in `rag serve`.
Test modules that need other limits start their own app on the same index (``start_server``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.auth import KeyStore
from app.api_server import SafeH11Protocol
from ingestion.daemon import WatchDaemon
from rag.core.config import DEFAULT_CONFIG, Settings, load_settings
from rag.core.types import Query, StreamEvent
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor
from rag.query.pipeline import PreparedQuery

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "docs"

SHARED_PARAGRAPH = "Office plants are watered every Friday by the facilities team."
TENANT_DOCS: dict[str, dict[str, str]] = {
    "acme": {
        "handbook.md": "# Acme handbook\n\n## Vacation\n\nAcme staff get thirty vacation days, approved by the "
        "squad lead in the Roadrunner portal.\n\n## Plants\n\n" + SHARED_PARAGRAPH + "\n",
        "security/badges.txt": "Acme badges are blue. Lost badges are replaced at the Tucson front desk within a day.",
    },
    "globex": {
        "handbook.md": "# Globex handbook\n\n## Vacation\n\nGlobex employees get twelve vacation days, approved by "
        "Hank Scorpio personally.\n\n## Plants\n\n" + SHARED_PARAGRAPH + "\n",
        "volcano.md": "# Volcano base\n\nThe volcano lair elevator needs a level four clearance card.\n",
    },
}
TENANTS = ("default", *TENANT_DOCS)
EXAMPLE_SOURCES = frozenset(
    p.relative_to(EXAMPLES).as_posix()
    for p in EXAMPLES.rglob("*")
    if p.is_file() and not p.name.startswith(".")
)

# Limits high enough that no test trips them by accident (test_limits starts a strict server).
RELAXED = {
    "evals": {"after_sync": False},
    # Off for the shared deployment (one test's answer would serve the next one's question);
    # tests/api/test_answer_cache.py starts a server with it on.
    "cache": {"enabled": False},
    "generation": {"chain": ["extractive"]},
    "api": {"requests_per_minute": 100_000, "burst": 10_000, "queue": 256},
}


class StandInPipeline:
    """A pipeline stand-in whose ``stream`` a test scripts (the timing of tokens, a held
    generation): the rest of what the API asks of a pipeline (``api.service.Pipeline``) — no
    answer cache, no figures, a healthy backend, not traced."""

    def stream(self, query: Query) -> Iterator[StreamEvent]:
        raise NotImplementedError

    def prepare(self, query: Query) -> PreparedQuery:
        return PreparedQuery(False, lambda: self.stream(query))

    def stats(self) -> dict[str, Any]:
        return {}

    def health(self) -> dict[str, str]:
        return {"generator:stand-in": "ok"}

    def traced_by(self, tracer: Any) -> bool:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        DEFAULT_CONFIG, _merge(_merge({"data_dir": str(data_dir)}, RELAXED), overrides)
    )


@dataclass
class LiveServer:
    app: Any
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    http: Any = SafeH11Protocol  # what `rag serve` runs (app/api_server.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            http=self.http,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name=f"uvicorn-{self.port}", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            r = httpx.get(self.url + "/readyz", timeout=10)
            if r.status_code == 200:
                return
            last = r.text
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout:.0f}s: {last}")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(30)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60.0), **kwargs
        )


@dataclass
class Deployment:
    settings: Settings
    index: Index
    keys: dict[str, str]
    store: KeyStore
    daemon: WatchDaemon
    server: LiveServer

    @property
    def tenants_root(self) -> Path:
        return self.index.data_dir / TENANTS_DIR

    def client(self, tenant: str = "default") -> httpx.Client:
        return self.server.client(self.keys[tenant])

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.daemon.stats()["idle"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon not idle after {timeout:.0f}s: {self.daemon.stats()}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("api") / "data"
    settings = settings_for(data_dir)
    index = Index(settings, embedder=embedder)
    index.open()
    root = index.data_dir / TENANTS_DIR
    for tenant, files in TENANT_DOCS.items():
        for rel, text in files.items():
            path = root / tenant / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    Ingestor(index).sync_folder(EXAMPLES)
    daemon = WatchDaemon(index, [root], debounce_seconds=0.2, reconcile_interval=3600)
    daemon.start()
    if not daemon.ready.wait(120):
        raise AssertionError("the daemon's initial sync of the tenants folder did not finish")
    store = KeyStore(index.data_dir)
    keys = {tenant: store.create(tenant, f"test {tenant}")[1] for tenant in TENANTS}
    server = LiveServer(create_app(settings, index=index, daemon=daemon, keys=store)).start()
    server.wait_ready()
    yield Deployment(settings, index, keys, store, daemon, server)
    server.stop()
    daemon.stop()
    index.close()


@pytest.fixture(scope="session")
def start_server(deployment: Deployment) -> Iterator[Callable[..., LiveServer]]:
    """``start_server(pipeline=None, **setting_overrides)``: another app on the session's index."""
    started: list[LiveServer] = []

    def start(pipeline: Any = None, **overrides: Any) -> LiveServer:
        settings = settings_for(deployment.index.data_dir, **overrides)
        app = create_app(settings, index=deployment.index, pipeline=pipeline, keys=deployment.store)
        server = LiveServer(app).start()
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for s in started:
        s.stop()


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Parse a Server-Sent Events stream into (event, data) pairs (event defaults to 'message')."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)
