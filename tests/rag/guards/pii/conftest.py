"""PII tests run real Presidio (spaCy small) with the network blocked: any connection to a
non-loopback address fails the test that made it (loopback stand-ins keep working)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect
_real_create = socket.create_connection


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return isinstance(host, str) and (
        host in ("localhost", "::1") or host.startswith("127.") or host.startswith("/")
    )


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    attempts: list[Any] = []

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX or _loopback(address):
            return _real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network blocked in PII tests: connect to {address!r}")

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if _loopback(address):
            return _real_create(address, *args, **kwargs)
        attempts.append(address)
        raise OSError(f"network blocked in PII tests: connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield attempts
    assert not attempts, f"PII code tried the network: {attempts}"
