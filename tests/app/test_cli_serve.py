"""`rag serve --watch DIR` itself: the repo venv's entry point started as a child process, the way
`make run` starts it, then asked over HTTP, fed an edit in the watched folder, and stopped with
Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RagCli

START_TIMEOUT_S = 240
CHANGE_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(
    what: str,
    timeout: float,
    server: subprocess.Popen[str],
    probe: Callable[[], Any],
    every: float = 0.25,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert server.poll() is None, f"rag serve exited {server.returncode} waiting for {what}"
        try:
            last = probe()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what}: not seen in {timeout} s (last: {last!r})")


def test_rag_serve_watches_answers_follows_an_edit_and_stops_cleanly(
    rag_cli: RagCli, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    backups = docs / "backups.md"
    backups.write_text(
        "# Backups\n\nProduction databases are backed up nightly. Backups are kept for 35 days.\n",
        encoding="utf-8",
    )
    (docs / "laptops.md").write_text(
        "# Laptops\n\nEvery engineer gets a laptop with 32 GB of memory on the first day.\n",
        encoding="utf-8",
    )
    data_dir = tmp_path / "data"
    env = rag_cli.env(data_dir, {"RAG_EVALS__AFTER_SYNC": "false"})
    del env["RAG_DATA_DIR"]  # --data-dir on the command line, as a person would give it
    rag = [str(rag_cli.bin), "--data-dir", str(data_dir)]
    key = subprocess.run(
        [*rag, "keys", "local"], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert key.startswith("rk_"), key

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w+", encoding="utf-8")
    server = subprocess.Popen(
        [*rag, "serve", "--host", "127.0.0.1", "--port", str(port), "--watch", str(docs)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    headers = {"Authorization": f"Bearer {key}"}

    def ask() -> dict[str, Any]:
        body = {"question": "How long are backups kept?", "generate": False}
        resp = httpx.post(f"{base}/v1/query", json=body, headers=headers, timeout=60)
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def backup_quote() -> str:
        citations = ask()["citations"]
        assert citations, "the backups document is retrieved"
        top = citations[0]
        assert top["source"] == "backups.md", citations
        return str(top["quote"])

    try:

        def ready() -> dict[str, Any] | None:
            resp = httpx.get(f"{base}/readyz", timeout=10)
            if resp.status_code != 200:
                return None
            body: dict[str, Any] = resp.json()
            # Ready to answer may come before the initial sync of the watched folder is done.
            return body if body["checks"].get("ingestion") == "ok" else None

        _wait_for("/readyz 200 with the initial sync done", START_TIMEOUT_S, server, ready)
        assert "35 days" in backup_quote()

        # What `make run` prints to try next, as printed: answered by this server's pipeline.
        asked = subprocess.run(
            [*rag, "query", "How long are backups kept?"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert asked.returncode == 0 and "35 days" in asked.stdout, asked
        streamed = subprocess.run(
            [*rag, "query", "How long are backups kept?", "--stream", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        kinds = [json.loads(line)["event"] for line in streamed.stdout.splitlines()]
        assert kinds[0] == "token" and kinds[-2:] == ["citations", "done"], streamed
        # A real shell pipeline (this export is small: the endless one that makes the reader go
        # away mid-export is in test_control.py).
        piped = subprocess.run(
            ["bash", "-c", '"$@" export | head -3', "rag", *rag],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        rows = [json.loads(line) for line in piped.stdout.splitlines()]
        assert len(rows) == 2 and piped.stderr == "", piped  # two documents, one chunk each

        # Without a key the API refuses: the local key is what let the query through.
        anon = httpx.post(f"{base}/v1/query", json={"question": "backups?"}, timeout=30)
        assert anon.status_code == 401, anon.text

        backups.write_text(
            "# Backups\n\nProduction databases are backed up nightly. Backups are kept for 90 days.\n",
            encoding="utf-8",
        )

        def edited_quote() -> str | None:
            quote = backup_quote()
            return quote if "90 days" in quote else None

        # Once a second: under the key's rate limit (api.rate_limit) for the whole wait.
        quote = _wait_for(
            "the edit in the watched folder", CHANGE_TIMEOUT_S, server, edited_quote, every=1.0
        )
        assert "35 days" not in quote
    except BaseException:
        server.kill()
        server.wait(30)
        log.seek(0)
        print(f"rag serve log:\n{log.read()}")
        log.close()
        raise

    server.send_signal(signal.SIGINT)
    try:
        code = server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(30)
        code = None
    log.seek(0)
    output = log.read()
    log.close()
    assert code == 0, f"rag serve exited {code} after SIGINT:\n{output}"
    assert "stopped cleanly" in output.splitlines(), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert f"serving the API and chat page on http://127.0.0.1:{port}" in output
