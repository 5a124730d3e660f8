"""What `rag serve` writes to its output carries no personal data and no server path, whichever
logger wrote it (issue 25, item 6): uvicorn's own loggers write through handlers of their own,
and its "Exception in ASGI application" traceback printed a tenant's file path, with a name and
an e-mail address in the file name. The server here is `rag serve`'s (``app.api_server.ApiServer``:
uvicorn configured as the command configures it, in a thread), over a real index; the output is
the process's stderr, captured at the file descriptor."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

import httpx
import pytest

from app.api_server import ApiServer
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.query.pipeline import QueryPipeline
from tests.api.conftest import settings_for

NAME = "Jane Doe"
EMAIL = "jane.doe@example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_records_and_tracebacks_reach_the_output_scrubbed(
    tmp_path: Path, embedder: Embedder, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data")
    index = Index(settings, embedder=embedder)  # installs the log scrubbing, as `rag serve` does
    index.open(create=True)
    upload = index.data_dir / "tenants" / "acme" / f"{NAME.replace(' ', '_')}_{EMAIL}.md"
    elsewhere = tmp_path / "exports" / "contacts.csv"
    pipeline = QueryPipeline(index, settings)
    server = ApiServer(settings, "127.0.0.1", _free_port(), echo=lambda line: None)
    server.start(index, None, pipeline)  # type: ignore[arg-type]
    try:
        assert server.app is not None

        def broken_route() -> None:
            # An error escaping a route: the API answers 500, uvicorn logs the traceback.
            raise FileNotFoundError(
                errno.ENOENT, f"gone while {NAME} <{EMAIL}> read it", str(upload)
            )

        server.app.add_api_route("/broken", broken_route)
        r = httpx.get(f"http://127.0.0.1:{server.port}/broken", timeout=30)
        assert r.status_code == 500
        try:
            raise PermissionError(errno.EACCES, "Permission denied", str(elsewhere))
        except PermissionError as exc:
            logging.getLogger("uvicorn.error").error(
                "export for %s (%s) to %s failed", NAME, EMAIL, elsewhere, exc_info=exc
            )
    finally:
        server.stop()
        pipeline.close()
        index.close()
    output = capfd.readouterr().err
    assert "Exception in ASGI application" in output, output[-3000:]
    assert "export for" in output and "PermissionError" in output, output[-3000:]
    leaks = [s for s in (EMAIL, "jane.doe", NAME, "Jane_Doe", str(tmp_path)) if s in output]
    assert leaks == [], output[-4000:]
    # Still useful to an operator: the data dir's layout, and which code raised.
    assert "<data_dir>/tenants/acme/" in output, output[-3000:]
    assert "<path>" in output and "<EMAIL_ADDRESS>" in output, output[-3000:]
