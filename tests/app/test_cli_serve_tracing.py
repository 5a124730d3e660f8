"""`rag serve` traced to a Langfuse that accepts connections and never answers: requests are
answered as usual (with their trace ids), and SIGTERM still stops the process in bounded time:
the grace period, tracing.shutdown_timeout_seconds for the last spans, and a margin for the
process to end (generous: a loaded 2-core CI machine) — far below the export timeout, which is
what an unbounded wait for the stalled server would take."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.test_cli_serve import START_TIMEOUT_S, _free_port, _wait_for
from tests.conftest import RagCli
from tests.langfuse_standin import LangfuseStandIn

GRACE_S = 2.0
SHUTDOWN_S = 1.0  # tracing.shutdown_timeout_seconds
EXPORT_TIMEOUT_S = 60.0  # one export try to the stalled server
EXIT_MARGIN_S = 12.0


def test_serve_with_a_stalled_langfuse_answers_and_stops_in_time(
    rag_cli: RagCli, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backups.md").write_text(
        "# Backups\n\nProduction databases are backed up nightly. Backups are kept for 35 days.\n",
        encoding="utf-8",
    )
    data_dir = tmp_path / "data"
    with LangfuseStandIn("stall") as stalled:
        env = rag_cli.env(
            data_dir,
            {
                "RAG_EVALS__AFTER_SYNC": "false",
                "RAG_API__SHUTDOWN_GRACE_SECONDS": str(GRACE_S),
                "LANGFUSE_PUBLIC_KEY": "pk-lf-serve",
                "LANGFUSE_SECRET_KEY": "sk-lf-serve",
                "LANGFUSE_BASE_URL": stalled.url,
                "LANGFUSE_FLUSH_INTERVAL": "0.2",
            },
        )
        key = rag_cli.run("keys", "local", data_dir=data_dir, env=env).stdout.strip()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / "serve.log").open("w+", encoding="utf-8")
        server = subprocess.Popen(
            [
                str(rag_cli.bin),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--watch",
                str(docs),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        headers = {"Authorization": f"Bearer {key}"}
        try:

            def ready() -> Any:
                r = httpx.get(f"{base}/readyz", timeout=10)
                return r.status_code == 200 and r.json()["checks"].get("ingestion") == "ok"

            _wait_for("/readyz", START_TIMEOUT_S, server, ready)
            for _ in range(5):
                r = httpx.post(
                    f"{base}/v1/query",
                    json={"question": "How long are backups kept?"},
                    headers=headers,
                    timeout=60,
                )
                assert r.status_code == 200, r.text
                assert "35 days" in r.json()["answer"] and r.headers["X-Trace-Id"]
            assert stalled.wait_for(lambda s: s.requests, 10), "the SDK reached the stalled server"
        except BaseException:
            server.kill()
            server.wait(30)
            log.seek(0)
            print(log.read())
            raise
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = None
        took = time.monotonic() - started
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output[-3000:]
    assert took <= GRACE_S + SHUTDOWN_S + EXIT_MARGIN_S < EXPORT_TIMEOUT_S, (
        f"stopped in {took:.1f}s: {output[-2000:]}"
    )
    assert "stopped cleanly" in output.splitlines()
