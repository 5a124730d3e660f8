"""`rag query`: how its flags become one ``Query``, and how that query reaches the pipeline on
both paths: a running daemon's (over the control API, streamed as generated) and one built in
this process when no daemon holds the data dir."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import app.cli.core as cli_core
import app.cli.query as cli_query
import rag.query.pipeline as pipeline_module
from app.cli import app as rag_app
from app.cli.query import build_query, parse_filters
from app.control import find_daemon
from app.runtime import Runtime
from rag.contracts import QueryState
from rag.core.config import Settings
from rag.core.types import Query, StreamEvent
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.query.pipeline import QueryPipeline, default_stages
from tests.conftest import RagCli
from tests.rag.chat_server import ChatServer


def test_parse_filters() -> None:
    assert parse_filters(["source=a.md", "source=b.md", "page=2", "x=true"]) == {
        "source": ["a.md", "b.md"],
        "page": 2,
        "x": True,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_filters(["=v"])


def test_every_flag_becomes_a_query_field() -> None:
    query = build_query(
        "q",
        filters=["source=a.md"],
        prompt="answer@v2",
        context_only=True,
        user="u",
        session="s",
        temperature=0.5,
        max_tokens=64,
    )
    assert query == Query(
        "q",
        filters={"source": "a.md"},
        prompt="answer@v2",
        generate=False,
        user="u",
        session="s",
        temperature=0.5,
        max_tokens=64,
    )
    # A Query field the command cannot set is a decision: the tenant is the deployment's,
    # the trace id the tracer's; a one-shot command has no conversation (history: the API and
    # the chat page send it); it reads as the CLI's principal (groups None: access.cli_groups,
    # no asker). Any other new field needs a flag here.
    default = Query("q")
    unset = {f.name for f in fields(Query) if getattr(query, f.name) == getattr(default, f.name)}
    assert unset == {"question", "tenant", "trace_id", "history", "groups", "asker"}
    assert build_query("q") == default


class RecordQueries:
    """A stage of the real query path (put first): records the ``Query`` each walk starts with."""

    name = "record"

    def __init__(self) -> None:
        self.queries: list[Query] = []

    def warm_up(self) -> None:
        return None

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        self.queries.append(state.query)
        return iter(())


SENTENCES = [
    "Database backups run every night at two in the morning [1].",
    "Backups are kept for 35 days in a second region [1].",
    "Restores of the backups are tested every quarter by the operations team [1].",
    "Backup failures page the on-call engineer at once [1].",
]
QUESTION = "How are database backups run, kept, tested and watched?"
FLAGS = [
    "--session",
    "s-1",
    "--user",
    "u-1",
    "--temperature",
    "0.25",
    "--max-tokens",
    "200",
    "--prompt",
    "answer",
    "--filter",
    "source=backups.md",
]
ASKED = Query(
    QUESTION,
    filters={"source": "backups.md"},
    prompt="answer",
    user="u-1",
    session="s-1",
    temperature=0.25,
    max_tokens=200,
)


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    text = " ".join(s.replace(" [1]", "") for s in SENTENCES)
    (docs / "backups.md").write_text(f"# Backups\n\n{text}\n", encoding="utf-8")
    return docs


class GatedReplies:
    """``ChatServer.before_token``: the stand-in model (an LLM cannot run in this test) holds
    the first word of sentence k+2 until the `rag query` process has printed k token events.
    An answer that reached the CLI only at the end would leave every gate to time out."""

    def __init__(self) -> None:
        words = " ".join(SENTENCES).split(" ")
        self.starts: dict[int, int] = {}  # word index -> sentence number
        at = 0
        for k, sentence in enumerate(SENTENCES):
            self.starts[at] = k
            at += len(sentence.split(" "))
        assert at == len(words)
        self.printed = 0
        self.changed = threading.Condition()
        self.opened: list[bool] = []

    def __call__(self, i: int) -> None:
        k = self.starts.get(i)
        if k is None or k < 2:
            return
        with self.changed:
            self.opened.append(self.changed.wait_for(lambda: self.printed >= k - 1, timeout=20))

    def saw_token(self) -> None:
        with self.changed:
            self.printed += 1
            self.changed.notify_all()


@pytest.fixture()
def chat() -> Iterator[ChatServer]:
    server = ChatServer(reply=" ".join(SENTENCES))
    yield server
    server.close()


def _settings(tmp_settings: Callable[..., Settings], chat: ChatServer) -> Settings:
    return tmp_settings(
        evals={"after_sync": False},
        # The openai backend, against a stand-in server: the request it sends shows what
        # reached the model (temperature, max_tokens). PII scrubbing is tested on its own.
        generation={"chain": ["openai"], "openai": {"base_url": chat.base_url, "max_retries": 0}},
        pii={"enabled": False},
    )


def test_rag_query_streams_from_a_running_daemon_with_every_flag(
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    chat: ChatServer,
    rag_cli: RagCli,
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_settings, chat)
    data_dir = settings.resolved_data_dir()
    recorder = RecordQueries()
    index = Index(settings, embedder=embedder)
    pipeline = QueryPipeline(index, settings, stages=[recorder, *default_stages(index, settings)])
    runtime = Runtime(
        settings,
        [_docs(tmp_path)],
        reconcile_interval=3600,
        index=index,
        pipeline=pipeline,
        echo=lambda m: None,
    )
    gates = GatedReplies()
    chat.before_token = gates
    runtime.start()
    try:
        client = find_daemon(data_dir)
        assert client is not None
        deadline = time.monotonic() + 120
        while not client.status()["daemon"]["idle"]:
            assert time.monotonic() < deadline, "initial sync did not finish"
            time.sleep(0.1)
        client.close()

        # `rag query --stream --json` in its own process, read line by line as it prints.
        env = {**rag_cli.env(data_dir), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [str(rag_cli.bin), "query", QUESTION, "--stream", "--json", *FLAGS],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        events: list[dict[str, Any]] = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "token":
                gates.saw_token()
        stderr = proc.stderr.read()
        assert proc.wait(60) == 0, stderr

        kinds = [e["event"] for e in events]
        assert kinds == ["token"] * len(SENTENCES) + ["citations", "done"], events
        assert gates.opened == [True, True], (
            "each sentence reached the CLI while the model was still generating"
        )
        done = events[-1]["data"]
        assert "".join(e["data"] for e in events if e["event"] == "token") == done["answer"]
        assert done["generator"] == "openai" and done["prompt"]["name"] == "answer"
        assert [c["source"] for c in done["citations"]] == ["backups.md"]

        # Every flag reached the daemon's pipeline, and the model request.
        assert recorder.queries == [ASKED]
        sent = chat.requests[-1]
        assert sent["temperature"] == 0.25 and sent["max_tokens"] == 200 and sent["stream"]

        # Not streamed: --context-only is generate=False, answered with the packed context.
        out = rag_cli.json("query", QUESTION, "--context-only", "--json", *FLAGS, data_dir=data_dir)
        assert recorder.queries[-1] == replace(ASKED, generate=False)
        assert out["answer"] == "" and out["citations"][0]["source"] == "backups.md"
        assert len(chat.requests) == 1, "no model call without generation"
    finally:
        runtime.stop()


def test_without_a_daemon_every_flag_reaches_the_pipeline_in_this_process(
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    chat: ChatServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(tmp_settings, chat)
    data_dir = settings.resolved_data_dir()
    from rag.indexing.ingest import Ingestor

    index = Index(settings, embedder=embedder)
    index.open(create=True)
    try:
        Ingestor(index).sync_folder(_docs(tmp_path))
    finally:
        index.close()

    # `rag query` builds its own pipeline here: the real one, with the recording stage first,
    # over an index that reuses the session's loaded embedding model.
    recorder = RecordQueries()

    class Recording(QueryPipeline):
        def __init__(self, index: Index, settings: Settings, **kwargs: Any):
            stages = [recorder, *default_stages(index, settings)]
            super().__init__(index, settings, stages=stages, **kwargs)

    def open_index(create: bool = True) -> Index:
        opened = Index(cli_core.get_settings(), embedder=embedder)
        opened.open(create=create)
        return opened

    monkeypatch.setattr(pipeline_module, "QueryPipeline", Recording)
    monkeypatch.setattr(cli_query, "open_index", open_index)
    env = {
        "RAG_DATA_DIR": str(data_dir),
        "RAG_EVALS__AFTER_SYNC": "false",
        "RAG_GENERATION__CHAIN": '["openai"]',
        "RAG_GENERATION__OPENAI__BASE_URL": chat.base_url,
        "RAG_GENERATION__OPENAI__MAX_RETRIES": "0",
        "RAG_PII__ENABLED": "false",
    }
    result = CliRunner().invoke(rag_app, ["query", QUESTION, "--stream", "--json", *FLAGS], env=env)
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert kinds == ["token"] * len(SENTENCES) + ["citations", "done"]
    assert recorder.queries == [ASKED]
    sent = chat.requests[-1]
    assert sent["temperature"] == 0.25 and sent["max_tokens"] == 200


INVENTED = "After that they are archived to tape for seven years [1]."


@pytest.mark.parametrize("stream", [False, True])
def test_rag_query_never_prints_a_sentence_no_passage_supports(
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
    chat: ChatServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    """Issue 22: the model's invented sentence (cited like the true one) is left out of what
    `rag query` prints — the answer, the stream, the notes on stderr — only counted."""
    settings = _settings(tmp_settings, chat)
    from rag.indexing.ingest import Ingestor

    index = Index(settings, embedder=embedder)
    index.open(create=True)
    try:
        Ingestor(index).sync_folder(_docs(tmp_path))
    finally:
        index.close()

    def open_index(create: bool = True) -> Index:
        opened = Index(cli_core.get_settings(), embedder=embedder)
        opened.open(create=create)
        return opened

    monkeypatch.setattr(cli_query, "open_index", open_index)
    chat.reply = f"{SENTENCES[1]} {INVENTED}"
    env = {
        "RAG_DATA_DIR": str(settings.resolved_data_dir()),
        "RAG_EVALS__AFTER_SYNC": "false",
        "RAG_GENERATION__CHAIN": '["openai"]',
        "RAG_GENERATION__OPENAI__BASE_URL": chat.base_url,
        "RAG_GENERATION__OPENAI__MAX_RETRIES": "0",
        "RAG_PII__ENABLED": "false",
    }
    args = ["query", "How long are backups kept?", *(["--stream"] if stream else [])]
    result = CliRunner().invoke(rag_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "35 days" in result.stdout, result.output
    assert "tape" not in result.output, result.output
    assert "1 sentence(s) of the model's answer left out" in result.stderr
