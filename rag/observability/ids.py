"""Trace ids that say whose they are, and pseudonymous user ids, from one per-deployment key.

A trace id is 32 hex digits (an OpenTelemetry trace id): 16 random, then 16 of
``HMAC-SHA256(key, random ":" tenant)``. ``POST /v1/feedback`` checks the second half against
the caller's tenant, so a tenant can score only its own traces — with no per-request record,
across restarts and workers. Users are exported as ``u_`` + 16 hex digits of the HMAC of
their id: stable for one deployment (a user's traces group together), not reversible.

The key lives in ``<data_dir>/tracing.key`` (0600, created on first use).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import re
import secrets
import threading
from pathlib import Path

__all__ = ["TraceKeys", "keys_for"]

KEY_FILE = "tracing.key"
_TRACE_RE = re.compile(r"^[0-9a-f]{32}$")
# Nonces need to be unique, not secret (the MAC half is what cannot be forged): a generator
# seeded once from the OS, not os.urandom per request (a system call that costs up to ms
# on a busy machine).
_nonces = random.Random(secrets.randbits(128))


class TraceKeys:
    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def load(cls, data_dir: Path) -> TraceKeys:
        path = data_dir / KEY_FILE
        try:
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        except (OSError, ValueError):
            pass
        key = secrets.token_bytes(32)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key.hex())
        except FileExistsError:  # another process wrote it first: use that one
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        except OSError:  # a read-only data dir: ids stay valid for this process only
            pass
        return cls(key)

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    @staticmethod
    def _owner(nonce: str, tenant: str, user: str | None) -> str:
        # The user in the MAC too: within a tenant, only who asked may rate the answer.
        return f"{nonce}:{tenant}" if user is None else f"{nonce}:{tenant}:user:{user}"

    def new_trace_id(self, tenant: str, user: str | None = None) -> str:
        nonce = f"{_nonces.getrandbits(64):016x}"
        return nonce + self._mac(self._owner(nonce, tenant, user))[:16]

    def owns(self, trace_id: str, tenant: str, user: str | None = None) -> bool:
        """Whether ``trace_id`` was issued for ``tenant`` (and ``user``) by this deployment."""
        if not isinstance(trace_id, str) or not _TRACE_RE.match(trace_id):
            return False
        nonce, mac = trace_id[:16], trace_id[16:]
        return hmac.compare_digest(mac, self._mac(self._owner(nonce, tenant, user))[:16])

    def user(self, user: str | None) -> str | None:
        """The pseudonym exported for ``user`` (None stays None)."""
        if not user:
            return None
        return "u_" + self._mac(f"user:{user}")[:16]


_keys: dict[Path, TraceKeys] = {}
_lock = threading.Lock()


def keys_for(data_dir: Path) -> TraceKeys:
    """One :class:`TraceKeys` per data dir per process."""
    data_dir = data_dir.expanduser().resolve()
    with _lock:
        keys = _keys.get(data_dir)
        if keys is None:
            keys = _keys[data_dir] = TraceKeys.load(data_dir)
        return keys
