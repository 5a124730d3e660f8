"""``GET /v1/sources/...`` while the file is deleted and written again: a 200 or a 404, never a
500 (issue 25, item 6). The route used to check ``is_file()`` and let ``FileResponse`` open the
path again later; a delete in between was "Exception in ASGI application" with the file's
absolute path (a tenant's file name holding a name and an e-mail) in uvicorn's log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.api.conftest import Deployment

NAME = "Jane Doe jane.doe@example.com.md"
TEXT = "# Contact sheet\n\nThe support rota changes every Monday.\n"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def server_errors() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "api")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler.records
    for lg in loggers:
        lg.removeHandler(handler)


def test_reading_a_source_while_it_is_deleted_is_never_a_server_error(
    deployment: Deployment, server_errors: list[logging.LogRecord]
) -> None:
    _, key = deployment.store.create("racer", "read-while-delete")
    folder = deployment.tenants_root / "racer"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    path.write_text(TEXT, encoding="utf-8")
    stop = threading.Event()

    def churn() -> None:  # delete, write again, delete…: the reader races each step
        while not stop.is_set():
            path.unlink(missing_ok=True)
            time.sleep(0.0005)
            path.write_text(TEXT, encoding="utf-8")
            time.sleep(0.0005)

    statuses: dict[int | str, int] = {}
    bodies_ok = True
    deleter = threading.Thread(target=churn, name="test-churn", daemon=True)
    deleter.start()
    try:
        with deployment.server.client(key) as client:
            url = f"/v1/sources/racer/{quote(NAME)}"
            for _ in range(400):
                try:
                    r = client.get(url)
                except httpx.HTTPError as exc:  # headers sent, then the body failed: a 500 too
                    statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                    continue
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:  # the file as it was when opened (maybe mid-write)
                    bodies_ok = bodies_ok and TEXT.startswith(r.text)
    finally:
        stop.set()
        deleter.join(10)
        path.unlink(missing_ok=True)
        deployment.wait_idle()
    assert set(statuses) <= {200, 404}, statuses
    assert statuses.get(200) and statuses.get(404), f"the race was not exercised: {statuses}"
    assert bodies_ok, "a 200 carries the file's bytes, nothing else"
    assert not server_errors, [r.getMessage() for r in server_errors][:3]
