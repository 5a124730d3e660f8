"""``GET /v1/sources/<path>`` applies the check ingestion applies (``rag.core.paths.escape_reason``):
a symlink in a watched folder or a tenant's folder that leads outside it is no document, for
the route as for the index (issue 25, item 1)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import KeyStore
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import TENANTS_DIR, Ingestor
from tests.api.conftest import settings_for

SECRET = "host secret: not a document"


def test_a_link_out_of_the_folder_is_served_by_no_route(tmp_path: Path, embedder: Embedder) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text(f"# Outside\n\n{SECRET}\n", encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.md").write_text("# Real\n\nThe VPN gateway is rebooted on Mondays.\n")
    os.symlink(outside, docs / "link.md")
    settings = settings_for(tmp_path / "data")
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    try:
        tenant_folder = index.data_dir / TENANTS_DIR / settings.tenant
        tenant_folder.mkdir(parents=True)
        os.symlink(outside, tenant_folder / "upload-link.md")
        report = Ingestor(index).sync_folder(docs)
        assert report.failed == 1, "ingestion refuses the link"
        keys = KeyStore(index.data_dir)
        app = create_app(settings, index=index, keys=keys)
        with TestClient(app, base_url="http://localhost") as client:  # an allowed Host
            client.headers["Authorization"] = f"Bearer {keys.local_key(settings.tenant)}"
            ok = client.get("/v1/sources/real.md")
            assert ok.status_code == 200 and "VPN gateway" in ok.text
            for path in ("link.md", f"{settings.tenant}/upload-link.md"):
                r = client.get(f"/v1/sources/{path}")
                assert r.status_code == 404, (path, r.status_code)
                assert SECRET not in r.text
    finally:
        index.close()
