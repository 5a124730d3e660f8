"""The watch daemon: keeps the index in step with one or more folders until stopped.

- Start: a full reconcile of every folder (catches changes made while it was down).
- Then watchdog events (create/modify/delete/move of files and directories, editor
  temp-file-and-rename saves) mark paths dirty; a path is synced once it has been quiet for
  ``debounce_seconds`` (a burst of writes → one ingest of the settled file).
- A watcher error, a dead observer thread, or a failed targeted sync → full reconcile.
- A watcher that cannot start (inotify's own walk failing on a pathological tree, no inotify
  watches left) never stops the daemon: it logs why and falls back to a full reconcile every
  ``POLL_SECONDS``, trying the watcher again every ``WATCHER_RETRY_SECONDS``.
- A sync that fails is remembered until a sync of that folder succeeds: ``stats()["sync_error"]``
  names it, so ``/readyz`` answers 503 instead of staying ready while nothing is ingested.
- SIGINT/SIGTERM: stop taking events, finish the sync in flight, close the store cleanly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.core.access import ACCESS_FILE
from rag.core.errors import DiskFullError
from rag.indexing.ingest import Ingestor, SyncReport, is_ignored_name

__all__ = ["WatchDaemon"]

log = logging.getLogger("rag.daemon")

SyncListener = Callable[[SyncReport], None]

_READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})
# Between retries while the data dir's volume is under its floor (a full disk frees slowly).
DISK_RETRY_SECONDS = 5.0


class _Handler:
    """watchdog event handler (duck-typed: watchdog calls ``dispatch``)."""

    def __init__(self, daemon: WatchDaemon, root: Path):
        self.daemon = daemon
        self.root = root

    def dispatch(self, event: Any) -> None:
        kind = getattr(event, "event_type", "")
        # Opens and read-only closes come from readers, the daemon's own hashing included:
        # following them would re-sync every file it reads, forever.
        if kind in _READ_ONLY_EVENTS:
            return
        # A directory "modified" event only says a child changed, and the child has its own
        # event; following it would re-walk the directory (a full reconcile for the root).
        if kind == "modified" and getattr(event, "is_directory", False):
            return
        rels: list[str] = []
        for attr in ("src_path", "dest_path"):
            raw = getattr(event, attr, None)
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            try:
                rel = path.relative_to(self.root)
            except ValueError:
                continue
            if rel == Path("."):
                self.daemon.request_reconcile("watched folder itself changed")
                continue
            if rel.name == ACCESS_FILE and not any(
                is_ignored_name(part, self.daemon.ignore_hidden) for part in rel.parts[:-1]
            ):
                # A folder's permissions changed: syncing the folder relabels its documents
                # (unchanged files cost a hash); the watched folder's own sidecar: everything.
                if len(rel.parts) == 1:
                    self.daemon.request_reconcile("access labels changed")
                else:
                    rels.append(rel.parent.as_posix())
                continue
            if any(is_ignored_name(part, self.daemon.ignore_hidden) for part in rel.parts):
                continue
            if self.daemon.exclude.excludes(rel.as_posix()):
                continue  # never a document (ingestion.exclude); a full sync removes old copies
            rels.append(rel.as_posix())
        # Both ends of a move settle together, so the new path reuses the old path's vectors.
        self.daemon.mark_dirty(self.root, *rels)


class _OverflowDetector(logging.Handler):
    """watchdog reports a kernel event-queue overflow only as a log warning: turn it into a reconcile."""

    def __init__(self, daemon: WatchDaemon):
        super().__init__(level=logging.WARNING)
        self.daemon = daemon

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.daemon.request_reconcile("watcher event queue overflowed")


class WatchDaemon:
    # Without a working file watcher: a full reconcile this often, and a new try this often.
    POLL_SECONDS = 5.0
    WATCHER_RETRY_SECONDS = 120.0

    def __init__(
        self,
        index: Any,
        roots: list[Path],
        debounce_seconds: float = 0.5,
        reconcile_interval: float = 300.0,
        on_sync: list[SyncListener] | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        self.index = index
        self.roots = [r.resolve() for r in roots]
        self.debounce = debounce_seconds
        self.reconcile_interval = reconcile_interval
        self.ignore_hidden = index.settings.ingestion.ignore_hidden
        self.exclude = index.settings.ingestion.path_filter()
        self.on_sync = list(on_sync or [])
        self.echo = echo or (lambda msg: log.info(msg))
        self._dirty: dict[tuple[Path, str], float] = {}
        self._dirty_lock = threading.Lock()
        self._reconcile_reason: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._observer: Any = None
        # Why the file watcher is not running (None while it is), and when to try it again.
        self.watcher_error: str | None = None
        self._watcher_retry_at = 0.0
        self._overflow_detector: _OverflowDetector | None = None
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self._syncing = False
        # Running totals since start, shown by `rag status` while the daemon runs.
        self.syncs = 0
        self.files_ingested = 0
        self.files_deleted = 0
        self.chunks_embedded = 0
        # Folder -> why its last sync failed (gone once a sync of it succeeds).
        self._sync_errors: dict[Path, str] = {}

    # -- events ----------------------------------------------------------------------
    def mark_dirty(self, root: Path, *rels: str) -> None:
        if not rels:
            return
        now = time.monotonic()
        with self._dirty_lock:
            for rel in rels:
                self._dirty[(root, rel)] = now
        self._wake.set()

    def request_reconcile(self, reason: str) -> None:
        self._reconcile_reason = reason
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """What the daemon is doing now, and its totals since it started."""
        with self._dirty_lock:
            pending = len(self._dirty)
        return {
            "pid": os.getpid(),
            "ready": self.ready.is_set(),
            "idle": self.ready.is_set()
            and not pending
            and not self._syncing
            and self._reconcile_reason is None,
            "pending_paths": pending,
            "syncs": self.syncs,
            "files_ingested": self.files_ingested,
            "files_deleted": self.files_deleted,
            "chunks_embedded": self.chunks_embedded,
            "sync_error": self.sync_error,
            # Not an error for readiness: changes are still picked up, by polling.
            "watcher": "ok" if self.watcher_error is None else f"polling: {self.watcher_error}",
        }

    @property
    def sync_error(self) -> str | None:
        """Why the latest failing sync failed (None while every folder's last sync succeeded)."""
        errors = list(self._sync_errors.values())
        if not errors:
            return None
        more = f" (and {len(errors) - 1} more folder(s))" if len(errors) > 1 else ""
        return errors[-1] + more

    def _failed(self, root: Path, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if len(message) > 300:
            message = message[:297] + "..."
        self._sync_errors.pop(root, None)
        self._sync_errors[root] = f"the last sync failed: {message}"

    def _paused(self, root: Path, exc: DiskFullError) -> None:
        """Ingestion waits for free space: said once (no traceback every retry), shown by
        ``stats()["sync_error"]`` and so by ``/readyz`` until a sync of ``root`` succeeds."""
        message = str(exc) if str(exc).startswith("ingestion") else f"ingestion paused: {exc}"
        if self._sync_errors.get(root) != message:
            log.warning("%s", message)
        self._sync_errors.pop(root, None)
        self._sync_errors[root] = message

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        for root in self.roots:
            if not root.is_dir():
                raise NotADirectoryError(f"cannot watch {root}: not a folder")
        self._thread = threading.Thread(target=self._run, name="rag-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop_observer()

    @property
    def running(self) -> bool:
        """The watch thread is alive: false before ``start``, after ``stop``, or when it died."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def _start_observer(self) -> None:
        from watchdog.observers import Observer

        observer = Observer()
        for root in self.roots:
            observer.schedule(_Handler(self, root), str(root), recursive=True)  # type: ignore[arg-type]
        observer.start()
        self._observer = observer
        if self._overflow_detector is None:
            self._overflow_detector = _OverflowDetector(self)
            logging.getLogger("watchdog").addHandler(self._overflow_detector)

    def _try_start_observer(self) -> bool:
        """Start the file watcher; on failure log why once, stop what started, and poll."""
        try:
            self._start_observer()
        except Exception as exc:  # noqa: BLE001 - any watcher failure: poll instead
            self._stop_observer()
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            if self.watcher_error != reason:
                # No traceback: a RecursionError's is a thousand frames of watchdog's walk.
                log.error(
                    "file watcher could not start (%s); reconciling every %.0f s instead, "
                    "retrying the watcher every %.0f s",
                    reason,
                    self.POLL_SECONDS,
                    self.WATCHER_RETRY_SECONDS,
                )
            self.watcher_error = reason
            self._watcher_retry_at = time.monotonic() + self.WATCHER_RETRY_SECONDS
            return False
        if self.watcher_error is not None:
            log.info("file watcher running again")
        self.watcher_error = None
        return True

    def _watcher_alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(getattr(observer, "emitters", ())))

    def _stop_observer(self) -> None:
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(5)
            except Exception:  # noqa: BLE001  # pragma: no cover - best effort on shutdown
                pass
            self._observer = None
        if self._overflow_detector is not None:
            logging.getLogger("watchdog").removeHandler(self._overflow_detector)
            self._overflow_detector = None

    # -- main loop -------------------------------------------------------------------
    def _run(self) -> None:
        ingestor = Ingestor(self.index)
        # Watch first, then reconcile: nothing that changes during the initial sync is lost.
        self._try_start_observer()
        self._reconcile(ingestor, "start")
        self.ready.set()
        last_reconcile = time.monotonic()
        while not self._stop.is_set():
            # Poll faster while changes are settling, slowly when idle.
            self._wake.wait(timeout=max(self.debounce / 4, 0.02) if self._dirty else 1.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self.watcher_error is None and not self._watcher_alive():
                log.warning("file watcher stopped unexpectedly; restarting and reconciling")
                self._stop_observer()
                self._try_start_observer()
                self._reconcile_reason = "watcher restarted"
            elif (
                self.watcher_error is not None
                and time.monotonic() >= self._watcher_retry_at
                and self._try_start_observer()
            ):
                self._reconcile_reason = "watcher started again"
            interval = self.reconcile_interval
            if self.watcher_error is not None:
                interval = min(interval, self.POLL_SECONDS)
            if self._reconcile_reason or time.monotonic() - last_reconcile > interval:
                reason = self._reconcile_reason or "periodic"
                self._reconcile_reason = None
                with self._dirty_lock:
                    self._dirty.clear()
                self._reconcile(ingestor, reason)
                last_reconcile = time.monotonic()
                continue
            self._sync_settled(ingestor)

    def _sync_settled(self, ingestor: Ingestor) -> None:
        now = time.monotonic()
        with self._dirty_lock:
            settled = [k for k, t in self._dirty.items() if now - t >= self.debounce]
            for k in settled:
                del self._dirty[k]
        by_root: dict[Path, list[str]] = {}
        for root, rel in settled:
            by_root.setdefault(root, []).append(rel)
        for root, rels in by_root.items():
            self._syncing = True
            try:
                report = ingestor.sync_paths(root, rels)
            except DiskFullError as exc:
                self._paused(root, exc)
                # Nothing was written. A reconcile (it waits for room, then clears the error)
                # syncs these paths with everything else changed meanwhile.
                self._reconcile_reason = "retry after the disk was full"
                self._stop.wait(DISK_RETRY_SECONDS)
                continue
            except Exception as exc:
                log.exception("sync of %d path(s) failed; reconciling %s", len(rels), root)
                self._failed(root, exc)
                self._reconcile(ingestor, "after a failed sync")
                continue
            finally:
                self._syncing = False
            self._after_sync(report, f"{len(rels)} change(s)")

    def _reconcile(self, ingestor: Ingestor, reason: str) -> None:
        for root in self.roots:
            self._syncing = True
            try:
                report = ingestor.sync_folder(root)
            except DiskFullError as exc:
                self._paused(root, exc)
                self._reconcile_reason = "retry after the disk was full"
                self._stop.wait(DISK_RETRY_SECONDS)
                continue
            except Exception as exc:
                # A RecursionError's traceback is a thousand frames: its message says enough.
                log.error(
                    "reconcile of %s failed; will retry",
                    root,
                    exc_info=None if isinstance(exc, RecursionError) else exc,
                )
                self._failed(root, exc)
                self._reconcile_reason = "retry after failure"
                time.sleep(1.0)
                continue
            finally:
                self._syncing = False
            self._sync_errors.pop(root, None)
            self._after_sync(report, f"reconcile ({reason})")

    def _after_sync(self, report: SyncReport, what: str) -> None:
        self.syncs += 1
        self.files_ingested += report.ingested
        self.files_deleted += report.deleted
        self.chunks_embedded += report.embedded
        if report.changed or report.failed:
            self.echo(
                f"synced {what}: {report.ingested} file(s) ingested, {report.deleted} deleted, "
                f"{report.unchanged} unchanged, {report.failed} failed, {report.embedded} chunk(s) embedded "
                f"in {report.seconds:.2f}s"
            )
        for listener in self.on_sync:
            try:
                listener(report)
            except Exception:  # a listener (e.g. evals) must never stop ingestion
                log.exception("sync listener failed")
