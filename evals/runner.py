"""Runs the eval suite in the background after each sync that changed the index, and after a reindex.

``EvalRunner.on_sync`` is a ``WatchDaemon`` listener; ``request`` is for a reindex. Each
returns at once: the suite runs on its own thread, reading the index while ingestion and
queries go on. Requests coalesce: while a run is in progress, any number of further requests
cause exactly one more run after it (it sees the index as it is then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.suite import EvalCancelled, run_default_suite

if TYPE_CHECKING:
    from rag.indexing.index import Index
    from rag.indexing.ingest import SyncReport

__all__ = ["EvalRunner", "SuiteFunction", "eval_after_reindex"]

log = logging.getLogger("rag.evals")

# (index, trigger, reason, should_stop) -> (report folder, report)
SuiteFunction = Callable[..., tuple[Path, dict[str, Any]]]


class EvalRunner:
    def __init__(
        self,
        index: Index,
        suite: SuiteFunction = run_default_suite,
        echo: Callable[[str], None] | None = None,
    ):
        self.index = index
        self.suite = suite
        self.echo = echo or log.info
        self._lock = threading.Lock()
        self._pending: tuple[str, str | None] | None = None
        self._thread: threading.Thread | None = None
        self._running = False  # guarded by _lock; a thread about to exit counts as not running
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.runs = 0  # finished runs (successful or not)
        self.last_folder: Path | None = None
        self.last_error: str | None = None

    # -- triggers --------------------------------------------------------------------
    def on_sync(self, report: SyncReport) -> None:
        """Daemon listener: only a sync that changed the index is worth an eval."""
        if report.changed:
            self.request("sync", f"{report.ingested} ingested, {report.deleted} deleted")

    def request(self, trigger: str, reason: str | None = None) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self._running:
                self._pending = (trigger, reason)  # one more run after this one, however many ask
                return
            self._running = True
            self._idle.clear()
            self._thread = threading.Thread(
                target=self._loop, args=(trigger, reason), name="rag-evals", daemon=True
            )
            self._thread.start()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask a run in progress to stop between queries, and wait for it a little."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self, trigger: str, reason: str | None) -> None:
        job: tuple[str, str | None] | None = (trigger, reason)
        while job is not None:
            self._run_once(*job)
            with self._lock:
                job, self._pending = self._pending, None
                if job is None or self._stop.is_set():
                    job = None
                    self._running = False
                    self._idle.set()

    def _run_once(self, trigger: str, reason: str | None) -> None:
        try:
            folder, report = self.suite(
                self.index, trigger=trigger, reason=reason, should_stop=self._stop.is_set
            )
            self.last_folder, self.last_error = folder, None
        except EvalCancelled:
            return
        except Exception as exc:  # evals must never take the daemon down
            log.exception("eval suite failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            try:
                previous = self.index.manifest.get_value("last_eval") or {}
                self.index.manifest.set_value("last_eval", {**previous, "error": self.last_error})
            except Exception:  # pragma: no cover - the manifest itself is failing
                log.exception("could not record the eval failure")
            return
        finally:
            self.runs += 1
        regressions = report.get("regressions") or []
        if regressions:
            worst = ", ".join(f"{r['metric']} {r['delta']:+.3f}" for r in regressions[:3])
            self.echo(
                f"eval ({trigger}): {len(regressions)} regression(s): {worst}; see {folder / 'report.html'}"
            )
        else:
            self.echo(f"eval ({trigger}): no regressions; report {folder / 'report.html'}")


def eval_after_reindex(
    index: Index, echo: Callable[[str], None] | None = None
) -> dict[str, Any] | None:
    """``rag reindex`` without a daemon: run the suite in this process once the alias has switched.

    There is no query service in this process to keep responsive, and a detached child would
    hold the embedded store's lock after the command returns, so the suite runs here, last.
    Returns the ``last_eval`` summary (or ``{"error": ...}``); None when evals are switched off.
    """
    from evals.report import summary

    if not index.settings.evals.after_sync:
        return None
    say = echo or log.info
    try:
        folder, report = run_default_suite(index, trigger="reindex", reason="rag reindex")
    except Exception as exc:  # the reindex itself succeeded: report the eval failure, don't undo it
        log.exception("eval after reindex failed")
        say(f"eval after reindex failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    result = summary(report, folder)
    regs = result["regressions"]
    say(
        f"eval: {len(regs)} regression(s) ({', '.join(r['metric'] for r in regs[:3])}); see {result['report']}"
        if regs
        else f"eval: no regressions; report {result['report']}"
    )
    return result
