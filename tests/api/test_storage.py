"""Storage failures and limits of uploads answer with a 4xx/503 that names the problem, never a bare 500.

Tests run as root, for whom chmod-made read-only folders are writable: a read-only file
system is simulated by making the calls that write fail with ``EROFS`` (only inside the
tenant's folder), and a read-only manifest by swapping in a real read-only SQLite
connection to it (``Manifest(..., readonly=True)``: writes fail as on a read-only disk).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.indexing.manifest import Manifest
from tests.api.conftest import Deployment, LiveServer, wait_for

TENANT = "storage"


@pytest.fixture(scope="module")
def key(deployment: Deployment) -> str:
    return deployment.store.create(TENANT, "storage tests")[1]


@pytest.fixture()
def client(deployment: Deployment, key: str) -> Iterator[httpx.Client]:
    with deployment.server.client(key) as c:
        yield c


def upload(
    c: httpx.Client, path: str, data: bytes = b"# Note\n\nA short note.\n"
) -> httpx.Response:
    return c.post("/v1/documents", files={"file": ("x.md", data)}, data={"path": path})


def error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    err: dict[str, str] = r.json()["error"]
    return err


# -- item 10: names the file system refuses ---------------------------------------------------
def test_a_name_over_255_bytes_is_422_not_500(client: httpx.Client) -> None:
    name = "é" * 200 + ".md"  # 203 characters, 402 bytes in UTF-8
    assert len(name) < 255 < len(name.encode())
    for path in (name, f"notes/{name}", f"{'ß' * 130}/doc.md"):
        err = error(upload(client, path), 422)
        assert err["type"] == "invalid_path"
        assert "255 bytes" in err["message"], err
    # Reading or deleting such a name is a plain "not found".
    assert client.delete(f"/v1/documents/{TENANT}/{name}").status_code == 404
    assert client.get(f"/v1/sources/{TENANT}/{name}").status_code == 404


def test_a_grandparent_that_is_a_file_is_409_naming_it(client: httpx.Client) -> None:
    assert upload(client, "blocker.md").status_code == 202
    for path in ("blocker.md/doc.md", "blocker.md/sub/doc.md", "blocker.md/a/b/c/doc.md"):
        err = error(upload(client, path), 409)
        assert err["type"] == "conflict"
        assert f"{TENANT}/blocker.md is a file" in err["message"], err
    assert client.delete(f"/v1/documents/{TENANT}/blocker.md/sub/doc.md").status_code == 404
    assert client.get(f"/v1/sources/{TENANT}/blocker.md/sub/doc.md").status_code == 404


# -- item 8: a read-only tenant folder or manifest --------------------------------------------
@pytest.fixture()
def read_only_tenant_folder(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every write below the tenant's folder fails like on a read-only mount (EROFS)."""
    folder = deployment.tenants_root / TENANT

    def inside(path: Any) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve())

    def refuse(path: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_mkstemp, real_unlink, real_mkdir = tempfile.mkstemp, os.unlink, os.mkdir

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        folder_arg = kwargs.get("dir")
        if folder_arg is not None and inside(folder_arg):
            refuse(folder_arg)
        return real_mkstemp(*args, **kwargs)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if inside(path):
            refuse(path)
        real_unlink(path, *args, **kwargs)

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if inside(path) and not os.path.lexists(path):  # an existing one is EEXIST, as on a mount
            refuse(path)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return folder


def test_upload_and_delete_on_a_read_only_folder_are_503_naming_it(
    client: httpx.Client, deployment: Deployment, request: pytest.FixtureRequest
) -> None:
    assert upload(client, "kept.md").status_code == 202
    request.getfixturevalue("read_only_tenant_folder")
    data_dir = str(deployment.index.data_dir.resolve())
    for r in (
        upload(client, "new.md"),
        upload(client, "deeper/folder/new.md"),
        client.delete(f"/v1/documents/{TENANT}/kept.md"),
    ):
        err = error(r, 503)
        assert err["type"] == "storage_unavailable"
        assert "tenant folder is not writable" in err["message"], err
        assert "read-only file system" in err["message"].lower(), err
        assert data_dir not in err["message"] and "/tenants" not in err["message"], err


@pytest.fixture()
def read_only_manifest(deployment: Deployment) -> Iterator[None]:
    deployment.wait_idle()
    index = deployment.index
    readonly = Manifest(index.manifest.path, readonly=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index, "_manifest", readonly)
        yield
    readonly.close()


def test_a_manifest_that_cannot_be_written_fails_readiness_and_uploads(
    client: httpx.Client, deployment: Deployment, request: pytest.FixtureRequest
) -> None:
    ready = deployment.server.url + "/readyz"
    assert httpx.get(ready).status_code == 200
    request.getfixturevalue("read_only_manifest")
    r = wait_for(lambda: (r := httpx.get(ready)).status_code == 503 and r, "readiness to fail", 10)
    err = r.json()["error"]
    assert err["type"] == "not_ready"
    assert "manifest: not writable" in err["message"], err
    assert str(deployment.index.data_dir.resolve()) not in err["message"]
    # An upload now would be searchable but never listed: refused, saying why.
    err = error(upload(client, "while-read-only.md"), 503)
    assert err["type"] == "storage_unavailable"
    assert "manifest" in err["message"] and "not writable" in err["message"], err
    assert not (deployment.tenants_root / TENANT / "while-read-only.md").exists()


def test_readiness_recovers_once_the_manifest_is_writable_again(deployment: Deployment) -> None:
    wait_for(
        lambda: httpx.get(deployment.server.url + "/readyz").status_code == 200,
        "readiness back",
        10,
    )


# -- item 9: per-tenant upload quotas ----------------------------------------------------------
@pytest.fixture(scope="module")
def quota_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(api={"quota": {"max_files": 2, "max_bytes": 100}})


def test_upload_quotas_are_per_tenant_and_named(
    quota_server: LiveServer, deployment: Deployment
) -> None:
    key = deployment.store.create("quota", "quota tests")[1]
    other = deployment.store.create("quota2", "quota tests")[1]
    with quota_server.client(key) as c, quota_server.client(other) as c2:
        assert upload(c, "a.md", b"a" * 30).status_code == 202
        assert upload(c, "b.md", b"b" * 30).status_code == 202
        err = error(upload(c, "c.md", b"c" * 10), 409)
        assert err["type"] == "quota_exceeded"
        assert "api.quota.max_files" in err["message"] and "2 files" in err["message"], err
        # Replacing a file is not a new one; growing past the byte quota is refused.
        assert upload(c, "a.md", b"A" * 40).status_code == 202
        err = error(upload(c, "a.md", b"A" * 80), 413)
        assert err["type"] == "quota_exceeded"
        assert "api.quota.max_bytes" in err["message"], err
        assert (deployment.tenants_root / "quota" / "a.md").read_bytes() == b"A" * 40
        # Another tenant has its own quota.
        assert upload(c2, "a.md", b"x" * 90).status_code == 202
        # Deleting makes room again.
        assert c.delete("/v1/documents/quota/b.md").status_code == 202
        assert upload(c, "c.md", b"c" * 10).status_code == 202
