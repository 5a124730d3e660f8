"""Tenants' documents: where uploads go, who owns what, and per-document status.

Layout: ``<data_dir>/tenants/<tenant>/<path>``. The daemon watches ``<data_dir>/tenants`` as
one root, and the ingestor gives each file there the tenant named by its first folder, so a
tenant's uploads are documents named ``<tenant>/<path>``. The default tenant also owns the
folders passed to ``rag serve --watch`` / ``rag ingest``.

Ownership is checked from the manifest's document id, which is derived from (tenant, path,
upload or watched): a record belongs to tenant T exactly when
``document_id(T, source, upload=...) == record.doc_id``. A watched folder's ``policies/x.md``
and tenant ``policies``'s upload ``policies/x.md`` are two records (the manifest keys files by
root too), each owned by its own tenant.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from api.errors import ApiError
from api.storage import StorageProbe, storage_error
from rag.core.access import (
    ALL,
    Reader,
    can_read,
    label_payload,
    read_filter,
    set_file_groups,
)
from rag.core.documents import document_id
from rag.core.paths import PathFilter, escape_reason
from rag.core.textguard import bidi_controls, is_blank
from rag.guards.injection import flagged_chunks
from rag.indexing.ingest import TENANTS_DIR, is_ignored_name, walk_folder
from rag.indexing.manifest import FileRecord
from rag.indexing.parsing import ingested_suffixes
from rag.store import StoredPoint

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["NAME_MAX", "PATH_MAX_CHARS", "DocumentView", "Documents", "UploadTarget"]

log = logging.getLogger("api")

NAME_MAX = 255  # bytes per file or folder name (Linux, macOS, Windows alike)
PATH_MAX_CHARS = 1024  # characters in an upload's path (the `path` field or the file name)

_SAFE_PART = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")


@dataclass(frozen=True)
class DocumentView:
    path: str
    status: str
    chunks: int
    reason: str | None
    origin: str
    # Chunks the prompt-injection detector flagged at ingest, and why (all its reasons).
    flagged_chunks: int = 0
    injection_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class UploadTarget:
    source: str  # "<tenant>/<relative path>": the document's name
    file: Path
    # Who may read it (the upload's `groups` field); None: as rules and sidecars say, or as
    # a replaced upload's own groups were.
    groups: tuple[str, ...] | None = None


class Documents:
    def __init__(
        self,
        index: Index,
        extensions: Sequence[str] | None,
        ignore_hidden: bool = True,
        max_files: int | None = None,
        max_bytes: int | None = None,
        exclude: PathFilter | None = None,
        max_depth: int = 32,
    ):
        self.index = index
        # ingestion.max_depth: folders in an upload's path, below the tenant's own folder.
        self.max_depth = max_depth
        self.exclude = exclude or PathFilter()
        self.root = index.data_dir / TENANTS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        # ingestion.extensions as configured (None: every registered parser's suffixes).
        self.configured_extensions = None if extensions is None else list(extensions)
        self.ignore_hidden = ignore_hidden
        self.max_files = max_files  # per tenant (api.quota.max_files); None = no limit
        self.max_bytes = max_bytes
        self.storage = StorageProbe(index, self.root)
        # source -> sha256 of uploads the daemon has not recorded yet (status "pending").
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()
        # One write at a time per tenant: its quota is checked and used in one step.
        self._tenant_locks: dict[str, threading.Lock] = {}

    # -- ownership -------------------------------------------------------------------
    def owns(self, tenant: str, record: FileRecord) -> bool:
        if not self.is_upload(record):
            return document_id(tenant, record.source) == record.doc_id
        # An upload recorded before uploads had ids of their own (``document_id(T, source)``)
        # is still its tenant's until the next sync gives it the new id.
        return record.doc_id in (
            document_id(tenant, record.source, upload=True),
            document_id(tenant, record.source),
        )

    def _records(self) -> list[FileRecord]:
        collection = self.index.collection or self.index.open(create=False)
        return self.index.manifest.records(collection)

    def readable(self, reader: Reader, record: FileRecord) -> bool:
        """Whether ``reader`` may see the document at all (listing, status, source, chunks,
        delete): its tenant's, and readable under the groups its chunks carry and under the
        groups the rules and sidecars give it now (a revocation counts before the next sync
        relabels it). The check is retrieval's (rag.core.access.can_read)."""
        if not self.owns(reader.tenant, record):
            return False
        return self._readable_path(reader, Path(record.root), record.source, record.doc_id)

    def _readable_path(
        self, reader: Reader, root: Path, source: str, doc_id: str | None = None
    ) -> bool:
        now = self.index.labeller.groups_for(root, source)
        if not can_read(reader, {"tenant": reader.tenant, **label_payload(reader.tenant, now)}):
            return False
        if doc_id is None:
            return True
        collection = self.index.collection or self.index.open(create=False)
        stored = self.index.manifest.label(collection, doc_id)
        return stored is None or can_read(
            reader, {"tenant": reader.tenant, **label_payload(reader.tenant, stored)}
        )

    def _record(self, reader: Reader, source: str) -> FileRecord | None:
        """The document ``source`` of ``reader``'s tenant that ``reader`` may read; None for
        one it may not (answered like a missing one: 404, nothing to tell them apart)."""
        owned = self._owned(reader.tenant, source)
        if owned is None or not self.readable(reader, owned):
            return None
        return owned

    def _owned(self, tenant: str, source: str) -> FileRecord | None:
        """The document ``source`` of ``tenant``, whoever may read it."""
        collection = self.index.collection or self.index.open(create=False)
        owned = [r for r in self.index.manifest.find(collection, source) if self.owns(tenant, r)]
        # The default tenant's upload ``<tenant>/x`` and a watched ``<tenant>/x``: the upload.
        owned.sort(key=lambda r: not self.is_upload(r))
        return owned[0] if owned else None

    def is_upload(self, record: FileRecord) -> bool:
        return Path(record.root) == self.root

    # -- listing ---------------------------------------------------------------------
    def list(self, reader: Reader) -> list[DocumentView]:
        """The documents ``reader`` may read (``readable``), and only those: the listing and
        its counts say nothing of the others."""
        tenant = reader.tenant
        out: dict[str, DocumentView] = {}
        labels = self.index.manifest.labels(self.index.collection or self.index.open(create=False))
        collection = self.index.collection or self.index.open(create=False)
        flagged: dict[str, list[dict[str, Any]]] = {}
        # Why pending documents wait, while ingestion is paused for want of space.
        low = self.index.disk.problem()
        paused = f"ingestion paused: {low}" if low else None
        for f in flagged_chunks(self.index.store, collection, tenant):
            flagged.setdefault(f["doc_id"], []).append(f)
        for rec in self._records():
            if not self.owns(tenant, rec):
                continue
            stored = labels.get(rec.doc_id)
            if stored is not None and not can_read(
                reader, {"tenant": tenant, **label_payload(tenant, stored)}
            ):
                continue
            if not self._readable_path(reader, Path(rec.root), rec.source):
                continue
            status = rec.status
            with self._lock:
                uploaded = self._pending.get(rec.source)
            if uploaded is not None:
                if uploaded == rec.signature:
                    with self._lock:
                        self._pending.pop(rec.source, None)
                else:
                    status = "pending"
            mine = flagged.get(rec.doc_id, []) if status == "ok" else []
            out[rec.source] = DocumentView(
                rec.source,
                status,
                rec.chunks if status == "ok" else 0,
                rec.reason if status != "pending" else paused,
                "upload" if self.is_upload(rec) else "watched",
                len(mine),
                tuple(dict.fromkeys(r for f in mine for r in f["reasons"])),
            )
        # Files in the tenant's folder the daemon has not recorded yet.
        folder = self.root / tenant
        if folder.is_dir():
            for rel in walk_folder(folder, self.ignore_hidden, max_depth=self.max_depth):
                source = f"{tenant}/{rel}"
                if (
                    source not in out
                    and not self.exclude.excludes(source)
                    and self._readable_path(reader, self.root, source)
                ):
                    out[source] = DocumentView(source, "pending", 0, paused, "upload")
        return [out[k] for k in sorted(out)]

    def get(self, reader: Reader, source: str) -> DocumentView:
        for doc in self.list(reader):
            if doc.path == source:
                return doc
        raise self.not_found(source)

    def indexed_chunks(self, reader: Reader, source: str) -> Sequence[StoredPoint]:
        """The chunks the index holds for a document ``reader`` may read, in document order
        (what retrieval can return of it: redacted when ``pii.ingest`` is ``redact``). 404 for
        a document of another tenant, one it may not read, or none; 409 ``not_indexed`` for
        one not (yet) ingested."""
        rec = self._record(reader, source)
        if rec is None:
            raise self.not_found(source)
        collection = self.index.collection or self.index.open(create=False)
        # The reader's filter too, as retrieval has it: only chunks it may read.
        chunks = list(
            self.index.store.scroll(
                collection, filter={"doc_id": rec.doc_id, **read_filter(reader)}
            )
        )
        if not chunks:
            raise ApiError(
                409,
                "not_indexed",
                f"{source} has no indexed text (status {rec.status!r}"
                + (f": {rec.reason}" if rec.reason else "")
                + "); the document listing shows why",
            )
        return sorted(chunks, key=lambda p: (int(p.payload.get("start") or 0), p.id))

    @staticmethod
    def not_found(source: str) -> ApiError:
        return ApiError(
            404,
            "not_found",
            f"no document {source!r} for this key's tenant (GET /v1/documents lists them)",
        )

    def open_source(self, reader: Reader, source: str) -> tuple[BinaryIO, os.stat_result]:
        """The file behind a document of ``tenant``, opened once, and its ``fstat`` (404 for
        anything else).

        Served from this handle, never reopened by name: a file deleted or replaced between
        the checks and the response is a 404 or the file that was checked, never a 500 (the
        server used to check ``is_file()``, then open the path again to send it)."""
        tenant = reader.tenant
        rec = self._record(reader, source)
        if rec is not None:
            root, relative = Path(rec.root), rec.source
        elif source.startswith(f"{tenant}/") and not self._recorded(tenant, source):
            # An upload not ingested yet: its labels as ingestion will give them.
            root, relative = self.root, self.safe_relative(source)
            if not self._readable_path(reader, root, relative):
                raise self.not_found(source)
        else:
            raise self.not_found(source)
        path = root / relative
        # The check ingestion applies: a link out of the watched folder (or into the data
        # dir) is no document, whatever the manifest says (it may predate the link).
        reason = escape_reason(
            root,
            relative,
            tenant=tenant,
            data_dir=self.index.data_dir,
            tenants_root=self.root,
        )
        if reason is not None:
            raise self.not_found(source)
        try:
            checked = path.resolve(strict=True).stat()
            # Non-blocking: a FIFO planted in a folder must not hold a worker thread forever.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (OSError, RuntimeError):  # gone, a loop, a name too long: no such document
            raise self.not_found(source) from None
        try:
            opened = os.fstat(fd)
            # Only a regular file, and the very one the check above resolved: a link swapped
            # meanwhile for one pointing elsewhere opens another file.
            same = (opened.st_dev, opened.st_ino) == (checked.st_dev, checked.st_ino)
            if not stat.S_ISREG(opened.st_mode) or not same:
                raise self.not_found(source)
            return os.fdopen(fd, "rb"), opened
        except BaseException:
            os.close(fd)
            raise

    # -- uploads ---------------------------------------------------------------------
    def safe_relative(self, raw: str) -> str:
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if (
            not parts
            or raw.startswith("/")
            or any(p in ("", ".", "..") or not _SAFE_PART.match(p) for p in parts)
        ):
            raise ApiError(
                422,
                "invalid_path",
                f"path {raw!r} must be a relative path without '..' or control characters",
            )
        if bidi := bidi_controls(raw):
            # U+202E makes "invoice\u202efdp.md" display as "invoicedm.pdf": a name that lies.
            raise ApiError(
                422,
                "invalid_path",
                f"path {raw!r} contains bidirectional control character(s) {', '.join(bidi)}, "
                "which make a name display differently from what it is; rename it",
            )
        if any(is_blank(p) for p in parts):
            raise ApiError(
                422,
                "invalid_path",
                f"path {raw!r} has a folder or file name of only invisible characters "
                "(spaces, zero-width or format characters); rename it",
            )
        if any(is_ignored_name(p, self.ignore_hidden) for p in parts):
            raise ApiError(
                422,
                "invalid_path",
                f"path {raw!r} names a hidden or temporary file, which is never ingested; rename it",
            )
        return "/".join(parts)

    def upload_path(self, raw: str, field: str = "path") -> str:
        """The relative path an upload named ``raw`` is stored under, or 422 naming the limit
        it breaks. The one check of an upload's name, whichever names it: the ``path`` field,
        or the multipart file name when there is none (``field`` says which, for the message).

        Limits: at most ``PATH_MAX_CHARS`` characters; names of at most ``NAME_MAX`` bytes
        each (UTF-8); at most ``ingestion.max_depth`` folders (a deeper tree would be skipped
        by ingestion: refused here, where the uploader learns it); and ``safe_relative``'s."""
        if len(raw) > PATH_MAX_CHARS:
            raise ApiError(
                422,
                "invalid_path",
                f"the {field} is {len(raw)} characters long; upload paths are limited to "
                f"{PATH_MAX_CHARS} characters",
            )
        rel = self.safe_relative(raw)
        self._check_name_bytes(rel)
        folders = rel.count("/")
        if folders > self.max_depth:
            raise ApiError(
                422,
                "invalid_path",
                f"the {field} nests {folders} folders; uploads may nest at most "
                f"{self.max_depth} (ingestion.max_depth): use a flatter path",
            )
        return rel

    @staticmethod
    def _check_name_bytes(rel: str) -> None:
        """422 for a name the file system cannot hold: 255 bytes each, counted in UTF-8."""
        for part in rel.split("/"):
            size = len(part.encode("utf-8", "surrogatepass"))
            if size > NAME_MAX:
                raise ApiError(
                    422,
                    "invalid_path",
                    f"the name {part[:20]!r}… is {size} bytes in UTF-8; file and folder names are "
                    f"limited to {NAME_MAX} bytes each",
                )

    @property
    def extensions(self) -> tuple[str, ...]:
        """The suffixes uploads may have: asked of the parser table on each use, so a parser
        registered while the service runs is accepted without a restart."""
        return ingested_suffixes(self.configured_extensions)

    def _recorded(self, tenant: str, source: str) -> bool:
        """Whether the manifest holds a document ``source`` of ``tenant`` (readable or not)."""
        return self._owned(tenant, source) is not None

    def upload_target(
        self,
        reader: Reader,
        raw_path: str,
        field: str = "path",
        groups: Sequence[str] | None = None,
    ) -> UploadTarget:
        """Where an upload named ``raw_path`` goes (``field``: what named it, ``path`` or the
        file name), after every check of its name (``upload_path``), type and exclusion, and
        of permissions: ``groups`` (who may read it) must be groups the uploader reads with,
        and a document it may not read is not replaced (403 either way)."""
        tenant = reader.tenant
        if groups is not None and reader.groups is not None:
            foreign = sorted(set(groups) - reader.groups - {ALL})
            if foreign:
                raise ApiError(
                    403,
                    "forbidden",
                    f"an upload may be given only groups its key or token reads with; not "
                    f"{', '.join(foreign)} (`rag keys list` shows a key's groups)",
                )
        rel = self.upload_path(raw_path, field)
        suffix = PurePosixPath(rel).suffix.lower()
        extensions = self.extensions
        if suffix not in extensions:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"files of type '{suffix or '(none)'}' are not ingested; upload one of: {', '.join(extensions)}",
            )
        source = f"{tenant}/{rel}"
        if self.exclude.excludes(source):
            raise ApiError(
                422,
                "invalid_path",
                f"path {raw_path!r} matches ingestion.exclude ({', '.join(self.exclude.patterns)}), "
                "so it would never be ingested; rename it or change ingestion.exclude",
            )
        watched = self._owned(tenant, source)
        if watched is not None and not self.is_upload(watched):
            # Only the default tenant owns watched folders: one of them has a folder named
            # like the tenant, and an upload there would read like that document.
            raise ApiError(
                409,
                "conflict",
                f"{source} is already the name of a document in a watched folder; upload "
                "under another path",
            )
        exists = self._recorded(tenant, source) or (self.root / tenant / rel).exists()
        if exists and not self._readable_path(reader, self.root, source):
            raise ApiError(
                403,
                "forbidden",
                f"{source} exists and this key or token may not read it, so it may not replace "
                "it; upload under another path",
            )
        return UploadTarget(source, self.root / tenant / rel, tuple(groups) if groups else None)

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._tenant_locks.setdefault(tenant, threading.Lock())

    def usage(self, tenant: str) -> tuple[int, int]:
        """(files, bytes) of the tenant's uploads: what its quota counts."""
        folder = self.root / tenant
        files = size = 0
        if folder.is_dir():
            for rel in walk_folder(folder, self.ignore_hidden, max_depth=self.max_depth):
                try:
                    size += (folder / rel).lstat().st_size
                except OSError:  # gone meanwhile
                    continue
                files += 1
        return files, size

    def _check_quota(self, tenant: str, target: UploadTarget, size: int) -> None:
        if self.max_files is None and self.max_bytes is None:
            return
        files, used = self.usage(tenant)
        try:
            replaced: int | None = target.file.lstat().st_size
        except OSError:
            replaced = None
        if self.max_files is not None and replaced is None and files >= self.max_files:
            raise ApiError(
                409,
                "quota_exceeded",
                f"tenant {tenant!r} has {files} files; its quota is {self.max_files} files "
                "(api.quota.max_files): delete some (DELETE /v1/documents/{path}) or replace one",
            )
        after = used - (replaced or 0) + size
        if self.max_bytes is not None and after > self.max_bytes:
            raise ApiError(
                413,
                "quota_exceeded",
                f"this upload ({size} bytes) would bring tenant {tenant!r} to {after} bytes, over "
                f"its quota of {self.max_bytes} bytes (api.quota.max_bytes; {used} bytes used): "
                "delete or shrink documents first",
            )

    def _check_parents(self, target: UploadTarget) -> None:
        """409 naming the file that stands where a folder of the path has to be."""
        parts = PurePosixPath(target.source).parts
        for depth in range(1, len(parts)):
            ancestor = self.root.joinpath(*parts[:depth])
            if not ancestor.exists():
                return  # mkdir makes the rest
            if not ancestor.is_dir():
                raise ApiError(
                    409,
                    "conflict",
                    f"{'/'.join(parts[:depth])} is a file, so it cannot hold {target.source}: "
                    "upload under another path or delete that file first",
                )
        if target.file.is_dir():
            raise ApiError(409, "conflict", f"{target.source} is a folder")

    def write(self, target: UploadTarget, data: bytes) -> str:
        """Write atomically (temp file in the same folder, fsync, rename): the daemon never sees half a file.

        Refused with the reason (never a bare 500): a quota exceeded (409/413), a parent that
        is a file (409), a tenant folder or manifest that cannot be written, or a data dir's
        volume under its free-space floor (503)."""
        self.storage.require_space(len(data))
        self.storage.require_manifest()
        tenant = target.source.split("/", 1)[0]
        with self._tenant_lock(tenant):
            try:
                self._check_parents(target)
                self._check_quota(tenant, target, len(data))
                return self._write(target, data)
            except OSError as exc:
                log.warning("upload of %s failed: %s", target.source, exc)
                raise storage_error(exc, target.source) from None

    def _write(self, target: UploadTarget, data: bytes) -> str:
        folder = target.file.parent
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        # A hidden temp name: the watcher ignores it until the rename makes it a document.
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with self._lock:
                self._pending[target.source] = digest
            if target.groups is not None:
                # Before the file appears: the daemon labels it from its first sync.
                set_file_groups(folder, target.file.name, target.groups)
            os.replace(tmp, target.file)
        except BaseException:
            with self._lock:
                self._pending.pop(target.source, None)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return digest

    def delete(self, reader: Reader, source: str) -> None:
        """Delete an upload ``reader`` may read (404 for any other)."""
        tenant = reader.tenant
        rec = self._record(reader, source)
        if rec is not None and not self.is_upload(rec):
            raise ApiError(
                409,
                "conflict",
                # No server path in the answer: the folder is the operator's, not the caller's.
                f"{source} comes from a watched folder, not an upload; delete the file there "
                "and the daemon removes it",
            )
        if rec is None and not source.startswith(f"{tenant}/"):
            raise self.not_found(source)
        if rec is None and (
            self._recorded(tenant, source) or not self._readable_path(reader, self.root, source)
        ):
            raise self.not_found(source)  # one it may not read: as if there were none
        path = self.root / self.safe_relative(source)
        self.storage.require_manifest()
        # Under the tenant's write lock: an upload into a folder removed here as empty would
        # find its folder gone between making it and writing into it.
        with self._tenant_lock(tenant):
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise self.not_found(source) from None
            except OSError as exc:
                if exc.errno == errno.ENAMETOOLONG:  # no file can have that name
                    raise self.not_found(source) from None
                log.warning("delete of %s failed: %s", source, exc)
                raise storage_error(exc, source) from None
            set_file_groups(path.parent, path.name, None)  # its own groups go with it
            self._remove_empty_folders(path.parent, self.root / tenant)
        with self._lock:
            self._pending.pop(source, None)

    @staticmethod
    def _remove_empty_folders(folder: Path, stop: Path) -> None:
        """The folders a deleted upload leaves empty go too, up to (not including) ``stop``,
        the tenant's folder: an upload's folders are no one's once its files are gone."""
        while folder != stop and folder.is_relative_to(stop):
            try:
                folder.rmdir()
            except OSError:  # not empty (another document, a hidden temp file), or gone
                return
            folder = folder.parent
