"""The data dir is private: mode 0700, and what is written in it 0600 (issue 14, item 7).

It holds every tenant's text (the store and its write-ahead log), the manifest, eval reports,
API key hashes and the control API's token (``daemon.json``). :func:`private_data_dir` creates
it 0700, tightens an existing one with group or other bits (and logs that it did), and
tightens the process umask so nothing is created readable by others: the store's engine
(Qdrant Edge, in Rust; SQLite for the manifest) creates its own files and folders, so the
umask is what decides their modes. The ``rag`` command and ``app.runtime.Runtime`` set the
umask first thing too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

__all__ = [
    "PRIVATE_UMASK",
    "folder_lock",
    "private_data_dir",
    "private_file",
    "private_sqlite",
    "restrict_umask",
]

log = logging.getLogger(__name__)

# Group and other get nothing: folders 0700, files 0600.
PRIVATE_UMASK = 0o077
_umask_lock = threading.Lock()


def restrict_umask() -> None:
    """Add group/other to the process umask (bits already set stay set). Idempotent."""
    with _umask_lock:
        old = os.umask(PRIVATE_UMASK)
        os.umask(old | PRIVATE_UMASK)
    if old & PRIVATE_UMASK != PRIVATE_UMASK:
        log.debug("umask %03o -> %03o: the data dir's files are private", old, old | PRIVATE_UMASK)


def private_data_dir(path: Path) -> Path:
    """``path`` created 0700 (parents as the umask says), or made 0700 when it exists with
    group or other bits; the process umask tightened (:func:`restrict_umask`). Returns ``path``.

    A folder this process may not change (another owner) is left as it is, with a warning."""
    restrict_umask()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & PRIVATE_UMASK:
            path.chmod(0o700)
            log.warning("data dir %s was mode %04o (readable by others): made it 0700", path, mode)
    except OSError as exc:
        log.warning("cannot make the data dir %s private: %s", path, exc)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing (before sqlite opens it), and tighten an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def private_sqlite(path: Path) -> sqlite3.Connection:
    """A SQLite database under the data dir only this user reads (0600; SQLite gives its WAL
    files the database's mode), shared by threads and processes. WAL with synchronous=NORMAL:
    a commit on the query path (the cost ledger, the answer cache) needs no fsync."""
    private_file(path)
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


@contextmanager
def folder_lock(folder: Path, lock: AbstractContextManager[object]) -> Iterator[None]:
    """Hold ``folder``'s lock file (``.lock``, made with the folder, private): one writer at a
    time across the API processes and the daemon sharing a data dir; ``lock`` does the same
    for this process's threads (an fcntl lock is per process, not per thread)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with lock, open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
