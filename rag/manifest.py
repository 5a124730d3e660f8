"""What was ingested, per file and collection: a small SQLite file under the data dir.

The manifest is a cache of decisions (which content hash is already indexed, which files
failed and why); the vector store stays the source of truth for chunks. WAL mode lets
``rag status`` read while the daemon writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FileRecord", "Manifest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    source     TEXT NOT NULL,
    root       TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    status     TEXT NOT NULL,          -- ok | failed | skipped
    signature  TEXT NOT NULL,          -- content sha256, or size/mtime when unreadable
    chunks     INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileRecord:
    collection: str
    source: str
    root: str
    doc_id: str
    status: str
    signature: str
    chunks: int = 0
    reason: str | None = None


class Manifest:
    def __init__(self, path: Path, readonly: bool = False):
        self.path = path
        self._lock = threading.RLock()
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, collection: str, source: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT collection, source, root, doc_id, status, signature, chunks, reason FROM files "
                "WHERE collection=? AND source=?",
                (collection, source),
            ).fetchone()
        return FileRecord(*row) if row else None

    def records(
        self, collection: str, root: str | None = None, status: str | None = None
    ) -> list[FileRecord]:
        sql = "SELECT collection, source, root, doc_id, status, signature, chunks, reason FROM files WHERE collection=?"
        args: list[Any] = [collection]
        if root is not None:
            sql += " AND root=?"
            args.append(root)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        with self._lock:
            return [
                FileRecord(*r) for r in self._db.execute(sql + " ORDER BY source", args).fetchall()
            ]

    def put_many(self, records: Iterable[FileRecord]) -> None:
        """Record files in one transaction (after their vectors are durably written)."""
        now = time.time()
        rows = [
            (
                r.collection,
                r.source,
                r.root,
                r.doc_id,
                r.status,
                r.signature,
                r.chunks,
                r.reason,
                now,
            )
            for r in records
        ]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO files (collection, source, root, doc_id, status, signature, chunks, "
                    "reason, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete_many(self, collection: str, sources: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM files WHERE collection=? AND source=?",
                [(collection, s) for s in sources],
            )

    def drop_collection(self, collection: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE collection=?", (collection,))

    def copy_failures(self, src: str, dst: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files SELECT ?, source, root, doc_id, status, signature, chunks, reason, "
                "updated_at FROM files WHERE collection=? AND status!='ok'",
                (dst, src),
            )

    def set_value(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def get_value(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def roots(self) -> list[str]:
        value = self.get_value("roots", [])
        return list(value)

    def add_root(self, root: str) -> None:
        roots = self.roots()
        if root not in roots:
            self.set_value("roots", [*roots, root])
