"""``rag mcp``: the knowledge base as an MCP server over stdin/stdout, for desktop clients
(Claude Desktop's ``mcpServers``, IDE assistants) that start the server themselves.

The tools and what they answer with are the API's (``api/mcp_server.py``): the same query
service, answer cache, budgets, PII policy and tracing, for one tenant (``--tenant``, default
the config's ``tenant``). ``--print-config`` prints the ``mcpServers`` entry that starts this
very server (this ``rag``, these ``--config``/``--data-dir``): paste it into the client's
config. While ``rag serve`` holds the data dir, clients connect to its ``/mcp`` instead.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from app.cli.core import daemon_client, fail, get_settings, open_index, print_json, state

__all__ = ["mcp"]

SERVER_NAME = "knowledge-base"  # the key of the printed mcpServers entry


def _launcher() -> list[str]:
    """How a client starts this ``rag``: the console script when that is what runs, else this
    interpreter with ``-m app.cli`` (``python -m app.cli``, a test harness)."""
    script = Path(sys.argv[0])
    if script.name == "rag" and script.is_file():
        return [str(script.absolute())]
    return [sys.executable, "-m", "app.cli"]


def client_config(tenant: str | None) -> dict[str, object]:
    """The ``mcpServers`` entry for this server: absolute paths, so it works from any folder."""
    command, *args = _launcher()
    if state.config:
        args += ["--config", str(Path(state.config).absolute())]
    args += ["--data-dir", str(get_settings().resolved_data_dir()), "mcp"]
    if tenant:
        args += ["--tenant", tenant]
    return {"mcpServers": {SERVER_NAME: {"command": command, "args": args}}}


def mcp(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Whose documents to serve (default: the config's tenant)"),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the mcpServers entry that starts this server (for a desktop client's "
            "config file) and exit",
        ),
    ] = False,
) -> None:
    """An MCP server on stdin/stdout: tools search, ask, list_documents, get_source."""
    settings = get_settings()
    if tenant is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tenant):
        fail(f"--tenant {tenant!r}: a tenant name is 1-64 letters, digits, '_' or '-'", code=2)
    if print_config:
        print_json(client_config(tenant))
        return
    client = daemon_client()
    if client is not None:
        client.close()
        fail(
            "`rag serve` or `rag watch` holds this data dir: connect your MCP client to the API's "
            "/mcp endpoint (streamable HTTP, `Authorization: Bearer KEY`) instead"
        )
    import anyio

    from api.app import create_state
    from api.auth import Principal
    from api.mcp_server import serve_stdio

    index = open_index(create=False)
    app_state = create_state(settings, index)
    service = app_state.service
    # Models load while the client connects and lists the tools (a first query waits for them).
    warming = threading.Thread(target=service.warm_up, name="rag-warm-up", daemon=True)
    warming.start()
    # The local user's own process: the CLI's principal (access.cli_groups).
    caller = Principal("stdio", tenant or settings.tenant, "rag mcp", "cli", None)
    try:
        anyio.run(serve_stdio, app_state, caller)
    finally:
        # Every answer thread stopped and the models loaded before they are freed.
        service.streams.stop(timeout=30.0)
        warming.join()
        service.pipeline.close()  # type: ignore[attr-defined]
        index.close()
        if app_state.tracing is not None:
            app_state.tracing.shutdown()
