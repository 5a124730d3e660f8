"""The long-running process behind ``rag watch`` and ``rag serve``: the composition root.

A :class:`Runtime` wires the parts that each live in their own package: the index (``rag``),
the watch daemon (``ingestion``), the background eval runner (``evals``), the process's one
query pipeline, the loopback control API that ``rag status|export|reindex|query`` talk to while
it runs (``app.control``), and optionally a :class:`Service` such as
``app.api_server.ApiServer``, the HTTP API (``api``)::

    runtime = Runtime(settings, [folder], api=ApiServer(settings, "127.0.0.1", 8000))
    runtime.start()            # open + warm up the index, start the control API, daemon, API
    runtime.wait(timeout=60)   # until stop is requested or the daemon's thread ends
    runtime.stop()             # API, evals, daemon, control API, pipeline, index: in that order

One front door per process: ``runtime.pipeline`` (one ``QueryPipeline``: one answer cache, one
generator chain, its models loaded once) answers both the HTTP API and the control API.

``run_until_signal()`` is ``start``, ``wait`` and ``stop`` with SIGINT/SIGTERM requesting the
stop (the main thread only): what the two commands run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from app.control import ControlServer
from evals.releases import index_gate, release_prompt
from evals.runner import EvalRunner
from ingestion.daemon import WatchDaemon
from rag.core.config import Settings
from rag.core.datadir import private_data_dir, restrict_umask
from rag.core.diskspace import RESERVE_BYTES
from rag.indexing.index import Index
from rag.indexing.reindex import reindex
from rag.indexing.status import collect_status, export_chunks
from rag.observability import shutdown_all, tracing_for
from rag.query.pipeline import QueryPipeline
from rag.query.releases import release_store

__all__ = ["Echo", "Runtime", "Service"]

log = logging.getLogger("rag.runtime")

Echo = Callable[[str], None]


class Service(Protocol):
    """Something that runs beside the daemon on the same index and answers with the runtime's
    query pipeline (the HTTP API)."""

    def start(self, index: Index, daemon: WatchDaemon, pipeline: QueryPipeline) -> None: ...

    def stop(self) -> None: ...


class Runtime:
    """Index + watch daemon + eval runner + control API (+ ``api``) for one data dir.

    ``index``: an unopened ``Index`` to use (tests hand in one with their warmed embedder);
    by default one is built from ``settings``. ``pipeline``: the query pipeline over that
    index (tests hand in one with a recording stage); by default ``QueryPipeline(index,
    settings)`` traced as configured, built by ``start``. The runtime closes both at ``stop``.
    ``echo``: where progress lines go (the CLI passes stderr).
    """

    def __init__(
        self,
        settings: Settings,
        paths: list[Path],
        reconcile_interval: float = 300.0,
        *,
        api: Service | None = None,
        index: Index | None = None,
        pipeline: QueryPipeline | None = None,
        echo: Echo | None = None,
    ):
        # Group and other get nothing of what this process writes (the store, the manifest,
        # reports, key hashes, daemon.json), and the data dir is 0700.
        restrict_umask()
        private_data_dir(settings.resolved_data_dir())
        self.settings = settings
        self.paths = list(paths)
        self.reconcile_interval = reconcile_interval
        self.api = api
        self.echo = echo or log.info
        self.index = index or Index(settings)
        self.evals: EvalRunner | None = None
        self.daemon: WatchDaemon | None = None
        self.control: ControlServer | None = None
        self._opened = self._started = self._stopped = False
        self._stop_requested = False
        # The process's one query pipeline (built by start, unless one is handed in).
        self.pipeline: QueryPipeline | None = pipeline

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Open the index (creating it on first use) and load its models. Raises the index's
        ``EmbeddingMismatchError``/``StoreError`` (the index is closed again then)."""
        if self._opened:
            return
        # A long-running process keeps a small reserve on the data dir's volume, and gives it
        # back when it starts on a full one: its SQLite files need a block to open at all.
        if self.index.disk.release_reserve_if_full():
            log.warning(
                "the data dir's volume is under its free-space floor: released the %d MB "
                "reserve to start; queries are answered, writes wait for free space",
                RESERVE_BYTES // 1_000_000,
            )
        else:
            self.index.disk.keep_reserve()
        try:
            self.index.open(create=True)
        except BaseException:
            self.index.close()
            raise
        disk = self.index.disk
        if disk.tight() and disk.problem() is None and self.index.collection:
            # What the next start will need to open the store: taken now, while there is room.
            self.index.store.claim_space(self.index.collection)
        self.index.warm_up()
        self._opened = True

    def start(self) -> None:
        """``open()``, then start the control API, the daemon (its initial sync runs in its
        thread) and ``api``. On a failure what was started is stopped again."""
        if self._started:
            raise RuntimeError("this runtime was already started")
        self.open()
        self._started = True
        settings, index = self.settings, self.index
        # Evals run in the background after each sync that changed the index, and after a reindex.
        self.evals = EvalRunner(index, echo=self.echo) if settings.evals.after_sync else None
        self.daemon = WatchDaemon(
            index,
            self.paths,
            debounce_seconds=settings.ingestion.debounce_seconds,
            reconcile_interval=self.reconcile_interval,
            on_sync=[self.evals.on_sync] if self.evals else None,
            echo=self.echo,
        )
        try:
            if self.pipeline is None:
                # Cheap: models load on the first query, or in the API's warm-up.
                tracer = tracing_for(settings).tracer  # no keys: None, nothing loaded
                self.pipeline = QueryPipeline(index, settings, tracer=tracer)
            self.control = ControlServer(
                settings.resolved_data_dir(),
                status=self.status,
                export=self.export,
                reindex=self.reindex,
                sync=self.sync,
                pipeline=self.pipeline,
                release_prompt=self.release_prompt,
            )
            self.control.start()
            self._release_from_config()
            self.daemon.start()
            if self.api is not None:
                self.api.start(index, self.daemon, self.pipeline)
        except BaseException:
            self.stop()
            raise

    def request_stop(self) -> None:
        """Make ``wait()`` return (safe from a signal handler: it only sets a flag)."""
        self._stop_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or the daemon's thread ends (True), or ``timeout``
        seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop_requested and self.daemon is not None and self.daemon.running:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def stop(self) -> None:
        """Stop everything, newest first; the sync in flight finishes. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            if self.pipeline is not None:
                self.pipeline.close()
            if self._opened:
                self.index.close()
            return
        self.echo("stopping: finishing the sync in flight…")
        try:
            if self.api is not None:
                self.api.stop()
            if self.evals is not None:
                self.evals.stop()
            if self.daemon is not None:
                self.daemon.stop()
            if self.control is not None:
                self.control.stop()
            if self.pipeline is not None:
                self.pipeline.close()
            # The last spans and scores to Langfuse, bounded (tracing.shutdown_timeout_seconds).
            shutdown_all()
        finally:
            self.index.close()
        self.echo("stopped cleanly")

    def run_until_signal(self) -> None:
        """``start``, then ``wait`` until SIGINT/SIGTERM (or the daemon's end), then ``stop``.

        The handlers are installed once the models are loaded (a Ctrl-C while loading
        interrupts as usual) and the previous ones put back after the stop.
        """
        self.open()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.getsignal(signum) for signum in signals}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        for signum in signals:
            signal.signal(signum, on_signal)
        try:
            self.start()
            self.echo(
                f"watching {', '.join(str(p) for p in self.paths)} (pid {os.getpid()}); "
                "Ctrl-C to stop"
            )
            self.wait()
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- control API handlers --------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``rag status`` shows while this runs: the index's status plus the daemon's."""
        assert self.daemon is not None
        return {**collect_status(self.index), "daemon": self.daemon.stats()}

    def export(self) -> Iterator[dict[str, Any]]:
        return export_chunks(self.index)

    def reindex(self, force: bool = False) -> dict[str, Any]:
        """Blue/green rebuild of the watched folders (a model, transform or parser change),
        switched only when the evals find the new collection no worse (``force``: anyway);
        then an eval run (in the background)."""
        result: dict[str, Any] = reindex(
            self.index,
            [p.resolve() for p in self.paths],
            gate=index_gate(echo=self.echo),
            force=force,
        )
        if self.evals is not None and result["promoted"]:
            self.evals.request("reindex", f"reindexed into {result['collection']}")
        return result

    def release_prompt(self, body: dict[str, Any]) -> dict[str, Any]:
        """``rag prompts release`` while this runs: the gate on this process's index."""
        steps = body.get("steps")
        return release_prompt(
            self.index,
            str(body["prompt"]),
            [int(s) for s in steps] if steps else None,
            force=bool(body.get("force")),
            echo=self.echo,
        )

    def _release_from_config(self) -> None:
        """``releases.prompt``: released once per version, as `rag prompts release` would (in
        the background: the gate answers the golden set first)."""
        ref = self.settings.releases.prompt
        if not ref:
            return
        name, _, version = ref.partition("@")
        store = release_store(self.settings.resolved_data_dir())
        state = store.read()
        earlier = [*state.get("finished", []), *state["prompts"].values()]
        if any(r["name"] == name and r["candidate"] == version for r in earlier):
            return  # released before (running, promoted or rolled back): a restart leaves it

        def run() -> None:
            try:
                result = release_prompt(self.index, ref, echo=self.echo)
            except Exception as exc:  # noqa: BLE001 - a refused release never stops the daemon
                self.echo(f"releases.prompt {ref}: not released: {exc}")
                return
            if not result["released"]:
                self.echo(f"releases.prompt {ref}: refused: {result['reason']}")

        threading.Thread(target=run, name="rag-prompt-release", daemon=True).start()

    def sync(self) -> dict[str, Any]:
        assert self.daemon is not None
        self.daemon.request_reconcile("requested")
        return {"requested": True}
