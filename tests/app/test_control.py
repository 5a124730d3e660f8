"""The loopback control API (``rag status|export|reindex|query`` talking to a running daemon):
a token from a 0600 file on every call, the Host checked, JSON bodies only."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.control import ControlServer, find_daemon


@pytest.fixture()
def control(tmp_path: Path) -> Iterator[tuple[ControlServer, list[dict[str, Any]]]]:
    asked: list[dict[str, Any]] = []

    def query(body: dict[str, Any]) -> dict[str, Any]:
        asked.append(body)
        return {"answer": "ok"}

    server = ControlServer(
        tmp_path / "data",
        status=lambda: {"documents": 1},
        export=lambda: iter([{"id": "c1", "text": "secret chunk"}]),
        reindex=lambda: {"reindexed": True},
        sync=lambda: {"requested": True},
        query=query,
    )
    server.start()
    yield server, asked
    server.stop()


def _url(server: ControlServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_the_token_file_is_private_and_the_client_uses_it(
    control: tuple[ControlServer, list[dict[str, Any]]], tmp_path: Path
) -> None:
    server, asked = control
    info_path = tmp_path / "data" / "daemon.json"
    assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
    info = json.loads(info_path.read_text())
    assert info["token"] == server.token and len(server.token) >= 32
    client = find_daemon(tmp_path / "data")
    assert client is not None
    assert client.status() == {"documents": 1}
    assert client.query({"question": "q"}) == {"answer": "ok"} and asked == [{"question": "q"}]
    assert list(client.export_lines()) == [json.dumps({"id": "c1", "text": "secret chunk"})]
    client.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/export"), ("GET", "/status"), ("POST", "/reindex"), ("POST", "/query")],
)
def test_every_call_without_the_token_is_refused(
    control: tuple[ControlServer, list[dict[str, Any]]], method: str, path: str
) -> None:
    server, asked = control
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": server.token}):
        resp = httpx.request(method, _url(server, path), headers=headers, json={"question": "q"})
        assert resp.status_code == 401, (headers, resp.text)
        assert "secret chunk" not in resp.text
    assert asked == []


def test_a_foreign_host_header_is_refused(
    control: tuple[ControlServer, list[dict[str, Any]]],
) -> None:
    # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host.
    server, _ = control
    auth = {"Authorization": f"Bearer {server.token}"}
    ok = httpx.get(_url(server, "/export"), headers={**auth, "Host": f"localhost:{server.port}"})
    assert ok.status_code == 200
    bad = httpx.get(
        _url(server, "/export"), headers={**auth, "Host": f"evil.example:{server.port}"}
    )
    assert bad.status_code == 421 and "secret chunk" not in bad.text


def test_post_bodies_must_be_json(control: tuple[ControlServer, list[dict[str, Any]]]) -> None:
    # What a browser can send cross-origin without a preflight: text/plain and form bodies.
    server, asked = control
    auth = {"Authorization": f"Bearer {server.token}"}
    for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
        resp = httpx.post(
            _url(server, "/query"),
            headers={**auth, "Content-Type": ctype},
            content=b'{"question": "q"}',
        )
        assert resp.status_code == 415, ctype
    assert asked == []
    good = httpx.post(_url(server, "/query"), headers=auth, json={"question": "q"})
    assert good.status_code == 200 and asked == [{"question": "q"}]
