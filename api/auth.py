"""API keys: each bound to one tenant, stored only as salted hashes.

A key reads ``rk_<id>_<secret>``: the id finds the record, the secret is checked against
``sha256(salt || secret)`` in constant time. The secret carries 256 random bits, so a fast
hash is safe (nobody can brute-force the preimage) and costs microseconds per request, where
a password hash (scrypt) would cost tens of milliseconds on every call.

Records live in ``<data_dir>/keys.json`` (written atomically under a file lock, re-read when
it changes, so ``rag keys create/revoke`` take effect on a running server) and may also be
listed in config (``api.keys``, entries from ``rag keys create --config-entry``).

A new tenant may not be named like a top-level folder of the default tenant's watched folders
(``policies`` beside ``policies/backup-policy.md``): its uploads are named ``<tenant>/<path>``,
so they would read like that folder's documents wherever documents appear by name (``rag
status``, ``rag export``, citations, the manifest). The index tells them apart either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.access import Reader, check_groups, cli_reader

if TYPE_CHECKING:
    from rag.core.config import Settings

__all__ = [
    "LOCAL_KEY_FILE",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "hash_secret",
    "watched_folder_holding",
]

KEYS_FILE = "keys.json"
LOCAL_KEY_FILE = "local.key"
_KEY_RE = re.compile(r"^rk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8")).hexdigest()


def watched_folder_holding(data_dir: Path, name: str) -> Path | None:
    """A watched folder (recorded in the data dir's manifest) with a top-level folder ``name``,
    on disk or among the documents it indexed; None when there is none."""
    from rag.indexing.ingest import TENANTS_DIR
    from rag.indexing.manifest import Manifest

    path = data_dir / "manifest.sqlite"
    if not path.exists():
        return None
    tenants_root = str((data_dir / TENANTS_DIR).resolve())
    manifest = Manifest(path, readonly=True)
    try:
        roots = [r for r in manifest.roots() if r != tenants_root]
        for root in roots:
            if (Path(root) / name).is_dir():
                return Path(root)
        prefix = name + "/"
        for collection in manifest.collections():
            for rec in manifest.records(collection):
                if rec.root != tenants_root and rec.source.startswith(prefix):
                    return Path(rec.root)
    finally:
        manifest.close()
    return None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (or a token's ``jwt:`` subject), the tenant whose
    documents it may see, its user and the groups it reads with (None: ``access.cli_groups``,
    the deployment's own key acting as the operator)."""

    key_id: str
    tenant: str
    name: str
    user: str | None = None
    groups: tuple[str, ...] | None = ()

    def reader(self, settings: Settings) -> Reader:
        """What this principal may read (rag/core/access.py): the one check every route uses."""
        if self.groups is None:
            return cli_reader(settings, self.tenant)
        return Reader(self.tenant, frozenset(self.groups), self.user)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    tenant: str
    name: str
    salt: str
    hash: str
    created_at: float
    revoked_at: float | None = None
    source: str = "file"  # file | config
    user: str | None = None  # who holds it (traces carry it); None: the key's id stands in
    # The groups it reads with (rag/core/access.py); None: the deployment's own key (`rag keys
    # local`), acting as access.cli_groups. A key created without --groups reads `all` only.
    groups: tuple[str, ...] | None = ()

    def public(self) -> dict[str, Any]:
        """What `rag keys list` shows: never the hash or salt."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "user": self.user,
            "groups": None if self.groups is None else list(self.groups),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "revoked": self.revoked_at is not None,
            "source": self.source,
        }

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "salt": self.salt,
            "hash": self.hash,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "user": self.user,
            "groups": None if self.groups is None else list(self.groups),
        }


def _record(raw: dict[str, Any], source: str) -> KeyRecord:
    try:
        rec = KeyRecord(
            id=str(raw["id"]),
            tenant=str(raw["tenant"]),
            name=str(raw.get("name") or ""),
            salt=str(raw["salt"]),
            hash=str(raw["hash"]),
            created_at=float(raw.get("created_at") or 0.0),
            revoked_at=float(raw["revoked_at"]) if raw.get("revoked_at") is not None else None,
            source=source,
            user=str(raw["user"]) if raw.get("user") else None,
            # An entry without the field (written before permissions) reads `all` only.
            groups=None
            if "groups" in raw and raw["groups"] is None
            else check_groups(raw.get("groups") or (), f"API key {raw.get('id')}"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"bad API key entry ({source}): needs id, tenant, salt and hash ({exc})"
        ) from exc
    if not _TENANT_RE.match(rec.tenant):
        raise ValueError(
            f"bad API key entry {rec.id}: tenant {rec.tenant!r} must match {_TENANT_RE.pattern}"
        )
    return rec


class KeyStore:
    def __init__(self, data_dir: Path, config_keys: list[dict[str, str]] | None = None):
        self.data_dir = data_dir
        self.path = data_dir / KEYS_FILE
        self._config = {r.id: r for r in (_record(dict(k), "config") for k in (config_keys or []))}
        self._file: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------
    def _refresh(self) -> dict[str, KeyRecord]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._file = self._read() if stamp else {}
                self._stamp = stamp
            return self._file

    def _read(self) -> dict[str, KeyRecord]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ValueError(
                f"{self.path} is not valid JSON ({exc}); restore it or delete it and create keys again"
            ) from exc
        return {r.id: r for r in (_record(k, "file") for k in raw.get("keys", []))}

    def records(self) -> list[KeyRecord]:
        return sorted(
            [*self._config.values(), *self._refresh().values()], key=lambda r: (r.created_at, r.id)
        )

    def verify(self, token: str) -> Principal | None:
        """The principal for a presented key, or None (unknown, malformed, revoked)."""
        m = _KEY_RE.match(token.strip())
        if not m:
            return None
        key_id, secret = m.groups()
        rec = self._config.get(key_id) or self._refresh().get(key_id)
        if rec is None or rec.revoked_at is not None:
            return None
        if not hmac.compare_digest(hash_secret(rec.salt, secret), rec.hash):
            return None
        return Principal(rec.id, rec.tenant, rec.name, rec.user, rec.groups)

    # -- writing (the CLI) -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, KeyRecord]]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / (KEYS_FILE + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._read()
            yield records
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(
                json.dumps({"keys": [r.stored() for r in records.values()]}, indent=2),
                encoding="utf-8",
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    @staticmethod
    def new_key(
        tenant: str,
        name: str = "",
        *,
        user: str | None = None,
        groups: Sequence[str] | None = (),
    ) -> tuple[KeyRecord, str]:
        """A fresh record and its plaintext key (shown once, never stored)."""
        if not _TENANT_RE.match(tenant):
            raise ValueError(f"tenant {tenant!r} must be 1-64 letters, digits, '_' or '-'")
        checked = None if groups is None else check_groups(groups, "--groups")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        rec = KeyRecord(
            key_id,
            tenant,
            name,
            salt,
            hash_secret(salt, secret),
            time.time(),
            user=user or None,
            groups=checked,
        )
        return rec, f"rk_{key_id}_{secret}"

    def check_new_tenant(self, tenant: str, default_tenant: str) -> None:
        """Refuse a new tenant (one no key names yet) named like a top-level folder of a watched
        folder: ValueError saying why and what to do. The default tenant owns those folders."""
        if tenant == default_tenant or any(r.tenant == tenant for r in self.records()):
            return
        folder = watched_folder_holding(self.data_dir, tenant)
        if folder is not None:
            raise ValueError(
                f"tenant {tenant!r} is also the name of a folder in the watched folder {folder}: "
                f"its uploads would be named like that folder's documents ({tenant}/<path>) in "
                "`rag status`, `rag export` and citations. Choose another tenant name."
            )

    def create(
        self,
        tenant: str,
        name: str = "",
        *,
        default_tenant: str | None = None,
        user: str | None = None,
        groups: Sequence[str] | None = (),
    ) -> tuple[KeyRecord, str]:
        """A new key for ``tenant``. With ``default_tenant`` (what ``rag keys create`` passes), a
        new tenant named like a watched folder's top-level folder is refused (``check_new_tenant``)."""
        rec, key = self.new_key(tenant, name, user=user, groups=groups)
        if default_tenant is not None:
            self.check_new_tenant(tenant, default_tenant)
        with self._locked() as records:
            records[rec.id] = rec
        return rec, key

    def revoke(self, key_id: str) -> bool:
        """True when the key existed in the keys file (config keys are removed from config)."""
        with self._locked() as records:
            rec = records.get(key_id)
            if rec is None:
                return False
            if rec.revoked_at is None:
                records[key_id] = replace(rec, revoked_at=time.time())
            return True

    def set_groups(self, key_id: str, groups: Sequence[str]) -> KeyRecord | None:
        """Give a key of the keys file other groups (a running server reads them on the key's
        next request); None when there is no such key there."""
        checked = check_groups(groups, "--groups")
        with self._locked() as records:
            rec = records.get(key_id)
            if rec is None:
                return None
            records[key_id] = replace(rec, groups=checked)
            return records[key_id]

    def local_key(self, tenant: str) -> str:
        """The deployment's own key (``<data_dir>/local.key``), created on first use or after a revoke."""
        path = self.data_dir / LOCAL_KEY_FILE
        try:
            key = path.read_text(encoding="utf-8").strip()
            principal = self.verify(key)
            if principal is not None:
                if principal.groups is not None:  # made before permissions: the operator's
                    with self._locked() as records:
                        rec = records.get(principal.key_id)
                        if rec is not None:
                            records[rec.id] = replace(rec, groups=None)
                return key
        except FileNotFoundError:
            pass
        _, key = self.create(tenant, "local", groups=None)  # the operator's: access.cli_groups
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        os.replace(tmp, path)
        return key
