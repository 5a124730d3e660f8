"""The leak canary: seeded PII in documents and questions, a recording OpenAI-compatible server
as the `openai` backend, a recording Langfuse stand-in and every log record of the query path.
No seeded value reaches the model server, the traces or the logs; no answer, streamed or not,
shows a placeholder; the answer still names the person (restored)."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import DEFAULT_CONFIG, Settings, load_settings
from rag.core.types import DoneEvent, Query, ResetEvent, TokenEvent
from rag.guards.pii import PLACEHOLDER
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.indexing.status import export_chunks
from rag.query.pipeline import QueryPipeline
from tests.rag.chat_server import ChatServer

NAME = "John Miller"
EMAIL = "john.miller@gmail.com"
PHONE = "+44 20 7946 0958"
IBAN = "DE89 3704 0044 0532 0130 00"
ADDRESS = "221B Baker Street, London NW1 6XE"
CARD = "4111 1111 1111 1111"
ASKER_PHONE = "(415) 555-0134"
ASKER_EMAIL = "sarah.connor@outlook.com"
SEEDED = [NAME, EMAIL, PHONE, IBAN, ADDRESS, CARD, ASKER_PHONE, ASKER_EMAIL, "Miller", "7946"]

DOCS = {
    "billing.md": (
        "# Billing contacts\n\n"
        f"The billing owner is {NAME}. Reach him at {EMAIL} or {PHONE}. "
        f"Refunds are paid to IBAN {IBAN}. The billing office is at {ADDRESS}.\n"
    ),
    "cards.md": (
        "# Company card\n\n"
        f"The company card {CARD} is kept by the finance team and renewed every two years.\n"
    ),
    "backups.md": "# Backups\n\nBackups are kept for 35 days and encrypted with AES-256.\n",
}


class EchoingServer(ChatServer):
    """Answers with the placeholders it was sent, each split across two streamed pieces."""

    def answer(self, body: dict[str, Any]) -> str:
        sent = " ".join(m["content"] for m in body.get("messages", []))
        person = next(
            (m.group(0) for m in PLACEHOLDER.finditer(sent) if "PERSON" in m.group(0)), ""
        )
        email = next((m.group(0) for m in PLACEHOLDER.finditer(sent) if "EMAIL" in m.group(0)), "")
        text = f"The billing owner is {person} [1]. Reach him at {email} [1]."
        self.reply = text
        return text

    def pieces(self, body: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for word in re.split(r"(?<= )", self.answer(body)):
            if word.startswith("<") and len(word) > 4:
                out += [word[:4], word[4:]]  # "<PER" + "SON_1> "
            else:
                out.append(word)
        return out


@pytest.fixture()
def server() -> Iterator[EchoingServer]:
    s = EchoingServer()
    yield s
    s.close()


@pytest.fixture()
def logs() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buf
    root.removeHandler(handler)
    root.setLevel(old)


def _settings(tmp_path: Path, server: ChatServer, **extra: Any) -> Settings:
    return load_settings(
        DEFAULT_CONFIG,
        {
            "data_dir": str(tmp_path / "data"),
            "cache": {"enabled": False},
            "generation": {"chain": ["openai"], "openai": {"base_url": server.base_url}},
            **extra,
        },
    )


def _leaks(text: str) -> list[str]:
    return [v for v in SEEDED if v.lower() in text.lower()]


def test_no_seeded_value_leaves_and_answers_read_naturally(
    tmp_path: Path, embedder: Embedder, server: EchoingServer, logs: io.StringIO
) -> None:
    from tests.langfuse_standin import LangfuseStandIn

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    with LangfuseStandIn() as standin:
        settings = _settings(
            tmp_path,
            server,
            tracing={
                "public_key": f"pk-lf-test-{uuid.uuid4().hex[:12]}",
                "secret_key": "sk-lf-test",
                "base_url": standin.url,
                "flush_interval_seconds": 0.2,
                "export_timeout_seconds": 1.0,
            },
        )
        index = Index(settings, embedder=embedder)
        index.open(create=True)
        assert Ingestor(index).sync_folder(docs).failed == 0
        # Detected once per chunk at ingest, stored with it: queries do not analyse passages.
        rows = {r["source"]: r for r in export_chunks(index)}
        from rag.guards.pii import detector_for

        fp = detector_for(settings.pii).fingerprint
        billing = index.store.retrieve(index.collection or "", [rows["billing.md"]["id"]])[0]
        assert billing.payload["pii"]["fp"] == fp
        assert [NAME, "PERSON"][::-1] in [list(v) for v in billing.payload["pii"]["values"]]

        from rag.observability import tracing_for

        tracing = tracing_for(settings)
        pipeline = QueryPipeline(index, settings, tracer=tracing.tracer)
        plain = pipeline.run(
            Query(f"Who is the billing owner? I am {ASKER_EMAIL}, phone {ASKER_PHONE}.")
        )
        events = list(
            pipeline.stream(
                Query(f"Is {NAME} the billing owner? I am {ASKER_EMAIL}, phone {ASKER_PHONE}.")
            )
        )
        tokens: list[str] = []
        for e in events:
            if isinstance(e, ResetEvent):
                tokens.clear()
            elif isinstance(e, TokenEvent):
                tokens.append(e.text)
        streamed = next(e for e in events if isinstance(e, DoneEvent)).answer

        # What the model server was sent: placeholders, consistent within each request.
        assert len(server.requests) == 2
        sent = json.dumps(server.requests)
        assert _leaks(sent) == [], sent
        assert "<PERSON_1>" in sent and "<EMAIL_ADDRESS_1>" in sent and "<PHONE_NUMBER_" in sent
        # The name in the question and in the passage: one placeholder in that request.
        asked = server.requests[1]["messages"][-1]["content"]
        assert asked.count("<PERSON_1>") == 2 and "<PERSON_2>" not in asked, asked
        assert "35 days" in sent, "what is not PII goes as written"

        # What the user sees: the value, never a placeholder, whole or streamed in pieces.
        for answer in (plain, streamed):
            assert answer.generator == "openai" and not answer.abstained, answer
            assert EMAIL in answer.answer
            assert not PLACEHOLDER.search(answer.answer) and "PERSON" not in answer.answer
            assert all(c.verified for c in answer.citations if c.n == 1)
        assert NAME in plain.answer
        assert "".join(tokens) == streamed.answer
        assert not any("<" in t or "PERSON" in t for t in tokens), tokens

        # Traces and logs: nothing seeded.
        assert standin.wait_for(lambda s: len(s.spans) >= 6), "no spans arrived"
        tracing.shutdown(2.0)
        assert _leaks(standin.everything()) == [], standin.everything()[:2000]
        index.close()
    logged = logs.getvalue()
    assert _leaks(logged) == [], logged[-3000:]


def test_an_error_quoting_a_question_is_logged_scrubbed(
    tmp_path: Path, server: ChatServer, logs: io.StringIO, embedder: Embedder
) -> None:
    settings = _settings(tmp_path, server)
    Index(settings, embedder=embedder)  # installs the log scrubbing of this configuration
    from rag.guards.pii import scrub_exception

    try:
        raise ValueError(f"cannot answer 'what is {ASKER_EMAIL}'s card {CARD}?'")
    except ValueError as exc:
        logging.getLogger("rag.query.pipeline").exception("query failed: %s", exc)
        logging.getLogger("api.routes_query").warning("bad request from %s", ASKER_PHONE)
        message = scrub_exception(exc, settings)
    assert _leaks(message) == [] and "<EMAIL_ADDRESS>" in message and "<CREDIT_CARD>" in message
    logged = logs.getvalue()
    assert "query failed" in logged and "Traceback" in logged and "<CREDIT_CARD>" in logged
    assert _leaks(logged) == [], logged


REPO = Path(__file__).resolve().parents[4]
PACKAGES = ("rag", "api", "app", "ingestion", "evals", "benchmarks")


def project_loggers() -> set[str]:
    """Every logger the project's code names, read from its source: ``getLogger("name")``
    and ``getLogger(__name__)`` (the module's dotted name). Plus a module logger under each
    package, for the loggers a new module will add."""
    names = {f"{package}.new_module" for package in PACKAGES}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(
                ".__init__"
            )
            for found in re.findall(r'getLogger\((__name__|"[^"]+")\)', path.read_text()):
                name = module if found == "__name__" else found.strip('"')
                if name.split(".")[0] in PACKAGES:  # not a library's logger being tuned
                    names.add(name)
    return names


def test_every_logger_of_the_project_is_scrubbed(
    tmp_path: Path, server: ChatServer, logs: io.StringIO, embedder: Embedder
) -> None:
    """Logs of the app, ingestion and evals, not only of the library and the API."""
    loggers = project_loggers()
    # The ones the code has today, as a floor: the scan itself must keep finding them.
    assert {"api", "rag.daemon", "rag.evals", "evals.datasets", "rag.indexing.ingest"} <= loggers
    Index(_settings(tmp_path, server), embedder=embedder)  # installs the log scrubbing
    for name in sorted(loggers):
        logging.getLogger(name).warning("[%s] asked by %s, card %s", name, ASKER_EMAIL, CARD)
    logged = logs.getvalue()
    for name in loggers:
        assert f"[{name}] asked by <EMAIL_ADDRESS>" in logged, (name, logged[-2000:])
    assert _leaks(logged) == [], [line for line in logged.splitlines() if _leaks(line)]


def test_pii_disabled_sends_text_as_written(
    tmp_path: Path, embedder: Embedder, server: EchoingServer
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "billing.md").write_text(DOCS["billing.md"], encoding="utf-8")
    settings = _settings(tmp_path, server, pii={"enabled": False})
    index = Index(settings, embedder=embedder)
    index.open(create=True)
    Ingestor(index).sync_folder(docs)
    row = next(iter(export_chunks(index)))
    assert "pii" not in index.store.retrieve(index.collection or "", [row["id"]])[0].payload
    QueryPipeline(index, settings).run(Query(f"Who is {NAME}?"))
    assert NAME in json.dumps(server.requests), "the canary above can fail: off means off"
    index.close()
