"""A JSON body sent the way ``curl -d`` sends it (``application/x-www-form-urlencoded``), or
without a content type, is read as JSON; real form data and multipart uploads are not touched.

The curl line ``make run`` prints is the first request most people send: it must not get 422.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.bodies import FormJsonMiddleware
from api.errors import install_error_handlers
from api.limits import BodyLimitMiddleware
from tests.api.conftest import Deployment

FORM = "application/x-www-form-urlencoded"
QUERY = {"question": "How long are backups kept?", "generate": False}


def _post(
    deployment: Deployment, path: str, body: bytes, content_type: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {deployment.keys['default']}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    # httpx adds no content type of its own to raw ``content``: the header is exactly this one.
    return httpx.post(deployment.server.url + path, content=body, headers=headers, timeout=60)


@pytest.mark.parametrize("content_type", [FORM, None, f"{FORM}; charset=utf-8"])
def test_query_reads_a_json_body_sent_as_a_form_or_untyped(
    deployment: Deployment, content_type: str | None
) -> None:
    r = _post(deployment, "/v1/query", json.dumps(QUERY).encode(), content_type)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "" and body["citations"], body
    assert any("backup" in c["source"] for c in body["citations"]), body["citations"]


def curl() -> str:
    """curl's path. Missing, the test skips on a developer's machine, and fails under CI
    (``CI`` set, as ``.ci/run`` does; it installs curl): skipped there, it would prove nothing."""
    path = shutil.which("curl")
    if path is None:
        message = "curl is not installed (apt-get install -y curl)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; under CI this test must run", pytrace=False)
        pytest.skip(message)
    return path


def test_the_curl_line_make_run_prints_works(deployment: Deployment) -> None:
    out = subprocess.run(
        [
            curl(),
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            f"Authorization: Bearer {deployment.keys['default']}",
            "-d",
            json.dumps(QUERY),
            deployment.server.url + "/v1/query",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    text, _, status = out.rpartition("\n")
    assert status == "200", text
    assert json.loads(text)["citations"]


def test_chat_completions_reads_a_json_body_sent_as_a_form(deployment: Deployment) -> None:
    payload = {
        "model": deployment.settings.api.model_name,
        "messages": [{"role": "user", "content": "How long are monthly backup snapshots kept?"}],
    }
    r = _post(deployment, "/v1/chat/completions", json.dumps(payload).encode(), FORM)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("content_type", [FORM, None])
def test_json_nested_past_the_parsers_depth_is_a_4xx_not_a_500(
    deployment: Deployment, content_type: str | None
) -> None:
    # Found by scripts/fuzz_routes.py: the relabelling check parsed the body, and
    # RecursionError (no ValueError) escaped it as an internal error.
    for body in (b"[" * 30_000, b'{"question": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"):
        r = _post(deployment, "/v1/query", body, content_type)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "invalid_request"


MARK = "@LONE@"  # replaced in the JSON text by the escape itself (json.dumps would not write one)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "rag-kb", "messages": [{"role": "user", "content": MARK}]},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "rag-kb",
                "messages": [
                    {"role": "user", "content": f"x{MARK}"},
                    {"role": "user", "content": "How long are backups kept?"},
                ],
            },
        ),
        ("/v1/query", {"question": f"How long are backups kept? {MARK}"}),
        ("/v1/query", {"question": "backups", "filters": {"source": MARK}}),
        ("/v1/feedback", {"trace_id": "0" * 32, "value": 1, "comment": MARK}),
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", None])
def test_a_lone_surrogate_escape_is_a_422_naming_it(
    deployment: Deployment, path: str, body: dict[str, Any], content_type: str | None
) -> None:
    # Found by scripts/fuzz_routes.py: JSON allows "\\ud800", Python decodes it, and the
    # tokenizer refused it deep in the chat route: a 500.
    raw = json.dumps(body).replace(MARK, "\\ud800").encode()
    r = _post(deployment, path, raw, content_type)
    assert r.status_code == 422, r.text
    assert "surrogate" in r.json()["error"]["message"], r.json()


def test_a_surrogate_pair_escape_is_text(deployment: Deployment) -> None:
    body = b'{"question": "How long are backups kept? \\ud83d\\ude00", "generate": false}'
    r = _post(deployment, "/v1/query", body, "application/json")
    assert r.status_code == 200, r.text


def test_real_form_data_is_still_refused_with_the_error_shape(deployment: Deployment) -> None:
    r = _post(deployment, "/v1/query", b"question=How+long+are+backups+kept%3F", FORM)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_request"


# -- the middleware alone ---------------------------------------------------------------


def _echo_app(json_limit: int = 1000) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        body = await request.body()
        return {"type": request.headers.get("content-type", ""), "body": body.decode()}

    app.add_middleware(FormJsonMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, json_limit=json_limit, upload_limit=json_limit, upload_paths=()
    )
    return app


@pytest.mark.parametrize(
    ("content_type", "body", "seen"),
    [
        (FORM, b'{"a": 1}', "application/json"),
        (FORM, b"a=1&b=2", FORM),
        (FORM, b"", FORM),
        (None, b'{"a": 1}', "application/json"),
        (None, b"not json", ""),
        ("text/plain", b'{"a": 1}', "text/plain"),
        ("multipart/form-data; boundary=x", b'{"a": 1}', "multipart/form-data; boundary=x"),
    ],
)
def test_only_form_typed_json_is_relabelled_and_the_body_is_kept(
    content_type: str | None, body: bytes, seen: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with TestClient(_echo_app()) as c:
        r = c.post("/echo", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"type": seen, "body": body.decode()}


def test_a_streamed_form_body_over_the_limit_is_a_413() -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while it streams
        yield b'{"question": "'
        for _ in range(20):
            yield b"x" * 100

    with TestClient(_echo_app(json_limit=1000)) as c:
        r = c.post("/echo", content=chunks(), headers={"Content-Type": FORM})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["type"] == "payload_too_large"
