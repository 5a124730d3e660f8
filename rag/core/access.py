"""Who may read what: a document's groups, and the one check every reader goes through.

Each chunk carries ``groups`` (indexed): the groups allowed to read its document, ``all``
meaning everyone in the tenant. A document's groups come from, in order (later wins):

1. ``access.default``: ``tenant`` (``[all]``) or ``none`` (``[]``: only a principal acting
   with every group reads it);
2. ``access.rules``: ``{path, groups}`` with a .gitignore-style ``path`` relative to the
   watched folder (``rag.core.paths.PathFilter``), the last matching rule wins;
3. ``.access.yaml`` sidecars (``groups: [...]``) in the document's folder and its parents, the
   deepest wins; a sidecar's ``files: {name: [...]}`` labels single files of its folder
   (where an upload's ``groups`` field is kept).

Beside ``groups`` each chunk carries ``readers`` (indexed, :func:`label_payload`): its groups
prefixed with its tenant (``acme/hr``), so that what a reader may read is one condition of
the store query, not two (tenant and groups): Qdrant's filtered HNSW search took twice as
long with both (benchmarks/permissions.py).

A reader (:class:`Reader`: a tenant, a user, its groups; ``groups=None``: every group) reads
a chunk when :func:`read_filter` matches its payload. That filter is the only definition:
the store applies it inside every query (retrieval, counts, listings, the answer cache's
checks) and :func:`can_read` evaluates the same filter on a payload in hand.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rag.core.groups import GROUP_RE, check_groups
from rag.core.paths import PathFilter

if TYPE_CHECKING:
    from rag.core.config import AccessSettings, Settings

__all__ = [
    "ACCESS_FILE",
    "ALL",
    "DRAWN_ON",
    "GROUP_RE",
    "Labeller",
    "Reader",
    "can_read",
    "check_groups",
    "cli_reader",
    "covers",
    "label_payload",
    "read_filter",
    "restricted",
    "set_file_groups",
]

log = logging.getLogger(__name__)

ALL = "all"  # the group of everyone in the tenant
# QueryState.extras key: the groups of the documents a cached answer drew on (the tracer
# withholds an answer drawn from restricted documents; a fresh answer's are in its hits).
DRAWN_ON = "access.drawn_on"
ACCESS_FILE = ".access.yaml"  # a folder owner's sidecar: applies to its folder and below


@dataclass(frozen=True)
class Reader:
    """Who reads: the tenant whose documents, and the groups it reads with.

    ``groups=None`` acts with every group (the CLI and control API, as ``access.cli_groups``
    leaves them by default); otherwise a set, ``all`` implied."""

    tenant: str
    groups: frozenset[str] | None = None
    user: str | None = None

    @property
    def restricted(self) -> bool:
        return self.groups is not None

    def shown_groups(self) -> list[str] | None:
        return None if self.groups is None else sorted(self.groups)


def cli_reader(settings: Settings, tenant: str | None = None) -> Reader:
    """The principal the CLI, the control API and evals act as: ``access.cli_groups`` (None:
    every group) in ``tenant`` (default: the deployment's)."""
    groups = settings.access.cli_groups
    return Reader(tenant or settings.tenant, None if groups is None else frozenset(groups), "cli")


def _readers(tenant: str, groups: Iterable[str]) -> list[str]:
    return [f"{tenant}/{g}" for g in sorted(set(groups))]  # a tenant name holds no "/"


def label_payload(tenant: str, groups: Iterable[str]) -> dict[str, Any]:
    """The permission fields of a chunk of ``tenant`` readable by ``groups`` (what ingestion
    writes and a relabel sets): ``groups`` and ``readers``."""
    listed = sorted(set(groups))
    return {"groups": listed, "readers": _readers(tenant, listed)}


def read_filter(reader: Reader) -> dict[str, Any]:
    """The store filter of what ``reader`` may read: its tenant's chunks, and (unless it acts
    with every group) only those whose groups hold ``all`` or one of the reader's groups:
    one condition on ``readers``, which says both."""
    if reader.groups is None:
        return {"tenant": reader.tenant}
    return {"readers": _readers(reader.tenant, reader.groups | {ALL})}


def _matches(payload: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    """A store filter evaluated on one payload, as the store does: every key matches; a
    list in the filter matches any of it; a list in the payload matches on any element."""
    for key, want in flt.items():
        have = payload.get(key)
        values = have if isinstance(have, list) else [have]
        wanted = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
        if not any(v in wanted for v in values if v is not None):
            return False
    return True


def can_read(reader: Reader, payload: Mapping[str, Any]) -> bool:
    """Whether ``reader`` may read the chunk (or document labels) ``payload``: the
    :func:`read_filter`, evaluated here instead of in the store."""
    return _matches(payload, read_filter(reader))


def covers(reader: Reader, other: Reader, labels: Iterable[Sequence[str]]) -> bool:
    """Whether ``reader`` may read every document ``other`` may, among documents labelled
    with ``labels`` (the distinct group lists of the index): what reading something made as
    ``other`` (an eval report of the whole index) needs."""
    if reader.tenant != other.tenant:
        return False
    for groups in labels:
        payload = {"tenant": reader.tenant, **label_payload(reader.tenant, groups)}
        if can_read(other, payload) and not can_read(reader, payload):
            return False
    return True


def restricted(groups: Sequence[str] | None) -> bool:
    """Whether a document with these groups is kept from part of its tenant (not ``all``)."""
    return ALL not in (groups or ())


def set_file_groups(folder: Path, name: str, groups: Sequence[str] | None) -> None:
    """Record ``groups`` for the file ``name`` in ``folder``'s sidecar (``files:``); None
    removes the entry. The sidecar is replaced atomically; the caller serialises writers."""
    path = folder / ACCESS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = loaded if isinstance(loaded, dict) else {}
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    assert isinstance(files, dict)
    if groups is None:
        files.pop(name, None)
    else:
        files[name] = list(groups)
    if files:
        data["files"] = files
    else:
        data.pop("files", None)
    if not data:
        path.unlink(missing_ok=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (ACCESS_FILE + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Sidecar:
    groups: tuple[str, ...] | None  # the folder's own label (None: none set)
    files: dict[str, tuple[str, ...]]  # single files of the folder


_BROKEN = _Sidecar((), {})  # an unreadable sidecar labels its folder for nobody: fail closed


class Labeller:
    """The groups of a document from ``access`` settings and the sidecars on disk."""

    def __init__(self, settings: AccessSettings):
        self.default: tuple[str, ...] = (ALL,) if settings.default == "tenant" else ()
        self.rules = [
            (PathFilter([r.path], setting="access.rules"), tuple(sorted(set(r.groups))))
            for r in settings.rules
        ]
        self._sidecars: dict[Path, tuple[tuple[int, int] | None, _Sidecar | None]] = {}
        self._lock = threading.Lock()

    def groups_for(self, root: Path, source: str) -> tuple[str, ...]:
        """The groups that may read ``source`` (a POSIX path relative to the folder ``root``)."""
        groups = self.default
        for pattern, rule_groups in self.rules:
            if pattern.excludes(source):  # "excludes": matches, in PathFilter's words
                groups = rule_groups
        parts = source.strip("/").split("/")
        folder = root
        for depth in range(len(parts)):
            sidecar = self._sidecar(folder)
            if sidecar is not None:
                if sidecar.groups is not None:
                    groups = sidecar.groups
                if depth == len(parts) - 1 and parts[-1] in sidecar.files:
                    groups = sidecar.files[parts[-1]]
            if depth < len(parts) - 1:
                folder = folder / parts[depth]
        return groups

    def _sidecar(self, folder: Path) -> _Sidecar | None:
        path = folder / ACCESS_FILE
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            cached = self._sidecars.get(folder)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        sidecar = self._read(path) if stamp is not None else None
        with self._lock:
            self._sidecars[folder] = (stamp, sidecar)
        return sidecar

    @staticmethod
    def _read(path: Path) -> _Sidecar:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict) or set(data) - {"groups", "files"}:
                raise ValueError("expected a mapping with `groups: [...]` and/or `files:`")
            groups = data.get("groups")
            own = None if groups is None else check_groups(_as_list(groups), ACCESS_FILE)
            files = data.get("files") or {}
            if not isinstance(files, dict):
                raise ValueError("`files` must map file names to lists of groups")
            return _Sidecar(
                own,
                {str(k): check_groups(_as_list(v), ACCESS_FILE) for k, v in files.items()},
            )
        except (OSError, ValueError, yaml.YAMLError) as exc:
            # Nobody reads the folder until it is fixed (a broken label must not open it).
            log.warning(
                "%s in folder %r cannot be read (%s): its documents are readable by no group "
                "until it is fixed",
                ACCESS_FILE,
                path.parent.name,
                str(exc).splitlines()[0][:200],
            )
            return _BROKEN


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ValueError(f"groups must be a list of names, got {type(value).__name__}")
