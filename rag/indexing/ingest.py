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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.core.access import ACCESS_FILE, label_payload
from rag.core.budget import WorkBudget, check_budget, work_budget
from rag.core.documents import Chunk, document_id
from rag.core.errors import SourceError, WorkBudgetExceeded
from rag.core.paths import PathFilter, escape_reason
from rag.guards.injection import chunk_fields, hidden_html_text, suspicious_hidden
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
from rag.indexing.sentence_vectors import chunk_sentences, embed_sentences, text_key
from rag.indexing.transforms import apply_transforms
from rag.store import StoredPoint

if TYPE_CHECKING:
    from rag.core.config import IngestionSettings
    from rag.indexing.chunking import Chunker
    from rag.indexing.index import Index

__all__ = [
    "TENANTS_DIR",
    "FolderScan",
    "Ingestor",
    "SyncReport",
    "analyse_file",
    "depth_reason",
    "file_budget",
    "is_ignored_name",
    "scan_folder",
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


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: candidate files, and folders it did not walk, why."""

    files: list[str] = field(default_factory=list)
    # (relative folder path, reason): nested deeper than allowed, or not listable.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def depth_reason(max_depth: int) -> str:
    """The reason a folder nested deeper than ``ingestion.max_depth`` is skipped."""
    return (
        f"folder nested deeper than ingestion.max_depth ({max_depth} folders): its files are "
        "not ingested; move them up, or raise ingestion.max_depth"
    )


def scan_folder(
    root: Path,
    ignore_hidden: bool = True,
    exclude: PathFilter | None = None,
    max_depth: int | None = None,
    depth_shown: int | None = None,
) -> FolderScan:
    """Every candidate file under ``root`` as a relative POSIX path (symlinked folders not
    followed), less those ``exclude`` (``ingestion.exclude``) matches; in ``os.walk`` order.

    Iterative, so no nesting can exhaust the stack; a folder more than ``max_depth`` levels
    below ``root`` is not entered but reported in ``skipped`` (the reason names
    ``depth_shown``, the limit as configured, default ``max_depth``), as is a folder that
    cannot be listed (a name too long for the OS, permission denied)."""
    scan = FolderScan()
    # (folder relative to root, its depth); popped last-first, pushed in reverse: pre-order.
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            scan.skipped.append(
                (rel, depth_reason(max_depth if depth_shown is None else depth_shown))
            )
            continue
        folder = root / rel if rel else root
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            if rel:  # the root itself failing is the caller's error (sync_folder checks it)
                scan.skipped.append(
                    (rel, f"folder cannot be listed: {exc.strerror or type(exc).__name__}")
                )
            continue
        subfolders: list[str] = []
        files: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links, as os.walk does: a linked folder ...
            except OSError:
                is_dir = False
            if is_dir:
                if entry.is_symlink():  # ... is neither walked nor a file
                    continue
                sub = f"{rel}/{entry.name}" if rel else entry.name
                hidden = ignore_hidden and entry.name.startswith(".")
                if not hidden and not (exclude and exclude.excludes_folder(sub)):
                    subfolders.append(entry.name)
            elif not is_ignored_name(entry.name, ignore_hidden):
                files.append(entry.name)
        prefix = f"{rel}/" if rel else ""
        scan.files.extend(prefix + name for name in sorted(files))
        stack.extend((prefix + name, depth + 1) for name in sorted(subfolders, reverse=True))
    if exclude:
        scan.files = exclude.keep(scan.files)
    return scan


def walk_folder(
    root: Path,
    ignore_hidden: bool = True,
    exclude: PathFilter | None = None,
    max_depth: int | None = None,
) -> list[str]:
    """The files of :func:`scan_folder` (folders it did not walk left out)."""
    return scan_folder(root, ignore_hidden, exclude, max_depth).files


def file_budget(ingestion: IngestionSettings, size: int) -> AbstractContextManager[WorkBudget]:
    """The work budget of one file of ``size`` bytes (``ingestion.parse_timeout_s`` plus
    ``parse_seconds_per_mb`` per MB; ``max_unpacked_mb``): ``with file_budget(...):``."""
    per_mb = ingestion.parse_seconds_per_mb
    seconds = ingestion.parse_timeout_s + per_mb * size / 1e6
    setting = "ingestion.parse_timeout_s" + (
        f" + ingestion.parse_seconds_per_mb ({per_mb:g} s) per MB" if per_mb else ""
    )
    return work_budget(
        seconds, setting, max_unpacked_bytes=int(ingestion.max_unpacked_mb * 1_000_000)
    )


def analyse_file(
    data: bytes,
    suffix: str,
    name: str,
    *,
    source: str,
    tenant: str,
    doc_id: str,
    chunker: Chunker,
    transforms: Sequence[Any] = (),
    before_scoring: Callable[[list[Chunk]], None] | None = None,
    steps: StepTimes | None = None,
) -> tuple[list[Chunk], dict[str, dict[str, Any]]]:
    """What ingestion does with one file's bytes before embedding: parse, transform, chunk,
    then score every chunk for prompt injection (``before_scoring``, e.g. PII detection, runs
    on the chunks first). Returns the chunks and, per chunk id, the detector's payload fields.

    Raises ``ParseError`` with the reason the file is failed: the parser's, "no text chunks",
    an unexpected parser or transform error (logged), or ``WorkBudgetExceeded`` when the
    current ``rag.core.budget.work_budget`` runs out. Errors of the scoring stage propagate.
    ``steps``: where the time went (parse, chunk, pii, injection), added to."""
    steps = steps if steps is not None else StepTimes()
    try:
        with steps.timing("parse"):
            parsed = parse_bytes(data, suffix, name)
            check_budget()
            parsed = apply_transforms(transforms, parsed, source)
            check_budget()
        with steps.timing("chunk"):
            chunks = chunker.run(parsed, source, tenant, doc_id)
    except ParseError:
        raise
    except Exception as exc:  # a parser bug must not stop the sync
        log.exception("unexpected error parsing %s", source)
        raise ParseError(f"could not parse ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not chunks:
        raise ParseError("no text chunks could be made from this file")
    if before_scoring is not None:
        with steps.timing("pii"):
            before_scoring(chunks)
    with steps.timing("injection"):
        # Hidden HTML text that scores counts against the chunk holding it.
        hidden = (
            suspicious_hidden(hidden_html_text(data.decode("utf-8", "replace")))
            if PARSERS.name_for(suffix) == "html"
            else []
        )
        fields: dict[str, dict[str, Any]] = {}
        for c in chunks:
            check_budget()
            fields[c.id] = chunk_fields(c.text, hidden)
    return chunks, fields


class StepTimes(dict[str, float]):
    """Seconds per ingest step (read, parse, chunk, pii, injection, embed, sentence_vectors,
    upsert, manifest, index): ``SyncReport.steps``, what ``benchmarks/ingest.py`` reports per
    1,000 chunks."""

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[step] = self.get(step, 0.0) + time.perf_counter() - started


@dataclass
class SyncReport:
    files_seen: int = 0
    ingested: int = 0  # files (re)written to the index
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    embedded: int = 0  # chunk texts sent to the model
    # Sentences embedded for the answer path (rag.indexing.sentence_vectors), beside the chunks.
    sentences_embedded: int = 0
    reused: int = (
        0  # chunks whose vector came from the store (already there, or same text elsewhere)
    )
    chunks_written: int = 0
    chunks_deleted: int = 0
    relabelled: int = 0  # documents given other groups in place (permissions changed)
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    steps: StepTimes = field(default_factory=StepTimes)  # seconds per step (StepTimes)

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
            "relabelled": self.relabelled,
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
    # Who may read it (rag/core/access.py): every chunk's ``groups``.
    groups: tuple[str, ...] = ()


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
            scan = scan_folder(
                root,
                self.settings.ingestion.ignore_hidden,
                self.settings.ingestion.path_filter(),
                self._depth_limit(root),
                self.settings.ingestion.max_depth,
            )
            present = self._outside_data_dir(root, scan.files)
            folders = dict(self._outside_data_dir_pairs(root, scan.skipped))
            known = {r.source for r in self.index.manifest.records(self.collection, root=str(root))}
            gone = sorted(known - set(present) - set(folders))
            report = self._apply(root, present, gone, progress, folders)
            self._remove_orphans(root, present, report)
            self._relabel(root, report)
            self._fill_sentence_vectors(report, progress)
            self._finish(report)
            return report

    def _depth_limit(self, root: Path) -> int:
        """How many folders deep a walk of ``root`` goes: ``ingestion.max_depth``, counted
        below each tenant's own folder in the tenants root."""
        limit = self.settings.ingestion.max_depth
        return limit + 1 if root == self.tenants_root else limit

    def _outside_data_dir_pairs(
        self, root: Path, pairs: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        kept = set(self._outside_data_dir(root, [p for p, _ in pairs]))
        return [(p, why) for p, why in pairs if p in kept]

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
            folders: dict[str, str] = {}  # folders too deep (or unlistable): path -> reason
            limit = self._depth_limit(root)
            # A sidecar is no document: its change relabels (below), nothing to ingest.
            for s in sorted({s for s in sources if s.rsplit("/", 1)[-1] != ACCESS_FILE}):
                p = root / s
                parts = s.split("/")
                if len(parts) - 1 > limit:  # inside a folder too deep to walk
                    folders["/".join(parts[: limit + 1])] = depth_reason(
                        self.settings.ingestion.max_depth
                    )
                    continue
                if p.is_dir() and not p.is_symlink():
                    if len(parts) > limit:
                        folders[s] = depth_reason(self.settings.ingestion.max_depth)
                        continue
                    scan = scan_folder(
                        p,
                        self.settings.ingestion.ignore_hidden,
                        max_depth=limit - len(parts),
                        depth_shown=self.settings.ingestion.max_depth,
                    )
                    present.extend(f"{s}/{sub}" for sub in scan.files)
                    folders.update((f"{s}/{sub}", why) for sub, why in scan.skipped)
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
            folders = {
                f: why
                for f, why in self._outside_data_dir_pairs(root, sorted(folders.items()))
                if not excluded.excludes_folder(f)
            }
            gone = sorted(set(gone) - set(present) - set(folders))
            report = self._apply(root, present, gone, progress, folders)
            self._relabel(root, report)
            self._fill_sentence_vectors(report, progress)
            self._finish(report)
            return report

    # -- core ------------------------------------------------------------------------
    def _apply(
        self,
        root: Path,
        present: list[str],
        gone: list[str],
        progress: Progress | None,
        folders: dict[str, str] | None = None,
    ) -> SyncReport:
        t0 = time.perf_counter()
        report = SyncReport(files_seen=len(present))
        for folder, reason in sorted((folders or {}).items()):
            self._skip_folder(root, folder, reason, report)
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
            with report.steps.timing("read"):
                # A broken link's target is named relative to the folder (a tenant's own folder).
                inside = root / tenant if root == self.tenants_root else root
                data = read_file_bytes(path, self.max_bytes, inside)
        except ParseError as exc:
            signature = _stat_signature(path)
            self._record_failure(root, source, doc_id, signature, str(exc), prior, report)
            return None
        with report.steps.timing("read"):
            signature = content_signature(data, suffix)
        # A file failed for its time budget is recorded under the budget it had: the same
        # budget does not retry it, a raised one does.
        ingestion = self.settings.ingestion
        over_budget = (
            f"{signature}:budget{ingestion.parse_timeout_s:g}+{ingestion.parse_seconds_per_mb:g}"
        )
        if prior is not None and prior.signature in (signature, over_budget) and not old_ids:
            if prior.status == "ok":
                report.unchanged += 1
            else:  # same bad content: still failed, not retried until it changes
                report.failed += 1
                report.failures.append({"path": source, "reason": prior.reason or ""})
            return None
        # Parse, transform, chunk and score under one time budget (rag.core.budget): one
        # file's worst case must not hold the queue, everyone's uploads behind it.
        try:
            with file_budget(ingestion, len(data)):
                chunks, fields = analyse_file(
                    data,
                    suffix,
                    path.name,
                    source=source,
                    tenant=tenant,
                    doc_id=doc_id,
                    chunker=self.index.chunker,
                    transforms=self.index.transforms,
                    before_scoring=self._record_pii,
                    steps=report.steps,
                )
        except WorkBudgetExceeded as exc:
            self._record_failure(root, source, doc_id, over_budget, str(exc), prior, report)
            return None
        except ParseError as exc:
            self._record_failure(root, source, doc_id, signature, str(exc), prior, report)
            return None
        groups = self.index.labeller.groups_for(root, source)
        return _Pending(source, signature, chunks, old_ids[0] if old_ids else None, fields, groups)

    def _skip_folder(self, root: Path, folder: str, reason: str, report: SyncReport) -> None:
        """A folder the walk did not enter is listed under ``skipped`` with the reason (for a
        tenant's, in that tenant's documents), so nobody wonders where its files went."""
        report.skipped += 1
        manifest = self.index.manifest
        prior = manifest.get(self.collection, folder, root=str(root))
        if prior is not None and prior.status == "skipped" and prior.reason == reason:
            return
        doc_id = self.doc_id_for(root, folder)
        manifest.put_many(
            [FileRecord(self.collection, folder, str(root), doc_id, "skipped", "-", 0, reason)]
        )

    def _record_pii(self, chunks: list[Chunk]) -> None:
        """PII detected once per chunk, stored with it (rag.guards.pii.outbound): when passages will
        be sent pseudonymised, queries then analyse only their question."""
        from rag.guards.pii.outbound import document_pii
        from rag.guards.pii.transform import detects_at_ingest

        if not detects_at_ingest(self.index.settings):
            return
        from rag.guards.pii import detector_for

        detector = detector_for(self.index.settings.pii)
        entries = document_pii(detector, [c.text for c in chunks], each=check_budget)
        for c, entry in zip(chunks, entries, strict=True):
            c.pii = entry

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
        # What the group adds to the store, generously: vectors, their WAL copy, payloads, and
        # the sentence vectors (float16, a dozen a chunk, their WAL copy).
        dimension = self.index.embedder.dimension if chunks else 0
        self._require_space(
            sum(len(c.text.encode("utf-8")) * 4 + dimension * (4 * 3 + 2 * 12 * 2) for c in chunks)
        )
        ids = [c.id for c in chunks]
        steps = report.steps
        with steps.timing("embed"):
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
                embedded = self.index.embedder.embed_chunks([to_embed[k] for k in keys])
                for k, vec in zip(keys, embedded, strict=False):
                    by_hash[k] = vec.tolist()
                report.embedded += len(keys)
            report.reused += len(chunks) - len(to_embed)
        with steps.timing("sentence_vectors"):
            # 3b. The sentences the answer path scores, of every chunk whose sentences are not
            #     stored (new chunks, and those of an older index): rag.indexing.sentence_vectors.
            #     A sentence that is its chunk's whole text takes the chunk's vector.
            sentence_file = self.index.sentence_vectors.file(coll)
            assert sentence_file is not None
            covered = sentence_file.covered(ids)
            uncovered = [c for c in chunks if c.id not in covered]
            sentences = {c.id: chunk_sentences(c.text, c.title, c.section) for c in uncovered}
            known = {
                text_key(c.text): np.asarray(
                    vectors.get(c.id) or by_hash[(c.tenant, c.text_hash)], dtype=np.float32
                )
                for c in uncovered
            }
            by_key, sentences_embedded = embed_sentences(
                self.index.embedder.embed_documents,
                [t for ts in sentences.values() for t in ts],
                known,
            )
            report.sentences_embedded += sentences_embedded
        with steps.timing("upsert"):
            extra = {cid: f for p in group for cid, f in p.fields.items()}
            labels = {c.id: label_payload(c.tenant, p.groups) for p in group for c in p.chunks}
            points = [
                StoredPoint(
                    id=c.id,
                    payload={**c.payload(), **extra.get(c.id, {}), **labels[c.id]},
                    dense=vectors.get(c.id) or by_hash[(c.tenant, c.text_hash)],
                    sparse=self.index.sparse.embed_document(c.text),
                )
                for c in chunks
            ]
            for start in range(0, len(points), 256):
                store.upsert(coll, points[start : start + 256])
            store.flush(coll)
        if uncovered:
            with steps.timing("sentence_vectors"):
                # After the chunks: a sentence vector without its chunk would only be unused.
                links = {
                    c.id: [text_key(c.text), *map(text_key, sentences[c.id])] for c in uncovered
                }
                sentence_file.put(links, {k: by_key[k] for ks in links.values() for k in ks})
        # 4. Stale chunks of these documents (old versions of changed text, chunks under an
        #    id the document had before) go.
        with steps.timing("upsert"):
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
                sentence_file.forget(stale)
                report.chunks_deleted += len(stale)
        # 5. Only now are the files recorded as ingested.
        with steps.timing("manifest"):
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
            self.index.manifest.set_labels(coll, {p.chunks[0].doc_id: p.groups for p in group})
        report.ingested += len(group)
        report.chunks_written += len(points)

    def _relabel(self, root: Path, report: SyncReport) -> None:
        """Documents of ``root`` whose groups the rules and sidecars now set differently from
        what their chunks carry get the new ``groups`` in place (``set_payload``: nothing is
        re-embedded or rewritten). Documents indexed before labels existed get theirs here."""
        manifest = self.index.manifest
        coll = self.collection
        stored = manifest.labels(coll)
        changed: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for rec in manifest.records(coll, root=str(root), status="ok"):
            groups = self.index.labeller.groups_for(root, rec.source)
            tenant = self.tenant_for(root, rec.source)
            if tenant is not None and stored.get(rec.doc_id) != groups:
                changed.setdefault((tenant, groups), []).append(rec.doc_id)
        if not changed:
            return
        self._require_space()  # a payload update is a write too (the store's WAL)
        store = self.index.store
        for (tenant, groups), doc_ids in sorted(changed.items()):
            for start in range(0, len(doc_ids), 256):
                batch = doc_ids[start : start + 256]
                store.set_payload(coll, label_payload(tenant, groups), {"doc_id": batch})
        store.flush(coll)
        manifest.set_labels(coll, {d: g for (_, g), ids in changed.items() for d in ids})
        report.relabelled += sum(len(ids) for ids in changed.values())

    def _drop_chunks(self, doc_ids: list[str], report: SyncReport) -> None:
        store = self.index.store
        ids = [i for d in doc_ids for i in store.ids_where(self.collection, {"doc_id": d})]
        if ids:
            self._require_space()  # a delete is a write too (the store's WAL)
            store.delete(self.collection, ids)
            store.flush(self.collection)
            sentence_file = self.index.sentence_vectors.file(self.collection, create=False)
            if sentence_file is not None:
                sentence_file.forget(ids)
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

    def _fill_sentence_vectors(self, report: SyncReport, progress: Progress | None) -> None:
        """Chunks of the collection without stored sentence vectors (an index built before
        they were stored, or whose vectors file was made otherwise) get them now; answers
        embed those sentences per question until then."""
        store, coll = self.index.store, self.collection
        sentence_file = self.index.sentence_vectors.file(coll)
        assert sentence_file is not None
        total = store.count(coll)
        lacking = total - sentence_file.chunk_count()
        if lacking <= 0:
            return
        self._require_space(lacking * 12 * self.index.embedder.dimension * 2)
        log.warning(
            "%d of %d chunks of %s have no stored sentence vectors (the index was built before "
            "answers used them): computing them now, once; answers embed those sentences per "
            "question until this is done",
            lacking,
            total,
            coll,
        )
        started = time.perf_counter()
        done = 0
        batch: list[StoredPoint] = []

        def fill(points: list[StoredPoint]) -> int:
            have = sentence_file.covered(p.id for p in points)
            todo = [p for p in points if p.id not in have and p.dense]
            if not todo:
                return 0
            texts = {p.id: str(p.payload.get("text") or "") for p in todo}
            sentences = {
                p.id: chunk_sentences(
                    texts[p.id],
                    p.payload.get("title"),
                    [str(h) for h in p.payload.get("section") or []],
                )
                for p in todo
            }
            known = {text_key(texts[p.id]): np.asarray(p.dense, dtype=np.float32) for p in todo}
            by_key, embedded = embed_sentences(
                self.index.embedder.embed_documents,
                [t for ts in sentences.values() for t in ts],
                known,
            )
            links = {
                pid: [text_key(texts[pid]), *map(text_key, ss)] for pid, ss in sentences.items()
            }
            sentence_file.put(links, {k: by_key[k] for ks in links.values() for k in ks})
            report.sentences_embedded += embedded
            return len(todo)

        with report.steps.timing("sentence_vectors"):
            for point in store.scroll(coll, with_vectors=True):
                batch.append(point)
                if len(batch) >= 256:
                    done += fill(batch)
                    batch = []
                    if progress:
                        progress("chunks (sentence vectors)", done, lacking)
            if batch:
                done += fill(batch)
                if progress:
                    progress("chunks (sentence vectors)", done, lacking)
        log.info(
            "stored the sentence vectors of %d chunk(s) of %s in %.1f s",
            done,
            coll,
            time.perf_counter() - started,
        )

    def _finish(self, report: SyncReport) -> None:
        low = self.index.disk.problem() if report.changed else None
        if low is not None:  # the index is built by the next sync that changes something
            log.warning("not building the vector index now: %s", low)
        elif report.changed:
            started = time.perf_counter()
            with report.steps.timing("index"):
                built = self.index.store.optimize(self.collection)
            if built:
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
