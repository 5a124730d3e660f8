"""A real ``rag watch`` subprocess for the daemon tests, plus deadline polling.

Polling goes through the daemon's control API (the same calls ``rag status``/``rag export``
make); tests then confirm the settled state through the CLI itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.control import DaemonClient, find_daemon

T = TypeVar("T")

# Loading the model dominates a start (~25-30 s on this CPU, more when the machine is busy).
START_TIMEOUT = 180.0
SETTLE_TIMEOUT = 60.0


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = SETTLE_TIMEOUT, every: float = 0.1
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` (and the last value seen)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}"
            )
        time.sleep(every)


class DaemonProcess:
    """``rag watch FOLDER`` with ``RAG_DATA_DIR=data_dir``; stderr goes to a log shown on failure."""

    def __init__(
        self, rag_cli: Any, folder: Path, data_dir: Path, env: dict[str, str] | None = None
    ):
        self.rag_cli = rag_cli
        self.folder = folder
        self.data_dir = data_dir
        # Evals after each sync are their own feature (tested with it); here they would only
        # compete for the CPU and slow every wait.
        self.extra_env = {"RAG_EVALS__AFTER_SYNC": "false", **(env or {})}
        self.log_path = data_dir.parent / f"{data_dir.name}-watch.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: DaemonClient | None = None
        self.started_at = 0.0

    # -- lifecycle ------------------------------------------------------------------
    def start(self, wait_ready: bool = True) -> DaemonProcess:
        assert not self.running, "daemon already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        with self.log_path.open("ab") as log:
            log.write(f"--- start at {self.started_at:.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.rag_cli.bin), "watch", str(self.folder)],
                env=self.rag_cli.env(self.data_dir, self.extra_env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {self.proc.returncode}; its log:\n{self.log()}"
            )

    def client(self) -> DaemonClient | None:
        """The control API of *this* process (``daemon.json`` names its pid), or None before it is up."""
        self._check_alive()
        if self._client is None:
            info_path = self.data_dir / "daemon.json"
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError):
                return None
            if self.proc is None or info.get("pid") != self.proc.pid:
                return None
            self._client = find_daemon(self.data_dir)
        return self._client

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Up and done with its initial reconcile."""
        wait_for(
            lambda: (s := self.api_status()) is not None and s["daemon"]["ready"] and s,
            "daemon ready",
            timeout,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        assert self.proc is not None
        self._close_client()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not stop within {timeout:.0f}s of signal {sig}; log:\n{self.log()}"
            ) from None

    def kill9(self) -> None:
        assert self.proc is not None
        self._close_client()
        self.proc.kill()
        self.proc.wait()

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- queries (control API: cheap enough to poll) --------------------------------
    def api_status(self) -> dict[str, Any] | None:
        client = self.client()
        return client.status() if client is not None else None

    def api_export(self) -> list[dict[str, Any]]:
        client = self.client()
        assert client is not None, "daemon is not up"
        return [json.loads(line) for line in client.export_lines() if line]

    def wait_idle(self, timeout: float = SETTLE_TIMEOUT) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.api_status()) is not None and s["daemon"]["idle"] and s,
            "daemon idle",
            timeout,
        )

    def wait_export(
        self,
        check: Callable[[list[dict[str, Any]]], bool],
        what: str,
        timeout: float = SETTLE_TIMEOUT,
    ) -> list[dict[str, Any]]:
        """Poll the export until ``check(rows)`` holds (and the daemon is idle), then return the rows."""

        seen: dict[str, Any] = {}

        def probe() -> list[dict[str, Any]] | None:
            status = self.api_status()
            seen["daemon"] = status and status["daemon"]
            if status is None or not status["daemon"]["idle"]:
                return None
            rows = self.api_export()
            return rows if check(rows) else None

        try:
            return wait_for(probe, what, timeout, every=0.2)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nlast daemon state: {seen.get('daemon')}\ndaemon log:\n{self.log()[-4000:]}"
            ) from None

    # -- the CLI (what a person runs) -----------------------------------------------
    def cli_status(self) -> dict[str, Any]:
        data: dict[str, Any] = self.rag_cli.json(
            "status", "--json", data_dir=self.data_dir, env=self.extra_env
        )
        return data

    def cli_export(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.rag_cli.export(self.data_dir, env=self.extra_env)
        return rows


@pytest.fixture(scope="session")
def start_daemon(rag_cli: Any) -> Iterator[Callable[..., DaemonProcess]]:
    """``start_daemon(folder, data_dir, env=None, wait_ready=True)``; leftovers are killed at session end."""
    started: list[DaemonProcess] = []

    def start(
        folder: Path, data_dir: Path, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> DaemonProcess:
        d = DaemonProcess(rag_cli, folder, data_dir, env)
        started.append(d)
        return d.start(wait_ready=wait_ready)

    yield start
    for d in started:
        if d.running:
            d.kill9()


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    """``poll(probe, what, timeout=60)``: the deadline-polling helper, for test modules."""
    return wait_for
