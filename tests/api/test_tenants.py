"""Tenant isolation through the API: a key sees its tenant's documents and nothing else.

The session corpus is built to tempt leaks: acme and globex both have ``handbook.md`` and
share one identical paragraph (same text hash, so the ingestor reuses one vector for both).
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.core.documents import document_id
from rag.core.textguard import is_blank
from rag.indexing.reindex import reindex
from tests.api.conftest import EXAMPLE_SOURCES, SHARED_PARAGRAPH, TENANT_DOCS, TENANTS, Deployment


def owned_by(tenant: str, source: str) -> bool:
    if tenant == "default":
        return source in EXAMPLE_SOURCES or source.startswith("default/")
    return source.startswith(f"{tenant}/")


ALL_SOURCES = sorted(
    EXAMPLE_SOURCES | {f"{t}/{rel}" for t, files in TENANT_DOCS.items() for rel in files}
)
WORDS = sorted(
    {
        w.strip(".,:#")
        for files in TENANT_DOCS.values()
        for text in files.values()
        for w in text.split()
        if len(w) > 3
    }
    | {
        "backup",
        "rate",
        "limit",
        "expense",
        "security",
        "onboarding",
        "incident",
        "vacation",
        "plants",
        "volcano",
    }
)


def _query(deployment: Deployment, tenant: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with deployment.client(tenant) as c:
        r = c.post("/v1/query", json={"generate": False, **body})
    assert r.status_code == 200, r.text
    cites: list[dict[str, Any]] = r.json()["citations"]
    return cites


filters = st.one_of(
    st.none(),
    st.fixed_dictionaries({"source": st.sampled_from(ALL_SOURCES)}),
    st.fixed_dictionaries(
        {"source": st.lists(st.sampled_from(ALL_SOURCES), min_size=1, max_size=4)}
    ),
    st.fixed_dictionaries(
        {"doc_id": st.builds(document_id, st.sampled_from(TENANTS), st.sampled_from(ALL_SOURCES))}
    ),
)
questions = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),
    st.sampled_from([SHARED_PARAGRAPH, "vacation days", "badge", "What is the rate limit?"]),
    # Visible text only: a question of invisible characters is refused (422) before retrieval.
    st.text(min_size=1, max_size=60).filter(lambda t: not is_blank(t)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tenant=st.sampled_from(TENANTS), question=questions, flt=filters)
def test_no_cross_tenant_chunk_is_ever_returned(
    deployment: Deployment, tenant: str, question: str, flt: Any
) -> None:
    body: dict[str, Any] = {"question": question}
    if flt is not None:
        body["filters"] = flt
    for cite in _query(deployment, tenant, body):
        assert owned_by(tenant, cite["source"]), f"tenant {tenant} got {cite['source']} for {body}"


@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_each_tenant_finds_its_own_copy_of_shared_text(deployment: Deployment, tenant: str) -> None:
    cites = _query(deployment, tenant, {"question": "When are the office plants watered?"})
    assert cites and cites[0]["source"] == f"{tenant}/handbook.md"
    assert SHARED_PARAGRAPH in cites[0]["quote"]


def test_default_tenant_does_not_see_tenant_folders(deployment: Deployment) -> None:
    cites = _query(deployment, "default", {"question": "volcano lair elevator clearance card"})
    assert cites, "the default tenant still gets its own best matches"
    assert all(c["source"] in EXAMPLE_SOURCES for c in cites)


def test_listing_shows_only_the_callers_documents(deployment: Deployment) -> None:
    with deployment.client("acme") as c:
        docs = c.get("/v1/documents").json()["documents"]
    paths = {d["path"] for d in docs}
    assert {"acme/handbook.md", "acme/security/badges.txt"} <= paths
    assert all(p.startswith("acme/") for p in paths), paths
    assert all(d["origin"] == "upload" for d in docs)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/documents/globex/volcano.md"),
        ("GET", "/v1/sources/globex/volcano.md"),
        ("DELETE", "/v1/documents/globex/volcano.md"),
        ("GET", "/v1/documents/onboarding.md"),
        ("GET", "/v1/sources/onboarding.md"),
    ],
)
def test_another_tenants_document_is_404(deployment: Deployment, method: str, path: str) -> None:
    with deployment.client("acme") as c:
        r = c.request(method, path)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["type"] == "not_found"
    assert (deployment.tenants_root / "globex" / "volcano.md").exists()


def _raw_request(deployment: Deployment, tenant: str, method: str, path: str) -> tuple[int, str]:
    """Send ``path`` byte for byte: httpx (and browsers) collapse ``..`` before sending, so a
    traversal test through them never reaches the server's guard."""
    conn = http.client.HTTPConnection("127.0.0.1", deployment.server.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {deployment.keys[tenant]}")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


VOLCANO_TEXT = "level four clearance card"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v1/sources/acme/../globex/volcano.md", 422, "invalid_path"),
        ("GET", "/v1/sources/acme/%2e%2e/globex/volcano.md", 422, "invalid_path"),
        ("GET", "/v1/sources/acme/%2E%2E%2Fglobex%2Fvolcano.md", 422, "invalid_path"),
        ("DELETE", "/v1/documents/acme/../globex/volcano.md", 422, "invalid_path"),
        ("DELETE", "/v1/documents/acme/%2e%2e/globex/volcano.md", 422, "invalid_path"),
        ("GET", "/v1/documents/acme/../globex/volcano.md", 404, "not_found"),
    ],
)
def test_dot_dot_paths_reach_the_guard_and_never_cross_tenants(
    deployment: Deployment, method: str, path: str, status: int, error: str
) -> None:
    code, body = _raw_request(deployment, "acme", method, path)
    assert code == status, body
    assert VOLCANO_TEXT not in body
    err = json.loads(body)["error"]
    assert err["type"] == error
    # The server saw the '..' itself (the message echoes the path it got), not a normalised path.
    assert "acme/../globex/volcano.md" in err["message"], err
    volcano = deployment.tenants_root / "globex" / "volcano.md"
    assert volcano.exists() and VOLCANO_TEXT in volcano.read_text()


def test_own_source_file_is_served_as_inert_text(deployment: Deployment) -> None:
    with deployment.client("default") as c:
        r = c.get("/v1/sources/api-rate-limits.html")
        status = c.get("/v1/documents/policies/backup-policy.md").json()
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(
        "text/plain"
    )  # never run a document's HTML on our origin
    assert r.headers["content-security-policy"] == "sandbox"
    assert "Rate Limits" in r.text
    assert status["status"] == "ok" and status["chunks"] > 0 and status["origin"] == "watched"


def test_isolation_survives_a_blue_green_reindex(deployment: Deployment) -> None:
    """Reindex rebuilds every folder with a fresh Ingestor: tenants must come from the layout, not the caller."""
    before = deployment.index.collection
    result = reindex(deployment.index)
    assert result["collection"] != before
    for tenant in TENANTS:
        for question in ("When are the office plants watered?", "vacation days", "rate limit"):
            for cite in _query(deployment, tenant, {"question": question}):
                assert owned_by(tenant, cite["source"]), (tenant, cite["source"])
    assert (
        _query(deployment, "globex", {"question": "volcano elevator"})[0]["source"]
        == "globex/volcano.md"
    )
