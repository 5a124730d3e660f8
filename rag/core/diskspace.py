"""Free space on the data dir's volume: checked before anything is written, never discovered by
a crash.

The ``edge`` store maps its files into memory: a write into a full volume is not an error a
caller can catch but a SIGBUS that kills the process, with nothing logged (seen: a full disk
killed ``rag serve`` inside an upsert, and every restart died again while loading the shard).
So writers ask first: :meth:`DiskSpace.require` raises :class:`~rag.core.errors.DiskFullError`
(nothing written) while less than ``storage.min_free_mb`` would be left after the write;
uploads answer 503, ingestion pauses with its files pending, ``/readyz`` names the problem.
A small reserve file (``.space-reserve``, 16 MB) is kept while there is room and given back
when a start-up finds the volume under its floor, so the server starts and serves reads.

``usage`` is injectable (a function of a path returning ``(free, total)`` bytes): tests that
cannot mount a small file system hand in their own; ``shutil.disk_usage`` otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from rag.core.errors import DiskFullError

__all__ = [
    "MB",
    "RESERVE_BYTES",
    "RESERVE_NAME",
    "DiskSpace",
    "Usage",
    "allocate_holes",
    "megabytes",
    "unallocated_bytes",
]

MB = 1_000_000

Usage = Callable[[Path], tuple[int, int]]  # path -> (free bytes, total bytes)

# Held in the data dir while there is room, given back when a start-up finds the volume full.
RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 16 * MB
TIGHT_FACTOR = 8  # free space under 8 x the floor: claim ahead what a restart needs


def _disk_usage(path: Path) -> tuple[int, int]:
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


def megabytes(n: float) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.1f} MB"


class DiskSpace:
    """``min_free_mb`` kept free on the volume holding ``path`` (0: no floor)."""

    def __init__(self, path: Path, min_free_mb: float, usage: Usage | None = None):
        self.path = path
        self.floor = int(min_free_mb * MB)
        self.usage: Usage = usage or _disk_usage

    def free(self) -> int:
        path = self.path
        while not path.exists() and path.parent != path:  # not created yet: its volume
            path = path.parent
        return self.usage(path)[0]

    def problem(self, needed: int = 0) -> str | None:
        """Why writing ``needed`` more bytes is refused now, or None. Names no path."""
        if self.floor <= 0:
            return None
        try:
            free = self.free()
        except OSError as exc:
            return f"the free space of the data dir's volume cannot be read ({os.strerror(exc.errno or 0)})"
        if free - needed >= self.floor:
            return None
        what = f" ({megabytes(needed)} to write)" if needed else ""
        return (
            f"only {megabytes(free)} free on the data dir's volume{what}, under the floor of "
            f"{megabytes(self.floor)} (storage.min_free_mb): free space there (or lower the "
            "floor); writes resume by themselves"
        )

    def tight(self) -> bool:
        """Free space is under ``TIGHT_FACTOR`` times the floor: time to claim ahead what a
        later start will need (``VectorStore.claim_space``). With more room, claiming would
        only cost disk (tens of MB per index) for a full volume that is not in sight."""
        if self.floor <= 0:
            return False
        try:
            return self.free() < TIGHT_FACTOR * self.floor
        except OSError:
            return True

    # -- the reserve ---------------------------------------------------------------------
    @property
    def reserve_path(self) -> Path:
        return self.path / RESERVE_NAME

    def keep_reserve(self) -> None:
        """Hold ``RESERVE_BYTES`` of the volume in a file while there is room for it: on a
        volume something else filled to the last byte, a process starting up cannot even open
        its SQLite files (their WAL index needs a block), so it would die at every restart."""
        if self.floor <= 0 or self.reserve_path.exists():
            return
        try:
            if self.free() < self.floor + RESERVE_BYTES:
                return
            fd = os.open(self.reserve_path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, RESERVE_BYTES)
                else:  # pragma: no cover - not Linux
                    os.ftruncate(fd, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self.reserve_path.unlink(missing_ok=True)

    def release_reserve_if_full(self) -> bool:
        """Give the reserve back when the volume is under its floor (True if it was): what
        the start-up writes (SQLite's WAL index, ``daemon.json``) then fits; nothing else is
        written until there is room above the floor."""
        if self.problem() is None or not self.reserve_path.exists():
            return False
        self.reserve_path.unlink(missing_ok=True)
        return True

    def require(self, needed: int = 0, what: str = "writing") -> None:
        """Raise ``DiskFullError`` (nothing written) when ``problem(needed)`` names one."""
        problem = self.problem(needed)
        if problem is not None:
            raise DiskFullError(f"{what} paused: {problem}")


def unallocated_bytes(paths: list[Path]) -> int:
    """Bytes of the files at or under ``paths`` that are holes: sparse, no block on the volume
    yet.

    Memory-mapped files are created sparse. Touching a hole needs a free block (on tmpfs even
    reading one through a shared mapping does), and on a full volume that touch is a SIGBUS,
    not an error: this is the room such files may still take."""
    total = 0
    for root in paths:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                try:
                    st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                except FileNotFoundError:
                    continue
                total += max(0, st.st_size - st.st_blocks * 512)
    return total


def allocate_holes(paths: list[Path]) -> None:
    """Give the holes of the files at or under ``paths`` their blocks (``posix_fallocate``):
    later writes into those files, through a memory mapping too, need no free space. An
    ``OSError`` (ENOSPC) when the volume has no room for them."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not Linux
        return
    for root in paths:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_size > st.st_blocks * 512:
                    fd = os.open(path, os.O_RDWR)
                    try:
                        os.posix_fallocate(fd, 0, st.st_size)
                    finally:
                        os.close(fd)
