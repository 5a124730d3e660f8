"""`rag serve` on a volume that fills up (issue 25, item 5), on a real small file system: a
tmpfs mounted for the test (root only; skipped elsewhere, where
tests/api/test_disk_floor.py checks the same refusals with the free-space probe injected).

The previous code wrote into the full volume: the edge store's memory-mapped files turned the
daemon's upsert into a SIGBUS that killed the server with nothing logged, and restarting on
the full volume died again while loading the index. Now, under ``storage.min_free_mb``:
uploads 503 ``storage_unavailable`` naming the floor, ingestion pauses (files stay pending,
with the reason), ``/readyz`` names the disk, queries are still answered; once space is freed
ingestion resumes by itself; and a server started on the full volume serves reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RagCli

START_TIMEOUT_S = 240
FLOOR_MB = 20


@pytest.fixture()
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 160 MB tmpfs: the index takes ~75 MB of it once loaded."""
    mount = tmp_path / "volume"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({made.stderr.strip() or 'not root'}); "
            "tests/api/test_disk_floor.py covers the refusals with an injected probe"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(volume: Path) -> Path:
    """Leave no free byte on ``volume``."""
    filler = volume / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, os.statvfs(volume).f_bavail * os.statvfs(volume).f_frsize)
    finally:
        os.close(fd)
    return filler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    def __init__(self, rag_cli: RagCli, env: dict[str, str], docs: Path, log: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(rag_cli.bin), "serve", "--port", str(self.port), "--watch", str(docs)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_for(
        self,
        what: str,
        probe: Callable[[], Any],
        timeout: float = 60,
        until: Callable[[Any], bool] = bool,
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                f"rag serve died ({self.proc.returncode}) waiting for {what}:\n{self.output()[-3000:]}"
            )
            try:
                last = probe()
                if until(last):
                    return last
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"{what}: not seen in {timeout} s (last: {last!r})")

    def ready(self) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/readyz", timeout=10)
        return {**r.json(), "code": r.status_code}

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> tuple[int | None, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        out = self.output()
        self.log.close()
        return self.proc.returncode, out


def test_a_full_volume_pauses_writes_serves_reads_and_resumes(
    rag_cli: RagCli, tmp_path: Path, small_volume: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backups.md").write_text(
        "# Backups\n\nProduction databases are backed up nightly. Backups are kept for 35 days.\n",
        encoding="utf-8",
    )
    data_dir = small_volume / "data"
    env = rag_cli.env(
        data_dir,
        {
            "RAG_EVALS__AFTER_SYNC": "false",
            "RAG_STORAGE__MIN_FREE_MB": str(FLOOR_MB),  # the default 512 MB is more than the volume
            "RAG_EMBEDDING__SHORT_TEXT_BACKEND": "torch",  # no ONNX export onto the small volume
            "RAG_API__REQUESTS_PER_MINUTE": "100000",
            "RAG_API__BURST": "10000",
        },
    )
    key = rag_cli.run("keys", "local", data_dir=data_dir, env=env).stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    server = Serve(rag_cli, env, docs, tmp_path / "serve-1.log")
    try:
        server.wait_for(
            "ready",
            lambda: (r := server.ready())["code"] == 200 and r["checks"]["ingestion"] == "ok",
            START_TIMEOUT_S,
        )
        filler = _fill(small_volume)

        # An upload: refused before a byte is written, naming the floor (no server path).
        up = httpx.post(
            f"{server.base}/v1/documents",
            files={"file": ("laptops.md", b"# Laptops\n\nEngineers get 32 GB laptops.\n")},
            headers=auth,
            timeout=30,
        )
        assert up.status_code == 503, up.text
        err = up.json()["error"]
        assert err["type"] == "storage_unavailable" and "storage.min_free_mb" in err["message"]
        assert str(small_volume) not in err["message"]
        # A new watched document: ingestion pauses, the server lives on.
        (docs / "vpn.md").write_text(
            "# VPN\n\nThe VPN gateway is rebooted every Monday at 06:00.\n", encoding="utf-8"
        )
        # A file that reached the tenant's folder anyway: pending, with the reason.
        tenant_file = data_dir / "tenants" / "default" / "travel.md"
        tenant_file.parent.mkdir(parents=True, exist_ok=True)
        filler.unlink()
        tenant_file.write_text("# Travel\n\nTrain tickets are booked by the office.\n")
        filler = _fill(small_volume)
        not_ready = server.wait_for(
            "/readyz naming the disk",
            lambda: (r := server.ready())["code"] == 503 and "disk" in r["error"]["message"] and r,
        )
        assert "storage.min_free_mb" in not_ready["error"]["message"], not_ready
        time.sleep(3)  # the daemon has seen vpn.md and tried (debounce 0.5 s)
        listed = httpx.get(f"{server.base}/v1/documents", headers=auth, timeout=30).json()
        travel = next(d for d in listed["documents"] if d["path"] == "default/travel.md")
        assert travel["status"] == "pending" and "ingestion paused" in travel["reason"], travel
        # Reads go on.
        asked = httpx.post(
            f"{server.base}/v1/query",
            json={"question": "How long are backups kept?"},
            headers=auth,
            timeout=60,
        )
        assert asked.status_code == 200 and "35 days" in asked.json()["answer"], asked.text

        # Room again: ingestion resumes by itself.
        filler.unlink()

        def vpn_indexed() -> bool:
            body = {"question": "When is the VPN gateway rebooted?", "generate": False}
            r = httpx.post(f"{server.base}/v1/query", json=body, headers=auth, timeout=60)
            return r.status_code == 200 and any(
                c["source"] == "vpn.md" for c in r.json()["citations"]
            )

        server.wait_for("vpn.md ingested after space was freed", vpn_indexed, 90)
        server.wait_for("ready again", lambda: server.ready(), 60, until=lambda r: r["code"] == 200)
    finally:
        code, output = server.stop()
    assert code == 0, f"rag serve exited {code}:\n{output[-3000:]}"
    assert "ingestion paused" in output and "Traceback" not in output, output[-3000:]

    # Started on the full volume: it serves reads, refuses writes, says why.
    filler = _fill(small_volume)
    server = Serve(rag_cli, env, docs, tmp_path / "serve-2.log")
    try:
        not_ready = server.wait_for(
            "/readyz naming the disk at start",
            lambda: (r := server.ready())["code"] == 503 and "disk" in r["error"]["message"] and r,
            START_TIMEOUT_S,
        )
        assert "storage.min_free_mb" in not_ready["error"]["message"], not_ready

        def answered() -> bool:
            body = {"question": "How long are backups kept?"}
            r = httpx.post(f"{server.base}/v1/query", json=body, headers=auth, timeout=60)
            return r.status_code == 200 and "35 days" in r.json()["answer"]

        server.wait_for("an answer on the full volume", answered, 120)
    finally:
        code, output = server.stop()
        filler.unlink(missing_ok=True)
    assert code == 0, f"rag serve exited {code} on a full volume:\n{output[-3000:]}"
    assert "stopped cleanly" in output, output[-3000:]
