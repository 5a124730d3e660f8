"""Uploads through the API land in the tenant's folder, the daemon ingests them, answers use them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rag.core.access import Reader
from tests.api.conftest import Deployment, wait_for

FACT = "The Zephyr conference room projector is reset by holding the amber button for nine seconds."


def _status(c: httpx.Client, path: str) -> dict[str, Any] | None:
    r = c.get(f"/v1/documents/{path}")
    return r.json() if r.status_code == 200 else None


def _sources(c: httpx.Client, question: str) -> list[str]:
    r = c.post("/v1/query", json={"question": question, "generate": False})
    assert r.status_code == 200, r.text
    return [cite["source"] for cite in r.json()["citations"]]


def test_upload_is_ingested_answerable_and_deletable(deployment: Deployment) -> None:
    with deployment.client("acme") as c, deployment.client("globex") as other:
        r = c.post(
            "/v1/documents",
            files={"file": ("projector.md", f"# Rooms\n\n{FACT}\n".encode(), "text/markdown")},
            data={"path": "rooms/projector.md"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["path"] == "acme/rooms/projector.md"
        assert r.json()["status"] == "pending"
        assert (
            (deployment.tenants_root / "acme" / "rooms" / "projector.md")
            .read_text()
            .endswith(FACT + "\n")
        )
        doc = wait_for(
            lambda: (s := _status(c, "acme/rooms/projector.md")) and s["status"] == "ok" and s,
            "upload ingested",
        )
        assert doc["chunks"] >= 1 and doc["origin"] == "upload"
        question = "How do I reset the Zephyr room projector?"
        assert _sources(c, question)[0] == "acme/rooms/projector.md"
        assert "acme/rooms/projector.md" not in _sources(other, question)
        r = c.post("/v1/query", json={"question": question})
        assert r.status_code == 200, r.text
        answer = r.json()
        # The deployment answers extractively (deterministic): the uploaded fact is the answer.
        assert answer["generator"] == "extractive" and not answer["abstained"], answer
        assert [cite["source"] for cite in answer["citations"]] == ["acme/rooms/projector.md"]
        assert answer["citations"][0]["verified"] is True
        assert "nine seconds" in answer["answer"] and "[1]" in answer["answer"]

        # Replacing keeps the name; deleting removes the chunks.
        r = c.post(
            "/v1/documents",
            files={"file": ("rooms/projector.md", b"Projectors were removed from all rooms.")},
        )
        assert r.status_code == 202
        wait_for(
            lambda: (
                "removed from all rooms"
                in " ".join(
                    cite["quote"]
                    for cite in c.post(
                        "/v1/query", json={"question": "projector rooms", "generate": False}
                    ).json()["citations"]
                )
            ),
            "replacement ingested",
        )
        r = c.delete("/v1/documents/acme/rooms/projector.md")
        assert r.status_code == 202, r.text
        wait_for(lambda: _status(c, "acme/rooms/projector.md") is None, "document gone")
        assert "acme/rooms/projector.md" not in _sources(c, question)


def test_a_file_that_does_not_parse_is_listed_as_failed_with_its_reason(
    deployment: Deployment,
) -> None:
    with deployment.client("globex") as c:
        r = c.post(
            "/v1/documents", files={"file": ("broken.pdf", b"%PDF-1.4 this is not really a pdf")}
        )
        assert r.status_code == 202, r.text
        doc = wait_for(
            lambda: (s := _status(c, "globex/broken.pdf")) and s["status"] == "failed" and s,
            "failure recorded",
        )
        assert doc["reason"] and doc["chunks"] == 0
        assert c.delete("/v1/documents/globex/broken.pdf").status_code == 202


@pytest.mark.parametrize(
    ("files", "data", "status", "error_type"),
    [
        ({"file": ("run.exe", b"MZ")}, {}, 415, "unsupported_media_type"),
        ({"file": ("notes", b"no extension")}, {}, 415, "unsupported_media_type"),
        ({"file": ("a.md", b"x")}, {"path": "../escape.md"}, 422, "invalid_path"),
        ({"file": ("a.md", b"x")}, {"path": "/etc/passwd.md"}, 422, "invalid_path"),
        ({"file": ("a.md", b"x")}, {"path": ".hidden.md"}, 422, "invalid_path"),
        ({}, {"path": "a.md"}, 422, "invalid_request"),
    ],
    ids=["exe", "no-extension", "dotdot", "absolute", "hidden", "no-file"],
)
def test_upload_rejections_say_what_is_wrong(
    deployment: Deployment,
    files: dict[str, Any],
    data: dict[str, str],
    status: int,
    error_type: str,
) -> None:
    with deployment.client("acme") as c:
        r = c.post("/v1/documents", files=files or {"other": ("x", b"")}, data=data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == error_type
    if status == 415:
        assert ".md" in r.json()["error"]["message"]  # names the accepted types


def test_watched_folder_documents_cannot_be_deleted_through_the_api(deployment: Deployment) -> None:
    with deployment.client("default") as c:
        r = c.delete("/v1/documents/onboarding.md")
    assert r.status_code == 409
    assert "watched folder" in r.json()["error"]["message"]


def test_an_upload_that_ingestion_exclude_matches_is_refused(
    tmp_settings: Any, embedder: Any
) -> None:
    # Accepting it would store a file the daemon never ingests: a silent 202 for nothing.
    from api.documents import Documents
    from api.errors import ApiError
    from rag.indexing.index import Index

    settings = tmp_settings(ingestion={"exclude": ["drafts/", "*.bak.md"]})
    index = Index(settings, embedder=embedder)
    index.open()
    try:
        docs = Documents(
            index, settings.ingestion.extensions, exclude=settings.ingestion.path_filter()
        )
        for path in ("drafts/plan.md", "notes.bak.md", "team/drafts/plan.md"):
            with pytest.raises(ApiError) as err:
                docs.upload_target(Reader("acme"), path)
            assert err.value.status_code == 422 and "ingestion.exclude" in err.value.message, path
        assert docs.upload_target(Reader("acme"), "plans/plan.md").source == "acme/plans/plan.md"
    finally:
        index.close()


def test_uploads_accept_a_parser_registered_while_the_service_runs(
    tmp_settings: Any, embedder: Any
) -> None:
    """The accepted types are asked of the parser table on each upload, not copied at start."""
    from api.documents import Documents
    from api.errors import ApiError
    from rag.indexing.index import Index
    from rag.indexing.parsing import PARSERS, PlainTextParser

    class Rst(PlainTextParser):
        name, suffixes = "rst", (".rst",)

    settings = tmp_settings()  # ingestion.extensions: null, every registered parser's
    index = Index(settings, embedder=embedder)
    index.open()
    try:
        docs = Documents(index, settings.ingestion.extensions)
        with pytest.raises(ApiError) as err:
            docs.upload_target(Reader("acme"), "guide.rst")
        assert err.value.status_code == 415 and ".markdown" in err.value.message
        PARSERS.register("rst", Rst())
        try:
            assert docs.upload_target(Reader("acme"), "guide.rst").source == "acme/guide.rst"
        finally:
            PARSERS.unregister("rst")
        # An explicit list restricts uploads to it.
        only_md = Documents(index, [".md"])
        with pytest.raises(ApiError, match=r"upload one of: \.md$"):
            only_md.upload_target(Reader("acme"), "notes.txt")
    finally:
        index.close()
