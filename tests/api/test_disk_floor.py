"""Under ``storage.min_free_mb`` nothing is written and every part says why (issue 25, item 5),
on a real index and API. The volume here cannot be filled (that needs root: see
tests/app/test_disk_full_serve.py, on a real tmpfs), so the free-space probe is injected:
``index.disk.usage`` reports how full the volume is, everything else is real."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import KeyStore
from rag.core.diskspace import MB
from rag.core.errors import DiskFullError
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor
from tests.api.conftest import settings_for


def test_under_the_floor_uploads_and_ingestion_wait_and_reads_go_on(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backups.md").write_text(
        "# Backups\n\nProduction databases are backed up nightly. Backups are kept for 35 days.\n"
    )
    settings = settings_for(tmp_path / "data", storage={"min_free_mb": 100})
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    free = {"bytes": 5_000 * MB}
    index.disk.usage = lambda path: (free["bytes"], 10_000 * MB)  # the injected probe
    try:
        Ingestor(index).sync_folder(docs)
        chunks = index.store.count(index.collection)
        free["bytes"] = 60 * MB  # under the 100 MB floor

        (docs / "vpn.md").write_text("# VPN\n\nThe VPN gateway is rebooted every Monday.\n")
        with pytest.raises(DiskFullError, match=r"storage\.min_free_mb"):
            Ingestor(index).sync_folder(docs)
        assert index.store.count(index.collection) == chunks, "nothing written to the store"
        assert index.manifest.get(index.collection, "vpn.md", root=str(docs)) is None

        keys = KeyStore(index.data_dir)
        app = create_app(settings, index=index, keys=keys)
        pending = index.data_dir / TENANTS_DIR / settings.tenant / "travel.md"
        pending.parent.mkdir(parents=True, exist_ok=True)
        pending.write_text("# Travel\n\nTrain tickets are booked by the office.\n")
        with TestClient(app, base_url="http://127.0.0.1") as client:
            client.headers["Authorization"] = f"Bearer {keys.local_key(settings.tenant)}"
            up = client.post("/v1/documents", files={"file": ("x.md", b"# X\n\nText.\n")})
            assert up.status_code == 503, up.text
            err = up.json()["error"]
            assert err["type"] == "storage_unavailable", err
            assert "60 MB free" in err["message"] and "storage.min_free_mb" in err["message"]
            assert str(tmp_path) not in err["message"]
            assert not (pending.parent / "x.md").exists()

            listed = client.get("/v1/documents").json()["documents"]
            travel = next(d for d in listed if d["path"] == f"{settings.tenant}/travel.md")
            assert travel["status"] == "pending", travel
            assert travel["reason"].startswith("ingestion paused: only 60 MB free"), travel

            ready = client.get("/readyz")
            assert ready.status_code == 503 and "disk: only 60 MB free" in ready.text, ready.text

            asked = client.post("/v1/query", json={"question": "How long are backups kept?"})
            assert asked.status_code == 200 and "35 days" in asked.json()["answer"], asked.text

            free["bytes"] = 5_000 * MB  # room again
            again = client.post("/v1/documents", files={"file": ("x.md", b"# X\n\nText.\n")})
            assert again.status_code == 202, again.text
        report = Ingestor(index).sync_folder(docs)
        assert report.ingested == 1 and report.failed == 0, report
    finally:
        index.close()
