"""Issue 14: invisible questions and bidi upload names are refused (item 11); error bodies and
document reasons name no absolute server path (item 15)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from tests.api.conftest import EXAMPLES, Deployment, wait_for

# A path that starts at the root: "/" not inside a word or a relative path.
ABSOLUTE = re.compile(r"(?<![\w.~-])/\w")


def _error(r: Any) -> dict[str, str]:
    err: dict[str, str] = r.json()["error"]
    return err


@pytest.mark.parametrize("question", ["\u200b", "\u200b\u200d\u2060\ufeff", " \u3164 "], ids=ascii)
def test_a_question_of_only_invisible_characters_is_refused(
    deployment: Deployment, question: str
) -> None:
    with deployment.client() as c:
        r = c.post("/v1/query", json={"question": question})
        assert r.status_code == 422, r.text
        assert "invisible" in _error(r)["message"]
        chat = c.post(
            "/v1/chat/completions",
            json={"model": "rag-kb", "messages": [{"role": "user", "content": question}]},
        )
        assert chat.status_code in (400, 422), chat.text
        assert "empty" in _error(chat)["message"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("invoice\u202efdp.md", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("notes/\u2066report\u2069.md", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("a\u202ab.md", "U+202A LEFT-TO-RIGHT EMBEDDING"),
        ("\u200b/notes.md", "invisible"),
    ],
    ids=ascii,
)
def test_upload_names_with_bidi_controls_or_invisible_parts_are_refused(
    deployment: Deployment, path: str, named: str
) -> None:
    with deployment.client("acme") as c:
        r = c.post("/v1/documents", files={"file": ("a.md", b"# A\n\ntext\n")}, data={"path": path})
        assert r.status_code == 422, r.text
        err = _error(r)
        assert err["type"] == "invalid_path" and named in err["message"], err
        assert not (deployment.tenants_root / "acme" / path).exists()


def test_an_upload_file_name_with_a_bidi_override_is_refused(deployment: Deployment) -> None:
    with deployment.client("acme") as c:
        r = c.post("/v1/documents", files={"file": ("invoice\u202efdp.md", b"# A\n\ntext\n")})
        assert r.status_code == 422, r.text
        assert "U+202E RIGHT-TO-LEFT OVERRIDE" in _error(r)["message"]


def test_the_watched_folder_conflict_names_no_server_path(deployment: Deployment) -> None:
    with deployment.client("default") as c:
        r = c.delete("/v1/documents/onboarding.md")
    assert r.status_code == 409
    message = _error(r)["message"]
    assert "watched folder" in message
    assert str(EXAMPLES) not in message and not ABSOLUTE.search(message), message


def test_a_broken_link_in_a_tenant_folder_is_listed_without_server_paths(
    deployment: Deployment, tmp_path: Any
) -> None:
    link = deployment.tenants_root / "acme" / "dangling-link.md"
    os.symlink(tmp_path / "nowhere" / "gone.md", link)
    try:
        with deployment.client("acme") as c:
            doc = wait_for(
                lambda: (
                    (r := c.get("/v1/documents/acme/dangling-link.md")).status_code == 200
                    and r.json()["status"] == "failed"
                    and r.json()
                ),
                "the broken link recorded as failed",
            )
            listed = {d["path"]: d for d in c.get("/v1/documents").json()["documents"]}
    finally:
        link.unlink()
    for reason in (doc["reason"], listed["acme/dangling-link.md"]["reason"]):
        assert reason == "broken symlink: its target (outside the watched folder) does not exist"
        assert str(tmp_path) not in reason and str(deployment.index.data_dir) not in reason
