"""Where uploads are stored: file-system errors that name the problem, and a probe of what must be writable.

An ``OSError`` while writing or deleting a tenant's file becomes an ``ApiError`` that says what
is wrong in words (``os.strerror``), never with a path on the server: 503
``storage_unavailable`` when the tenant folder is read-only, full or failing; 422 / 409 for
names the file system refuses (too long, a parent that is a file).

``StorageProbe`` checks, by a real write at most once per ``ttl`` seconds, that the tenants
folder and the manifest can be written, and that the data dir's volume has more free space
than its floor (``storage.min_free_mb``; uploads are checked against it each time). A manifest that cannot be written is the quiet
failure: the daemon would index an upload's chunks (searchable) but never record the file,
so it would never be listed. Readiness reports both; uploads and deletes are refused with
the reason while the manifest is not writable.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from api.errors import ApiError

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["StorageProbe", "storage_error"]

_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


def storage_error(exc: OSError, source: str) -> ApiError:
    """The API's answer to an ``OSError`` met writing or deleting ``source`` (no server paths)."""
    code = exc.errno
    if code == errno.ENAMETOOLONG:
        return ApiError(
            422,
            "invalid_path",
            f"{source}: a name in this path is too long for the file system (at most 255 bytes each)",
        )
    if code in (errno.ENOTDIR, errno.EEXIST):
        return ApiError(409, "conflict", f"{source}: a parent of this path is a file")
    if code in _FULL:
        message = f"the tenant folder is full ({_reason(exc)}): free space on the data dir's volume"
    elif code in _UNWRITABLE:
        message = (
            f"the tenant folder is not writable ({_reason(exc)}): check the data dir's mount "
            "and permissions"
        )
    else:
        message = f"the tenant folder cannot be written ({_reason(exc)}); see the server log"
    return ApiError(503, "storage_unavailable", message)


class StorageProbe:
    """Can uploads be stored (the tenants folder) and recorded (the manifest)? Cached for ``ttl`` s."""

    def __init__(self, index: Index, root: Path, ttl: float = 1.0):
        self.index = index
        self.root = root
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._problems: dict[str, str] = {}

    def problems(self) -> dict[str, str]:
        """``{"manifest" | "uploads": what is wrong}``; empty when both can be written."""
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._problems = self._probe()
                self._at = time.monotonic()
            return dict(self._problems)

    def checks(self) -> dict[str, str]:
        """Readiness lines: ``ok`` or the problem, per part."""
        problems = self.problems()
        return {part: problems.get(part, "ok") for part in ("manifest", "uploads", "disk")}

    def require_space(self, size: int) -> None:
        """503 while storing ``size`` more bytes would leave the data dir's volume under its
        floor (``storage.min_free_mb``): checked on every upload, not cached."""
        problem = self.index.disk.problem(size)
        if problem is not None:
            raise ApiError(
                503,
                "storage_unavailable",
                f"this upload is refused: {problem}",
                {"Retry-After": "60"},
            )

    def require_manifest(self) -> None:
        """503 while the manifest cannot be written (an upload would be searchable, never listed)."""
        problem = self.problems().get("manifest")
        if problem is not None:
            raise ApiError(
                503,
                "storage_unavailable",
                f"the manifest is {problem}; fix the data dir's storage and retry",
            )

    def _probe(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        try:
            self.index.manifest.set_value("api.write_probe", round(time.time(), 3))
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):  # busy is not broken
                problems["manifest"] = (
                    f"not writable ({exc}): new documents would be searchable but not listed"
                )
        except (sqlite3.Error, OSError) as exc:
            problems["manifest"] = (
                f"not writable ({type(exc).__name__}): new documents would be searchable but not listed"
            )
        try:
            # A hidden temp name: the watcher never treats it as a document.
            fd, tmp = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            problems["uploads"] = f"the tenants folder is not writable ({_reason(exc)})"
        low = self.index.disk.problem()
        if low is not None:  # reads go on; uploads and ingestion wait for room
            problems["disk"] = f"{low}; queries are answered, uploads and ingestion wait"
        return problems
