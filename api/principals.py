"""Principals behind a company's login: a signed JWT as the bearer, verified with PyJWT.

``auth.jwt`` names the issuer and audience a token must carry, and ``jwks``: the signing keys,
a JWKS file path (re-read when it changes) or an ``https://`` URL (PyJWT's ``PyJWKClient``,
cached ``jwks_cache_seconds``). The token's ``kid`` picks the key; ``exp``, ``iss`` and
``aud`` are required; only ``algorithms`` are accepted (never ``none``, never HMAC with a
public key). The user is the ``user_claim`` (default ``sub``), the groups the
``groups_claim`` (default ``groups``: a list, or one comma-separated string), the tenant the
``tenant_claim`` when set, else the deployment's. Whatever fails is a 401 saying what to fix,
without echoing the token.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from api.auth import Principal
from rag.core.access import check_groups
from rag.core.config import JwtSettings

__all__ = ["JwtError", "JwtVerifier", "looks_like_jwt"]


class JwtError(ValueError):
    """Why a token was refused (shown to its bearer: nothing secret in it)."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("rk_")


class JwtVerifier:
    def __init__(self, settings: JwtSettings, default_tenant: str):
        self.settings = settings
        self.default_tenant = default_tenant
        self._lock = threading.Lock()
        self._file_stamp: tuple[int, int] | None = None
        self._file_keys: dict[str, Any] = {}
        self._client: Any = None

    def _key(self, token: str) -> Any:
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise JwtError(f"not a well-formed JWT ({exc})") from None
        source = self.settings.jwks
        if source.startswith(("https://", "http://")):
            with self._lock:
                if self._client is None:
                    self._client = jwt.PyJWKClient(
                        source,
                        cache_jwk_set=True,
                        lifespan=int(self.settings.jwks_cache_seconds) or 1,
                    )
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWTError as exc:
                raise JwtError(f"no signing key for this token in auth.jwt.jwks ({exc})") from None
        keys = self._read_file(Path(source))
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid not in keys:
            raise JwtError("the token's key id (kid) is not in auth.jwt.jwks")
        return keys[kid]

    def _read_file(self, path: Path) -> dict[str, Any]:
        import jwt

        try:
            st = path.stat()
        except OSError as exc:
            raise JwtError(f"auth.jwt.jwks cannot be read ({exc.strerror})") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._file_stamp:
                try:
                    jwks = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
                except (OSError, ValueError, jwt.PyJWTError) as exc:
                    raise JwtError(f"auth.jwt.jwks is not a valid JWKS ({exc})") from None
                self._file_keys = {str(k.key_id or i): k.key for i, k in enumerate(jwks.keys)}
                self._file_stamp = stamp
            return self._file_keys

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; JwtError saying why it is not one."""
        import jwt

        cfg = self.settings
        key = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=cfg.algorithms,
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise JwtError(f"the token was refused: {exc}") from None
        user = claims.get(cfg.user_claim)
        if not isinstance(user, str) or not user:
            raise JwtError(f"the token has no user claim {cfg.user_claim!r} (auth.jwt.user_claim)")
        raw = claims.get(cfg.groups_claim, [])
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, list):
            raise JwtError(f"the token's {cfg.groups_claim!r} claim is not a list of groups")
        try:
            groups = check_groups([str(g) for g in raw], f"the token's {cfg.groups_claim!r}")
        except ValueError as exc:
            raise JwtError(str(exc)) from None
        tenant = self.default_tenant
        if cfg.tenant_claim is not None:
            tenant = str(claims.get(cfg.tenant_claim) or "")
            if not tenant:
                raise JwtError(f"the token has no tenant claim {cfg.tenant_claim!r}")
        # The rate-limit bucket and trace identity: per user, not per token.
        bucket = "jwt:" + hashlib.sha256(json.dumps([tenant, user]).encode()).hexdigest()[:16]
        return Principal(bucket, tenant, "jwt", user, groups)
