"""A tenant named like a top-level folder of the watched folder (issue 14, item 3).

The session's watched folder (``examples/docs``) has ``policies/backup-policy.md``; a tenant
``policies`` uploading ``backup-policy.md`` names its document ``policies/backup-policy.md``
too. New such tenants are refused at key creation; one that exists anyway (a key made before
the folder, or listed in config) takes nothing over and loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.auth import KeyStore
from rag.indexing.ingest import Ingestor
from tests.api.conftest import EXAMPLES, Deployment, wait_for

SOURCE = "policies/backup-policy.md"
TENANT_FACT = "The policies tenant restores its backups from the Reno tape vault in under an hour."


def _doc(c: httpx.Client, path: str) -> dict[str, Any] | None:
    r = c.get(f"/v1/documents/{path}")
    return r.json() if r.status_code == 200 else None


def _quotes(c: httpx.Client, question: str, source: str) -> list[tuple[str, str]]:
    r = c.post(
        "/v1/query", json={"question": question, "generate": False, "filters": {"source": source}}
    )
    assert r.status_code == 200, r.text
    return [(cite["source"], cite["quote"]) for cite in r.json()["citations"]]


def test_a_new_tenant_named_like_a_watched_folder_is_refused(deployment: Deployment) -> None:
    store = KeyStore(deployment.index.data_dir)
    with pytest.raises(ValueError, match=r"also the name of a folder in the watched folder") as exc:
        store.create("policies", default_tenant=deployment.settings.tenant)
    assert str(EXAMPLES) in str(exc.value) and "Choose another tenant name" in str(exc.value)
    assert not any(r.tenant == "policies" for r in store.records())
    # Other names, the default tenant and tenants that already have keys are fine.
    for tenant in ("initech", deployment.settings.tenant, "acme"):
        rec, _ = store.create(tenant, "names test", default_tenant=deployment.settings.tenant)
        store.revoke(rec.id)


def test_rag_keys_create_refuses_it_with_the_reason(deployment: Deployment, rag_cli: Any) -> None:
    proc = rag_cli.run(
        "keys", "create", "--tenant", "policies", data_dir=deployment.index.data_dir, check=False
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "also the name of a folder in the watched folder" in proc.stderr
    assert "Choose another tenant name" in proc.stderr
    assert proc.stdout.strip() == "", "no key is printed"


@pytest.fixture()
def policies_key(deployment: Deployment) -> Iterator[str]:
    rec, key = deployment.store.create("policies", "made before the folder existed")
    yield key
    folder = deployment.tenants_root / "policies"
    if (folder / "backup-policy.md").exists():
        (folder / "backup-policy.md").unlink()
        deployment.daemon.mark_dirty(deployment.tenants_root, SOURCE)
    deployment.wait_idle()
    deployment.store.revoke(rec.id)


def test_an_upload_named_like_a_watched_document_takes_nothing_over(
    deployment: Deployment, policies_key: str
) -> None:
    default = deployment.client("default")
    tenant = deployment.server.client(policies_key)
    with default, tenant:
        before = _doc(default, SOURCE)
        assert before is not None and before["origin"] == "watched" and before["chunks"] > 0
        r = tenant.post(
            "/v1/documents",
            files={"file": ("backup-policy.md", f"# Backups\n\n{TENANT_FACT}\n".encode())},
        )
        assert r.status_code == 202, r.text
        assert r.json()["path"] == SOURCE
        wait_for(
            lambda: (d := _doc(tenant, SOURCE)) is not None and d["status"] == "ok",
            "the upload ingested",
        )
        # The daemon's next reconcile of the tenants folder keeps the default tenant's document.
        deployment.daemon.request_reconcile("test")
        deployment.wait_idle()
        assert _doc(default, SOURCE) == before, "the default tenant's document is untouched"
        mine = _quotes(default, "How long are backups retained?", SOURCE)
        assert any("35 days" in q for _, q in mine), mine
        # The watched folder's next reconcile keeps the upload (never `pending` again).
        Ingestor(deployment.index).sync_folder(EXAMPLES)
        assert _doc(default, SOURCE) == before
        upload = _doc(tenant, SOURCE)
        assert upload is not None, "the upload is listed for its tenant"
        assert (upload["status"], upload["origin"]) == ("ok", "upload"), upload
        assert [d["path"] for d in tenant.get("/v1/documents").json()["documents"]] == [SOURCE]

        mine = _quotes(default, "How long are backups retained?", SOURCE)
        assert mine and all("Reno" not in q for _, q in mine), mine
        assert any("35 days" in q for _, q in mine), mine
        theirs = _quotes(tenant, "Where are backups restored from?", SOURCE)
        assert theirs and all("Reno" in q for _, q in theirs), theirs
