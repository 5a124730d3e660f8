"""``rag serve`` (API + watch daemon in one process) and ``rag keys create|list|revoke|local``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.core import daemon_client, echo_err, fail, get_settings, print_json, run_runtime

__all__ = ["keys_create", "keys_groups", "keys_list", "keys_local", "keys_revoke", "serve"]


def _store() -> Any:
    from api.auth import KeyStore

    settings = get_settings()
    try:
        return KeyStore(settings.resolved_data_dir(), settings.api.keys)
    except ValueError as exc:
        fail(str(exc), code=2)


def keys_create(
    tenant: Annotated[
        str, typer.Option("--tenant", help="The tenant whose documents the key may see")
    ],
    name: Annotated[str, typer.Option("--name", help="A label shown by `rag keys list`")] = "",
    user: Annotated[
        str | None, typer.Option("--user", help="Who holds the key (traces carry it)")
    ] = None,
    groups: Annotated[
        str,
        typer.Option(
            "--groups",
            help="Comma-separated groups the key reads with, e.g. hr,eng (besides `all`, "
            "which every key reads; access.rules and .access.yaml label documents)",
        ),
    ] = "",
    config_entry: Annotated[
        bool,
        typer.Option(
            "--config-entry",
            help="Print a hashed entry for api.keys in the config instead of storing it",
        ),
    ] = False,
) -> None:
    """Create a key and print it once (only its salted hash is kept)."""
    from api.auth import KeyStore

    settings = get_settings()
    try:
        if config_entry:
            rec, key = KeyStore.new_key(tenant, name, user=user, groups=_groups(groups))
            _store().check_new_tenant(tenant, settings.tenant)
            typer.echo(key)
            typer.echo("# add under api.keys in your config:", err=True)
            typer.echo(
                "  - " + json.dumps({k: v for k, v in rec.stored().items() if v is not None}),
                err=True,
            )
            return
        rec, key = _store().create(
            tenant, name, default_tenant=settings.tenant, user=user, groups=_groups(groups)
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    typer.echo(key)
    shown = ", ".join(rec.groups or ()) or "none besides `all`"
    typer.echo(
        f"key {rec.id} for tenant '{rec.tenant}' (groups: {shown}): shown once, store it now",
        err=True,
    )


def _groups(raw: str) -> list[str]:
    return [g.strip() for g in raw.split(",") if g.strip()]


def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Keys with their tenant and state (never the secret)."""
    rows = [r.public() for r in _store().records()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no keys yet: `rag keys create --tenant NAME`")
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        groups = "access.cli_groups" if r["groups"] is None else ",".join(r["groups"]) or "-"
        typer.echo(
            f"{r['id']}  {r['tenant']:<16} {state:<8} {r['created_at']}  user={r['user'] or '-'} "
            f"groups={groups}  {r['name']} ({r['source']})"
        )


def keys_groups(
    key_id: Annotated[str, typer.Argument(help="The id from `rag keys list` (or the whole key)")],
    groups: Annotated[
        str, typer.Option("--groups", help="The key's groups from now on, comma-separated")
    ],
) -> None:
    """Change the groups a key reads with: a running server uses them from its next request."""
    if key_id.startswith("rk_"):
        key_id = key_id.split("_")[1]
    try:
        rec = _store().set_groups(key_id, _groups(groups))
    except ValueError as exc:
        fail(str(exc), code=2)
    if rec is None:
        fail(f"no key {key_id} in the keys file (`rag keys list`)")
    typer.echo(f"key {key_id}: groups {','.join(rec.groups or ()) or '-'}")


def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id from `rag keys list` (or the whole key)")],
) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    if key_id.startswith("rk_"):
        key_id = key_id.split("_")[1]
    if not _store().revoke(key_id):
        fail(
            f"no key {key_id} in the keys file (`rag keys list`); keys listed in config are removed from the config"
        )
    typer.echo(f"revoked {key_id}")


def keys_local() -> None:
    """Print this deployment's local key for the default tenant, creating it on first use."""
    settings = get_settings()
    typer.echo(_store().local_key(settings.tenant))


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default api.host)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default api.port)")] = None,
    watch: Annotated[
        list[Path] | None,
        typer.Option(
            "--watch", help="A folder for the default tenant to keep in sync (repeatable)"
        ),
    ] = None,
    reconcile_interval: Annotated[
        float, typer.Option(help="Seconds between safety reconciles")
    ] = 300.0,
) -> None:
    """The API and chat page, plus the watch daemon for --watch folders and tenants' uploads."""
    from app.api_server import ApiServer
    from rag.indexing.ingest import TENANTS_DIR

    settings = get_settings()
    folders = list(watch or [])
    for p in folders:
        if not p.is_dir():
            fail(f"{p} is not a folder (give folders to --watch)")
    if daemon_client() is not None:
        fail(
            "a daemon (`rag watch`/`rag serve`) is already running on this data dir; stop it first"
        )
    tenants_root = settings.resolved_data_dir() / TENANTS_DIR
    tenants_root.mkdir(parents=True, exist_ok=True)
    bind_host = host or settings.api.host
    bind_port = settings.api.port if port is None else port
    _check_port_free(bind_host, bind_port)
    api = ApiServer(settings, bind_host, bind_port, echo=echo_err)
    run_runtime([*folders, tenants_root], reconcile_interval, api=api)


def _check_port_free(host: str, port: int) -> None:
    """Fail before loading models, not after, when the address is taken."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            fail(
                f"cannot listen on {host}:{port} ({exc.strerror}): is another server running? choose one with --port"
            )
