"""Folder → index sync: the one place that decides what to embed, write and delete.

Per sync: hash each file; unchanged content costs only that hash. Changed/new files are
parsed and chunked; chunk ids are (document id, text hash), so only new texts are embedded
(texts the same tenant already stored under another id, e.g. after a rename, reuse their
stored vector; another tenant's copy never does, so an upload's embedding count says nothing
about other tenants' texts). A file is (root, path): a watched folder's ``policies/x.md`` and
tenant ``policies``'s upload ``x.md`` are two documents with two ids.
Files are written in groups (batched embedding across files); for each group the order is
upsert → flush → delete stale chunks → flush → record in the manifest. A crash anywhere
leaves a file either recorded with exactly its chunks, or unrecorded and redone on restart.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.documents import Chunk, document_id
from rag.core.errors import SourceError
from rag.core.paths import PathFilter, escape_reason
from rag.guards.injection import chunk_fields, hidden_html_text
from rag.guards.pii.logs import register_log_path
from rag.indexing.manifest import FileRecord
from rag.indexing.parsing import (
    PARSERS,
    ParseError,
    check_extensions,
    content_signature,
    ingested_suffixes,
    parse_bytes,
    read_file_bytes,
    without_server_paths,
)
from rag.indexing.transforms import apply_transforms
from rag.store import StoredPoint

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = [
    "TENANTS_DIR",
    "Ingestor",
    "SyncReport",
    "is_ignored_name",
    "tenant_of_source",
    "walk_folder",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)

# <data_dir>/tenants/<tenant>/...: every file there belongs to <tenant> (API uploads land there).
# One root for all tenants keeps manifest sources ("<tenant>/<path>") unique across tenants.
TENANTS_DIR = "tenants"
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tenant_of_source(source: str) -> str | None:
    """The tenant owning ``source`` under the tenants root (None: not inside a tenant's folder)."""
    head, sep, _ = source.partition("/")
    return head if sep and _TENANT_NAME.match(head) else None


_EDITOR_TEMP_SUFFIXES = ("~", ".swp", ".swx", ".tmp", ".part", ".crdownload", ".partial")


def is_ignored_name(name: str, ignore_hidden: bool = True) -> bool:
    """Editor temp files and hidden files are not documents (and not failures)."""
    if ignore_hidden and name.startswith("."):
        return True
    if name.startswith("~$") or name.startswith(".#") or name == "4913":
        return True
    return name.endswith(_EDITOR_TEMP_SUFFIXES)


def walk_folder(
    root: Path, ignore_hidden: bool = True, exclude: PathFilter | None = None
) -> list[str]:
    """Relative POSIX paths of every candidate file under ``root`` (symlinked dirs not followed),
    less those ``exclude`` (``ingestion.exclude``) matches."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not (ignore_hidden and d.startswith(".")))
        for name in sorted(filenames):
            if is_ignored_name(name, ignore_hidden):
                continue
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return exclude.keep(out) if exclude else out


@dataclass
class SyncReport:
    files_seen: int = 0
    ingested: int = 0  # files (re)written to the index
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    embedded: int = 0  # chunk texts sent to the model
    reused: int = (
        0  # chunks whose vector came from the store (already there, or same text elsewhere)
    )
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.ingested or self.deleted or self.chunks_deleted)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def last_run(self) -> dict[str, Any]:
        return {
            "embedded": self.embedded,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "failed": self.failed,
            "ingested": self.ingested,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Pending:
    source: str
    signature: str
    chunks: list[Chunk]
    # The id the manifest recorded for this file when it differs (an upload recorded before
    # uploads had ids of their own): its chunks go once the new ones are written.
    replaces: str | None = None
    # Chunk id -> payload fields beyond the chunk's own (the injection detector's verdict).
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)


class Ingestor:
    def __init__(self, index: Index, collection: str | None = None, tenant: str | None = None):
        self.index = index
        self.settings = index.settings
        self._fixed_collection = collection
        if collection is None and index.collection is None:
            index.open()
        # Owner of files outside the tenants root; inside it, the first path component is.
        self.tenant = tenant or index.settings.tenant
        self.tenants_root = index.data_dir / TENANTS_DIR
        self.max_bytes = int(self.settings.ingestion.max_file_mb * 1_000_000)
        # A suffix no registered parser reads fails here, before anything is synced.
        check_extensions(self.settings.ingestion.extensions)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The suffixes ingested now: asked of the parser table on each use, so a parser
        registered while the process runs is honoured by the next sync."""
        return ingested_suffixes(self.settings.ingestion.extensions)

    @property
    def collection(self) -> str:
        # Follows the live collection across a reindex unless pinned (reindex builds a new one).
        collection = self._fixed_collection or self.index.collection
        assert collection is not None, "Ingestor needs an opened index"
        return collection

    def tenant_for(self, root: Path, source: str) -> str | None:
        return tenant_of_source(source) if root == self.tenants_root else self.tenant

    def doc_id_for(self, root: Path, source: str) -> str:
        """The id of the document ``source`` in ``root`` (an upload's differs from a watched
        document's of the same tenant and path)."""
        tenant = self.tenant_for(root, source) or ""
        return document_id(tenant, source, upload=root == self.tenants_root)

    # -- entry points ----------------------------------------------------------------
    def sync_folder(self, root: Path, progress: Progress | None = None) -> SyncReport:
        """Full reconcile: the index ends up holding exactly the folder's documents."""
        root = root.resolve()
        if not root.is_dir():
            raise SourceError(
                f"{root} is not a folder: give rag ingest (or ingestion.watch) a folder"
            )
        self._name_in_logs(root)
        with self.index.write_lock:
            self._require_space()
            self.index.manifest.add_root(str(root))
            present = self._outside_data_dir(
                root,
                walk_folder(
                    root,
                    self.settings.ingestion.ignore_hidden,
                    self.settings.ingestion.path_filter(),
                ),
            )
            known = {r.source for r in self.index.manifest.records(self.collection, root=str(root))}
            report = self._apply(root, present, sorted(known - set(present)), progress)
            self._remove_orphans(root, present, report)
            self._finish(report)
            return report

    def sync_paths(
        self, root: Path, sources: Iterable[str], progress: Progress | None = None
    ) -> SyncReport:
        """Targeted sync of some relative paths (daemon events): present → ingest, gone → delete."""
        root = root.resolve()
        self._name_in_logs(root)
        with self.index.write_lock:
            self._require_space()
            self.index.manifest.add_root(str(root))
            present: list[str] = []
            gone: list[str] = []
            for s in sorted(set(sources)):
                p = root / s
                if p.is_dir() and not p.is_symlink():
                    present.extend(
                        f"{s}/{sub}"
                        for sub in walk_folder(p, self.settings.ingestion.ignore_hidden)
                    )
                elif os.path.lexists(p):
                    present.append(s)
                else:
                    # A vanished directory: everything recorded beneath it goes too.
                    prefix = s.rstrip("/") + "/"
                    gone.append(s)
                    gone.extend(
                        r.source
                        for r in self.index.manifest.records(self.collection, root=str(root))
                        if r.source.startswith(prefix)
                    )
            # A moved directory names its files twice (the directory and each file): once each.
            present = self._outside_data_dir(root, sorted(set(present)))
            # A file ingestion.exclude now matches is not a document: if indexed, it goes.
            excluded = self.settings.ingestion.path_filter()
            gone.extend(s for s in present if excluded.excludes(s))
            present = excluded.keep(present)
            gone = sorted(set(gone) - set(present))
            report = self._apply(root, present, gone, progress)
            self._finish(report)
            return report

    # -- core ------------------------------------------------------------------------
    def _apply(
        self, root: Path, present: list[str], gone: list[str], progress: Progress | None
    ) -> SyncReport:
        t0 = time.perf_counter()
        report = SyncReport(files_seen=len(present))
        group: list[_Pending] = []
        group_chunks = 0
        total = len(present)
        for i, source in enumerate(present, start=1):
            pending = self._prepare(root, source, report)
            if pending is not None:
                group.append(pending)
                group_chunks += len(pending.chunks)
                if group_chunks >= self.settings.ingestion.group_chunks:
                    self._write_group(root, group, report)
                    group, group_chunks = [], 0
            if progress:
                progress("files", i, total)
        if group:
            self._write_group(root, group, report)
        if gone:
            self._delete_sources(root, gone, report)
        report.seconds = time.perf_counter() - t0
        return report

    def _prepare(self, root: Path, source: str, report: SyncReport) -> _Pending | None:
        """Hash, compare with the manifest, then parse and chunk. Failures are recorded here."""
        manifest = self.index.manifest
        path = root / source
        suffix = path.suffix.lower()
        tenant = self.tenant_for(root, source)
        doc_id = self.doc_id_for(root, source)
        prior = manifest.get(self.collection, source, root=str(root))
        old_ids = [prior.doc_id] if prior is not None and prior.doc_id != doc_id else []
        extensions = self.extensions
        if tenant is None or suffix not in extensions:
            reason = (
                f"not inside a tenant's folder: move it into {TENANTS_DIR}/<tenant>/"
                if tenant is None
                else f"unsupported file type '{suffix or '(none)'}': supported are {', '.join(extensions)}"
            )
            if prior is None or prior.status != "skipped":
                self._drop_chunks([doc_id, *old_ids], report)
                manifest.put_many(
                    [
                        FileRecord(
                            self.collection, source, str(root), doc_id, "skipped", "-", 0, reason
                        )
                    ]
                )
            report.skipped += 1
            return None
        escape = self._escapes(root, source, tenant)
        if escape is not None:
            self._record_failure(root, source, doc_id, _stat_signature(path), escape, prior, report)
            return None
        try:
            # A broken link's target is named relative to the folder (a tenant's own folder).
            inside = root / tenant if root == self.tenants_root else root
            data = read_file_bytes(path, self.max_bytes, inside)
        except ParseError as exc:
            signature = _stat_signature(path)
            self._record_failure(root, source, doc_id, signature, str(exc), prior, report)
            return None
        signature = content_signature(data, suffix)
        if prior is not None and prior.signature == signature and not old_ids:
            if prior.status == "ok":
                report.unchanged += 1
            else:  # same bad content: still failed, not retried until it changes
                report.failed += 1
                report.failures.append({"path": source, "reason": prior.reason or ""})
            return None
        try:
            parsed = parse_bytes(data, suffix, path.name)
            parsed = apply_transforms(self.index.transforms, parsed, source)
            chunks = self.index.chunker.run(parsed, source, tenant, doc_id)
        except ParseError as exc:
            self._record_failure(root, source, doc_id, signature, str(exc), prior, report)
            return None
        except Exception as exc:  # a parser bug must not stop the sync
            log.exception("unexpected error parsing %s", source)
            self._record_failure(
                root,
                source,
                doc_id,
                signature,
                f"could not parse ({type(exc).__name__}: {exc})",
                prior,
                report,
            )
            return None
        if not chunks:
            self._record_failure(
                root,
                source,
                doc_id,
                signature,
                "no text chunks could be made from this file",
                prior,
                report,
            )
            return None
        self._record_pii(chunks)
        # Every chunk scored for prompt injection (hidden HTML text counts against its chunk).
        hidden = (
            hidden_html_text(data.decode("utf-8", "replace"))
            if PARSERS.name_for(suffix) == "html"
            else []
        )
        fields = {c.id: chunk_fields(c.text, hidden) for c in chunks}
        return _Pending(source, signature, chunks, old_ids[0] if old_ids else None, fields)

    def _record_pii(self, chunks: list[Chunk]) -> None:
        """PII detected once per chunk, stored with it (rag.guards.pii.outbound): when passages will
        be sent pseudonymised, queries then analyse only their question."""
        from rag.guards.pii.outbound import chunk_pii
        from rag.guards.pii.transform import detects_at_ingest

        if not detects_at_ingest(self.index.settings):
            return
        from rag.guards.pii import detector_for

        detector = detector_for(self.index.settings.pii)
        for c in chunks:
            c.pii = chunk_pii(detector, c.text)

    def _name_in_logs(self, root: Path) -> None:
        """Log lines name files of this folder ``<watched>/…``, never by their server path (the
        tenants folder is inside the data dir: ``<data_dir>/tenants/…``)."""
        if not root.is_relative_to(self.index.data_dir.resolve()):
            register_log_path(root, "<watched>")

    def _outside_data_dir(self, root: Path, sources: list[str]) -> list[str]:
        """A watched folder that holds the data dir (``rag watch .``) never lists what is in it."""
        data_dir = self.index.data_dir.resolve()
        if data_dir == root:
            return []
        if not data_dir.is_relative_to(root):
            return sources
        prefix = data_dir.relative_to(root).as_posix().rstrip("/") + "/"
        return [s for s in sources if not (s + "/").startswith(prefix)]

    def _escapes(self, root: Path, source: str, tenant: str) -> str | None:
        """Why the file a watched path really is may not be indexed (``escape_reason``)."""
        return escape_reason(
            root,
            source,
            tenant=tenant,
            data_dir=self.index.data_dir,
            tenants_root=self.tenants_root,
        )

    def _record_failure(
        self,
        root: Path,
        source: str,
        doc_id: str,
        signature: str,
        reason: str,
        prior: FileRecord | None,
        report: SyncReport,
    ) -> None:
        # Shown to API callers and in `rag status`: no absolute server path (parser and
        # transform messages may hold one), paths inside the watched folder relative to it.
        reason = without_server_paths(reason, root, self.index.data_dir)
        # A file that no longer parses must not keep serving its old text: drop its chunks.
        old_ids = [prior.doc_id] if prior is not None and prior.doc_id != doc_id else []
        self._drop_chunks([doc_id, *old_ids], report)
        self.index.manifest.put_many(
            [FileRecord(self.collection, source, str(root), doc_id, "failed", signature, 0, reason)]
        )
        report.failed += 1
        report.failures.append({"path": source, "reason": reason})

    def _require_space(self, needed: int = 0) -> None:
        """``DiskFullError`` before anything is written while the data dir's volume is under
        its floor (storage.min_free_mb): the sync stops there, its files stay as they were
        (new ones pending), and the daemon retries until there is room."""
        self.index.disk.require(needed, "ingestion")

    def _write_group(self, root: Path, group: list[_Pending], report: SyncReport) -> None:
        store = self.index.store
        coll = self.collection
        chunks = [c for p in group for c in p.chunks]
        # What the group adds to the store, generously: vectors, their WAL copy, payloads.
        dimension = self.index.embedder.dimension if chunks else 0
        self._require_space(
            sum(len(c.text.encode("utf-8")) * 4 + dimension * 4 * 3 for c in chunks)
        )
        ids = [c.id for c in chunks]
        # 1. Vectors already in this collection under the same id: reuse, don't embed.
        vectors: dict[str, list[float]] = {}
        for sp in store.retrieve(coll, ids, with_vectors=True):
            if sp.dense:
                vectors[sp.id] = sp.dense
        missing = [c for c in chunks if c.id not in vectors]
        # 2. Same text the same tenant stored under another id (rename, copy): reuse its
        #    vector. Never another tenant's: whether an upload costs an embedding would tell
        #    its uploader that some other tenant holds that exact text.
        by_hash: dict[tuple[str, str], list[float]] = {}
        wanted: dict[str, set[str]] = {}
        for c in missing:
            wanted.setdefault(c.tenant, set()).add(c.text_hash)
        for tenant, tenant_hashes in sorted(wanted.items()):
            hashes = sorted(tenant_hashes)
            for start in range(0, len(hashes), 256):
                flt = {"text_hash": hashes[start : start + 256], "tenant": tenant}
                for sp in store.scroll(coll, filter=flt, with_vectors=True):
                    if sp.dense and "text_hash" in sp.payload:
                        by_hash.setdefault((tenant, sp.payload["text_hash"]), sp.dense)
        # 3. Embed each remaining distinct text once per tenant.
        to_embed: dict[tuple[str, str], str] = {}
        for c in missing:
            if (c.tenant, c.text_hash) not in by_hash:
                to_embed.setdefault((c.tenant, c.text_hash), c.text)
        if to_embed:
            keys = list(to_embed)
            embedded = self.index.embedder.embed([to_embed[k] for k in keys])
            for k, vec in zip(keys, embedded, strict=False):
                by_hash[k] = vec.tolist()
            report.embedded += len(keys)
        report.reused += len(chunks) - len(to_embed)
        extra = {cid: f for p in group for cid, f in p.fields.items()}
        points = [
            StoredPoint(
                id=c.id,
                payload={**c.payload(), **extra.get(c.id, {})},
                dense=vectors.get(c.id) or by_hash[(c.tenant, c.text_hash)],
                sparse=self.index.sparse.embed_document(c.text),
            )
            for c in chunks
        ]
        for start in range(0, len(points), 256):
            store.upsert(coll, points[start : start + 256])
        store.flush(coll)
        # 4. Stale chunks of these documents (old versions of changed text, chunks under an
        #    id the document had before) go.
        keep = set(ids)
        stale: list[str] = []
        for p in group:
            for doc_id in (p.chunks[0].doc_id, p.replaces):
                if doc_id is not None:
                    stale.extend(
                        i for i in store.ids_where(coll, {"doc_id": doc_id}) if i not in keep
                    )
        if stale:
            store.delete(coll, stale)
            store.flush(coll)
            report.chunks_deleted += len(stale)
        # 5. Only now are the files recorded as ingested.
        self.index.manifest.put_many(
            FileRecord(
                coll,
                p.source,
                str(root),
                p.chunks[0].doc_id,
                "ok",
                p.signature,
                len(p.chunks),
                None,
            )
            for p in group
        )
        report.ingested += len(group)
        report.chunks_written += len(points)

    def _drop_chunks(self, doc_ids: list[str], report: SyncReport) -> None:
        store = self.index.store
        ids = [i for d in doc_ids for i in store.ids_where(self.collection, {"doc_id": d})]
        if ids:
            self._require_space()  # a delete is a write too (the store's WAL)
            store.delete(self.collection, ids)
            store.flush(self.collection)
            report.chunks_deleted += len(ids)

    def _delete_sources(self, root: Path, sources: list[str], report: SyncReport) -> None:
        manifest = self.index.manifest
        recorded = [
            r
            for s in sources
            if (r := manifest.get(self.collection, s, root=str(root))) is not None
        ]
        doc_ids = {self.doc_id_for(root, s) for s in sources} | {r.doc_id for r in recorded}
        self._drop_chunks(sorted(doc_ids), report)
        manifest.delete_many(self.collection, str(root), sources)
        report.deleted += len(recorded)

    def _remove_orphans(self, root: Path, present: list[str], report: SyncReport) -> None:
        """Chunks whose document is neither in the folder nor recorded anywhere (crash leftovers)."""
        store = self.index.store
        expected = {self.doc_id_for(root, s) for s in present}
        expected |= {
            r.doc_id for r in self.index.manifest.records(self.collection) if r.status == "ok"
        }
        orphans = sorted(store.field_values(self.collection, "doc_id") - expected)
        if orphans:
            log.info("removing chunks of %d orphaned document(s)", len(orphans))
            self._drop_chunks(orphans, report)

    def _finish(self, report: SyncReport) -> None:
        low = self.index.disk.problem() if report.changed else None
        if low is not None:  # the index is built by the next sync that changes something
            log.warning("not building the vector index now: %s", low)
        elif report.changed:
            started = time.perf_counter()
            if self.index.store.optimize(self.collection):
                log.info(
                    "built the vector index for %s in %.1f s",
                    self.collection,
                    time.perf_counter() - started,
                )
            if self.index.disk.tight():
                # While there is room: what opening the store needs (a start on a full volume).
                self.index.store.claim_space(self.collection)
        manifest = self.index.manifest
        manifest.set_value("last_run", {**report.last_run(), "finished_at": time.time()})


def _stat_signature(path: Path) -> str:
    try:
        st = path.lstat()
        return f"stat:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "stat:missing"
