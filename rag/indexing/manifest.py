"""What was ingested, per file and collection: a small SQLite file under the data dir.

The manifest is a cache of decisions (which content hash is already indexed, which files
failed and why); the vector store stays the source of truth for chunks. WAL mode lets
``rag status`` read while the daemon writes.

A file is identified by (collection, root, source): the same relative path in two roots (a
watched folder's ``policies/x.md`` and tenant ``policies``'s upload ``x.md``, which is
``policies/x.md`` under the tenants root) is two files. Manifests written before the root was
part of the key are migrated when opened for writing.
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

__all__ = ["REDO_SIGNATURE", "FileRecord", "Manifest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    source     TEXT NOT NULL,
    root       TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    status     TEXT NOT NULL,          -- ok | failed | skipped | pending (to redo)
    signature  TEXT NOT NULL,          -- content sha256, or size/mtime when unreadable
    chunks     INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, root, source)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The groups a document's chunks carry in the store (rag/core/access.py): a sync compares
-- them with what the rules and sidecars say now and relabels the difference in place.
CREATE TABLE IF NOT EXISTS labels (
    collection TEXT NOT NULL,
    doc_id     TEXT NOT NULL,
    groups     TEXT NOT NULL,          -- JSON list, sorted
    PRIMARY KEY (collection, doc_id)
);
"""
_COLUMNS = "collection, source, root, doc_id, status, signature, chunks, reason"
_KEY = ["collection", "root", "source"]
# Set on a row whose chunks the vector store lost: never a content hash, so the next sync
# redoes the file (``Manifest.mark_redo``).
REDO_SIGNATURE = "redo"


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
            self._db.execute("PRAGMA busy_timeout=5000")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.execute("CREATE INDEX IF NOT EXISTS files_by_source ON files (collection, source)")

    def _primary_key(self) -> list[str]:
        rows = self._db.execute("PRAGMA table_info(files)").fetchall()
        return [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]

    def _migrate(self) -> None:
        """A manifest keyed by (collection, source) gets the root in its key, rows unchanged."""
        if self._primary_key() == _KEY:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._primary_key() != _KEY:  # another process may have migrated it meanwhile
                self._db.execute("DROP TABLE IF EXISTS files_migrating")
                self._db.execute(
                    _SCHEMA.split(";")[0].replace(
                        "CREATE TABLE IF NOT EXISTS files", "CREATE TABLE files_migrating"
                    )
                )
                self._db.execute(
                    f"INSERT OR REPLACE INTO files_migrating ({_COLUMNS}, updated_at) "
                    f"SELECT {_COLUMNS}, updated_at FROM files"
                )
                self._db.execute("DROP TABLE files")
                self._db.execute("ALTER TABLE files_migrating RENAME TO files")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, collection: str, source: str, root: str | None = None) -> FileRecord | None:
        """The file ``source`` of ``root`` (without ``root``: of any root, see ``find``)."""
        if root is None:
            found = self.find(collection, source)
            return found[0] if found else None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE collection=? AND root=? AND source=?",
                (collection, root, source),
            ).fetchone()
        return FileRecord(*row) if row else None

    def find(self, collection: str, source: str) -> list[FileRecord]:
        """Every file named ``source`` in ``collection``, whichever root holds it."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE collection=? AND source=? ORDER BY root",
                (collection, source),
            ).fetchall()
        return [FileRecord(*r) for r in rows]

    def records(
        self, collection: str, root: str | None = None, status: str | None = None
    ) -> list[FileRecord]:
        sql = f"SELECT {_COLUMNS} FROM files WHERE collection=?"
        args: list[Any] = [collection]
        if root is not None:
            sql += " AND root=?"
            args.append(root)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        with self._lock:
            return [
                FileRecord(*r)
                for r in self._db.execute(sql + " ORDER BY source, root", args).fetchall()
            ]

    def collections(self) -> list[str]:
        with self._lock:
            return [
                r[0] for r in self._db.execute("SELECT DISTINCT collection FROM files").fetchall()
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

    def delete_many(self, collection: str, root: str, sources: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM files WHERE collection=? AND root=? AND source=?",
                [(collection, root, s) for s in sources],
            )

    def mark_redo(self, records: Iterable[FileRecord], reason: str) -> int:
        """Files whose chunks the store no longer holds: ``pending`` until the next sync redoes
        them (their signature matches no content, so it re-ingests them). Returns how many."""
        rows = [(reason, time.time(), r.collection, r.root, r.source) for r in records]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"UPDATE files SET status='pending', signature='{REDO_SIGNATURE}', chunks=0, "
                    "reason=?, updated_at=? WHERE collection=? AND root=? AND source=?",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def drop_collection(self, collection: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE collection=?", (collection,))
            self._db.execute("DELETE FROM labels WHERE collection=?", (collection,))

    def labels(self, collection: str) -> dict[str, tuple[str, ...]]:
        """doc_id -> the groups its chunks carry (documents written before labels: absent)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc_id, groups FROM labels WHERE collection=?", (collection,)
            ).fetchall()
        return {d: tuple(json.loads(g)) for d, g in rows}

    def label(self, collection: str, doc_id: str) -> tuple[str, ...] | None:
        """The groups one document's chunks carry (None: not recorded)."""
        with self._lock:
            row = self._db.execute(
                "SELECT groups FROM labels WHERE collection=? AND doc_id=?", (collection, doc_id)
            ).fetchone()
        return tuple(json.loads(row[0])) if row else None

    def set_labels(self, collection: str, labels: dict[str, tuple[str, ...]]) -> None:
        """Record the groups the store now holds for these documents."""
        if not labels:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO labels (collection, doc_id, groups) VALUES (?,?,?)",
                [(collection, d, json.dumps(sorted(g))) for d, g in labels.items()],
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
