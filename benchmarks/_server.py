"""What the load benchmarks share: ``rag`` run as a command and ``rag serve`` as a subprocess.

``load.py`` and ``tracing_load.py`` both put a real server under wrk; this module is the one
place that starts, waits for and stops it, so the two measure the same deployment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["RagServer", "free_port", "run_cli", "serve_env"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# `python -m app.cli` run in the tree, so a second checkout (load.py --compare-tree) runs its
# own code with this interpreter; the caller's env puts the tree on PYTHONPATH.
RAG = (sys.executable, "-m", "app.cli")


def serve_env(tree: Path, *, queue: int) -> dict[str, str]:
    """This environment for a benchmark's ``rag`` of ``tree``: offline, the answer cache,
    rate limits and evals after sync out of the way, ``api.queue`` at ``queue``. The caller's
    own RAG_/LANGFUSE_ settings are left out (the deployment is the benchmark's); the
    embedding's knobs (RAG_EMBEDDING__*, which the test suite sets) pass."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAG_", "LANGFUSE_")) or k.startswith("RAG_EMBEDDING__")
    }
    env.update(
        {
            "PYTHONPATH": str(tree),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
            "RAG_EVALS__AFTER_SYNC": "false",
            "RAG_CACHE__ENABLED": "false",
            "RAG_API__REQUESTS_PER_MINUTE": "100000000",
            "RAG_API__BURST": "1000000",
            "RAG_API__QUEUE": str(queue),
            "RAG_API__SHUTDOWN_GRACE_SECONDS": "5",
        }
    )
    return env


def run_cli(tree: Path, args: Sequence[str], env: dict[str, str], timeout: float = 1800) -> str:
    """``rag ARGS`` of ``tree``; its stdout, or RuntimeError with the stderr's tail."""
    proc = subprocess.run(
        [*RAG, *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`rag {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


class RagServer:
    """``rag --data-dir DATA serve`` of ``tree`` on a free loopback port, output to ``log_path``;
    ``stop`` sends SIGTERM, then SIGKILL after ``timeout`` seconds."""

    def __init__(
        self,
        tree: Path,
        data_dir: Path,
        env: dict[str, str],
        log_path: Path,
        *,
        name: str = "server",
        serve_args: Sequence[str] = (),
    ):
        self.name = name
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *RAG,
                *("--data-dir", str(data_dir), "serve"),
                *("--host", "127.0.0.1", "--port", str(self.port), *serve_args),
            ],
            env=env,
            cwd=tree,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU so far of the server process (all its threads) and of the
        processes it started (``tracing.worker: process``'s exporter), while they run."""
        total = 0
        pending = [self.proc.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):  # a child that just exited
                continue
        return total / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Until ``/readyz`` answers 200; the seconds it took."""
        import httpx

        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}) before it was ready:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return time.perf_counter() - t0
                    last = f"{r.status_code} {r.text[:300]}"
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} was not ready within {timeout:.0f}s (last /readyz: {last}):\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """``outcome`` ("stopped on SIGTERM", "killed after Ns", "already exited"),
        ``returncode`` and ``seconds``."""
        t0 = time.perf_counter()
        outcome = "already exited"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                outcome = "stopped on SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                outcome = f"killed after {timeout:.0f}s"
        self._log.close()
        return {
            "outcome": outcome,
            "returncode": self.proc.returncode,
            "seconds": round(time.perf_counter() - t0, 2),
        }
