"""An upload cannot plant a folder tree that stops ingestion (issue 25, item 2).

The multipart file name is held to the limits of the ``path`` field (one check): at most
1,024 characters, names of at most 255 bytes, at most ``ingestion.max_depth`` folders. Deleting
an upload removes the folders it leaves empty.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Deployment, wait_for

DEEP_NAME = "d/" * 1000 + "x.md"  # what the author uploaded: 202, then ingestion died
TOO_DEEP = "d/" * 40 + "x.md"  # 84 characters: only the depth limit (32 folders) refuses it


@pytest.mark.parametrize(
    ("name", "limit"),
    [(DEEP_NAME, "limited to 1024 characters"), (TOO_DEEP, "at most 32 (ingestion.max_depth)")],
    ids=["1000-folders", "40-folders"],
)
@pytest.mark.parametrize("field", ["file name", "path"])
def test_a_deep_upload_is_refused_whichever_field_names_it(
    deployment: Deployment, name: str, limit: str, field: str
) -> None:
    files: dict[str, Any] = {"file": (name if field == "file name" else "x.md", b"# Deep\n")}
    data = {"path": name} if field == "path" else {}
    with deployment.client("acme") as c:
        r = c.post("/v1/documents", files=files, data=data)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_path"
    assert limit in error["message"] and f"the {field} " in error["message"], error
    assert not (deployment.tenants_root / "acme" / "d").exists()


def test_a_file_name_within_the_limits_is_accepted(deployment: Deployment) -> None:
    name = "deepish/" + "d/" * 30 + "ok.md"  # 31 folders
    with deployment.client("acme") as c:
        r = c.post("/v1/documents", files={"file": (name, b"# Deepish\n\nStill fine.\n")})
        assert r.status_code == 202, r.text
        assert r.json()["path"] == f"acme/{name}"
        assert c.delete(f"/v1/documents/acme/{name}").status_code == 202
    assert not (deployment.tenants_root / "acme" / "deepish").exists()


def test_deleting_an_upload_removes_the_folders_it_leaves_empty(deployment: Deployment) -> None:
    folder = deployment.tenants_root / "globex" / "archive"
    with deployment.client("globex") as c:
        for path in ("archive/2019/q1/a.md", "archive/2019/b.md"):
            r = c.post(
                "/v1/documents", files={"file": ("x.md", b"# A\n\nOld.\n")}, data={"path": path}
            )
            assert r.status_code == 202, r.text
        deployment.wait_idle()

        assert c.delete("/v1/documents/globex/archive/2019/q1/a.md").status_code == 202
        # q1 held only a.md: gone; 2019 still holds b.md.
        assert not (folder / "2019" / "q1").exists() and (folder / "2019" / "b.md").is_file()

        assert c.delete("/v1/documents/globex/archive/2019/b.md").status_code == 202
        assert not folder.exists()
        assert (deployment.tenants_root / "globex").is_dir()  # the tenant's own folder stays
        wait_for(
            lambda: (
                not any(
                    d["path"].startswith("globex/archive/")
                    for d in c.get("/v1/documents").json()["documents"]
                )
            ),
            "deleted uploads gone from the listing",
        )
