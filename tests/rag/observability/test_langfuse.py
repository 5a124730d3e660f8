"""The Langfuse tracer through the real SDK, against the loopback stand-in that decodes what
it sends (OTLP protobuf, score JSON): the trace tree and its fields, streamed and not; the
fallback chain's attempts as generations; disabled mode; no seeded PII in what leaves."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.types import DoneEvent, Query, Turn
from rag.observability import Tracing, tracing_for
from rag.query.pipeline import QueryPipeline
from tests.langfuse_standin import ExportedSpan, LangfuseStandIn, refused_url
from tests.rag.chat_server import ChatServer, Fault
from tests.rag.conftest import KnowledgeBase

PII_EMAIL = "jane.roe@gmail.com"
PII_PHONE = "+44 20 7946 0958"
PII_NAME = "John Miller"  # no regex finds a name: rag.guards.pii (Presidio) at export does


@pytest.fixture()
def standin() -> Iterator[LangfuseStandIn]:
    with LangfuseStandIn() as s:
        yield s


def traced_settings(make: Callable[..., Settings], url: str, **extra: Any) -> Settings:
    # A fresh public key per test: the SDK keeps one client per key per process.
    key = f"pk-lf-test-{uuid.uuid4().hex[:12]}"
    tracing = {
        "public_key": key,
        "secret_key": "sk-lf-test",
        "base_url": url,
        "flush_interval_seconds": 0.2,
        "export_timeout_seconds": 1.0,
        "shutdown_timeout_seconds": 2.0,
        "release": "r-test",
        **extra.pop("tracing", {}),
    }
    extra.setdefault("generation", {"chain": ["extractive"]})
    return make(tracing=tracing, **extra)


def _pipeline(kb: KnowledgeBase, settings: Settings, tracing: Tracing) -> QueryPipeline:
    return QueryPipeline(kb.index, settings, tracer=tracing.tracer)


def _tree(spans: list[ExportedSpan]) -> tuple[ExportedSpan, dict[str, list[ExportedSpan]]]:
    roots = [s for s in spans if s.attributes.get("langfuse.internal.as_root")]
    assert len(roots) == 1, [s.name for s in spans]
    children: dict[str, list[ExportedSpan]] = {}
    for s in spans:
        if s.parent_id:
            children.setdefault(s.parent_id, []).append(s)
    return roots[0], children


def _wait_trace(
    standin: LangfuseStandIn, trace_id: str, tracing: Tracing, n: int = 7
) -> list[ExportedSpan]:
    assert standin.wait_for(lambda s: len([x for x in s.spans if x.trace_id == trace_id]) >= n), (
        f"spans of {trace_id} never arrived: {[(x.trace_id, x.name) for x in standin.spans]}"
    )
    time.sleep(0.3)
    return standin.trace(trace_id)


@pytest.mark.parametrize(
    ("streamed", "worker"), [(False, "thread"), (True, "thread"), (False, "process")]
)
def test_one_trace_per_query_with_a_span_per_stage(
    kb: KnowledgeBase,
    kb_settings: Callable[..., Settings],
    standin: LangfuseStandIn,
    streamed: bool,
    worker: str,
) -> None:
    settings = traced_settings(kb_settings, standin.url, tracing={"worker": worker})
    tracing = tracing_for(settings)
    assert tracing.enabled
    pipeline = _pipeline(kb, settings, tracing)
    query = Query(
        question=f"How long are backups kept? Mail me at {PII_EMAIL} or call {PII_PHONE}, "
        f"{PII_NAME}",
        user="alice@example.org",
        session="s-1",
        tenant="default",
    )
    if streamed:
        events = list(pipeline.stream(query))
        answer = next(e for e in events if isinstance(e, DoneEvent)).answer
    else:
        answer = pipeline.run(query)
    assert answer.trace_id and len(answer.trace_id) == 32
    assert tracing.owns(answer.trace_id, "default") and not tracing.owns(answer.trace_id, "acme")
    spans = _wait_trace(standin, answer.trace_id, tracing)
    root, children = _tree(spans)
    assert root.name == "query"
    stages = [s.name for s in sorted(children[root.span_id], key=lambda s: s.start_ns)]
    core = ["prompt", "retrieve", "rerank", "pack", "generate", "answer"]
    assert [n for n in stages if n in core] == core, stages  # added stages (PII, cache...) too
    by_name = {s.name: s for s in children[root.span_id]}
    assert by_name["retrieve"].type == "retriever"
    # passages as ids, sources and scores, never their text
    hits = by_name["retrieve"].json_attr("langfuse.observation.output")["hits"]
    assert hits and {"id", "source", "score"} <= hits[0].keys() and "text" not in hits[0]
    assert "35 days" not in by_name["pack"].text()
    # one generation per backend attempt, under generate
    gens = children[by_name["generate"].span_id]
    assert [g.type for g in gens] == ["generation"]
    gen = gens[0]
    assert gen.attributes["langfuse.observation.model.name"] == "extractive"
    meta = {
        k: v for k, v in gen.attributes.items() if k.startswith("langfuse.observation.metadata.")
    }
    assert '"answered"' in meta["langfuse.observation.metadata.outcome"]
    assert "answer" in meta["langfuse.observation.metadata.prompt"]  # name and version
    assert "input" in gen.json_attr("langfuse.observation.usage_details")
    if streamed:
        assert "langfuse.observation.completion_start_time" in gen.attributes
    # trace level: pseudonymous user, session, tenant, release; question and answer scrubbed
    assert root.attributes["user.id"].startswith("u_") and "alice" not in root.text()
    assert root.attributes["session.id"].startswith("u_")
    assert "default" in root.attributes["langfuse.trace.metadata.tenant"]
    assert root.resource.get("langfuse.release") == "r-test"
    question = root.json_attr("langfuse.observation.input")["question"]
    assert "How long are backups kept?" in question and PII_EMAIL not in question
    output = root.json_attr("langfuse.observation.output")
    assert output["answer"] == answer.answer and "citations" in output
    # scores: abstained, degraded, citation support
    assert answer.citations, answer
    assert standin.wait_for(
        lambda s: (
            {"abstained", "degraded", "citation_support"}
            <= {x["name"] for x in s.scores if x.get("traceId") == answer.trace_id}
        )
    ), standin.scores
    everything = standin.everything()
    assert PII_EMAIL not in everything and PII_PHONE not in everything
    assert PII_NAME not in everything and "<PERSON>" in question
    assert "alice@example.org" not in everything
    pipeline.close()
    tracing.shutdown()


@pytest.mark.parametrize("fault", ["failed", "refused"])
def test_each_backend_attempt_is_a_generation_with_its_outcome(
    kb: KnowledgeBase,
    kb_settings: Callable[..., Settings],
    standin: LangfuseStandIn,
    chat_server: ChatServer,
    fault: str,
) -> None:
    if fault == "failed":
        chat_server.faults.append(Fault(status=500))
    else:  # says something none of the documents support: verification hands over
        chat_server.reply = f"Bananas are yellow and {PII_EMAIL} likes them [1]."
    settings = traced_settings(
        kb_settings,
        standin.url,
        generation={
            "chain": ["openai", "extractive"],
            "openai": {"base_url": chat_server.base_url, "max_retries": 0},
        },
    )
    tracing = tracing_for(settings)
    pipeline = _pipeline(kb, settings, tracing)
    events = list(pipeline.stream(Query(question="How long are backups kept?", tenant="default")))
    answer = next(e for e in events if isinstance(e, DoneEvent)).answer
    assert answer.generator == "extractive" and answer.trace_id
    assert answer.degraded is (fault == "failed")
    spans = _wait_trace(standin, answer.trace_id, tracing, n=8)
    gens = sorted((s for s in spans if s.type == "generation"), key=lambda s: s.start_ns)
    models = [g.attributes["langfuse.observation.model.name"] for g in gens]
    assert models == [settings.generation.openai.model, "extractive"]
    first = gens[0]
    assert f'"{fault}"' in first.attributes["langfuse.observation.metadata.outcome"]
    assert first.attributes["langfuse.observation.level"] == (
        "ERROR" if fault == "failed" else "WARNING"
    )
    assert first.attributes["langfuse.observation.status_message"]
    params = first.json_attr("langfuse.observation.model.parameters")
    assert params["max_tokens"] > 0 and "temperature" in params
    if fault == "refused":
        usage = first.json_attr("langfuse.observation.usage_details")
        assert usage["output"] == len(chat_server.reply.split())
        assert "langfuse.observation.completion_start_time" in first.attributes
        assert "not supported" in first.attributes["langfuse.observation.status_message"]
    assert PII_EMAIL not in standin.everything()
    assert standin.wait_for(
        lambda s: any(
            x["name"] == "degraded" and x.get("traceId") == answer.trace_id for x in s.scores
        )
    )
    pipeline.close()
    tracing.shutdown()


def test_a_follow_ups_standalone_question_is_in_its_condense_span(
    kb: KnowledgeBase, kb_settings: Callable[..., Settings], standin: LangfuseStandIn
) -> None:
    settings = traced_settings(kb_settings, standin.url)
    tracing = tracing_for(settings)
    pipeline = _pipeline(kb, settings, tracing)
    history = (
        Turn("user", f"When was the Eiffel Tower built? Mail me at {PII_EMAIL}"),
        Turn("assistant", "It was built between 1887 and 1889 [1]."),
    )
    answer = pipeline.run(Query("How tall is it?", history=history, tenant="default"))
    assert answer.standalone_question == "How tall is the Eiffel Tower?" and answer.trace_id
    spans = _wait_trace(standin, answer.trace_id, tracing)
    root, children = _tree(spans)
    condense = next(s for s in children[root.span_id] if s.name == "condense")
    assert condense.json_attr("langfuse.observation.output") == {
        "standalone_question": "How tall is the Eiffel Tower?"
    }
    assert condense.json_attr("langfuse.observation.input") == {"asked": "How tall is it?"}
    detail = next(s for s in children[condense.span_id] if s.name == "condense.question")
    meta = {k: v for k, v in detail.attributes.items() if "metadata" in k}
    assert '"rules"' in meta["langfuse.observation.metadata.condense_method"], meta
    assert PII_EMAIL not in standin.everything()
    pipeline.close()
    tracing.shutdown()


def test_no_keys_means_no_tracer_and_no_trace_id(
    kb: KnowledgeBase, kb_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    settings = kb_settings(generation={"chain": ["extractive"]})
    tracing = tracing_for(settings)
    assert not tracing.enabled and tracing.tracer is None
    assert tracing.new_trace_id("default") is None
    answer = QueryPipeline(kb.index, settings, tracer=tracing.tracer).run(
        "How long are backups kept?"
    )
    assert answer.trace_id is None
    assert "trace_id" in answer.as_json()


def test_keys_from_the_langfuse_variables(
    kb_settings: Callable[..., Settings], standin: LangfuseStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.observability import resolve_config

    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    monkeypatch.setenv("LANGFUSE_HOST", standin.url + "/")
    config = resolve_config(kb_settings())
    assert config is not None and config.public_key == "pk-env" and config.base_url == standin.url
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://other:3000")
    config = resolve_config(kb_settings())
    assert config is not None and config.base_url == "http://other:3000"
    assert resolve_config(kb_settings(tracing={"enabled": False})) is None


@pytest.mark.parametrize("mode", ["refuse", "503", "stall"])
def test_a_failing_langfuse_never_touches_the_request(
    kb: KnowledgeBase, kb_settings: Callable[..., Settings], mode: str
) -> None:
    with LangfuseStandIn("ok" if mode == "refuse" else mode) as server:
        url = refused_url() if mode == "refuse" else server.url
        settings = traced_settings(kb_settings, url)
        tracing = tracing_for(settings)
        pipeline = _pipeline(kb, settings, tracing)
        baseline = QueryPipeline(kb.index, settings).run("How long are backups kept?")
        for _ in range(5):
            answer = pipeline.run(Query(question="How long are backups kept?", tenant="default"))
            assert answer.answer == baseline.answer and answer.trace_id
        assert tracing.score(answer.trace_id, "user_feedback", 0.0, comment="bad")
        started = time.monotonic()
        tracing.shutdown(timeout=1.0)
        assert time.monotonic() - started < 2.0, "shutdown is bounded"
        pipeline.close()


def test_a_stream_the_client_leaves_is_a_cancelled_trace(
    kb: KnowledgeBase, kb_settings: Callable[..., Settings], standin: LangfuseStandIn
) -> None:
    settings = traced_settings(kb_settings, standin.url)
    tracing = tracing_for(settings)
    pipeline = _pipeline(kb, settings, tracing)
    events = pipeline.stream(Query(question="How long are backups kept?", tenant="default"))
    next(events)  # the first token, then the client hangs up
    events.close()
    assert standin.wait_for(lambda s: any(x.name == "query" for x in s.spans))
    root = next(x for x in standin.spans if x.name == "query")
    assert root.attributes["langfuse.observation.level"] == "WARNING"
    assert "cancelled" in root.attributes["langfuse.observation.status_message"]
    pipeline.close()
    tracing.shutdown()


@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_traces_are_dropped_on_arrival_while_langfuse_fails(
    kb: KnowledgeBase,
    kb_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """Once an export failed (refused) or stalls, the next requests' traces are neither built
    into spans nor masked nor sent (under load that work cost 20-40 % of p50 for nothing);
    when Langfuse answers again, traces arrive again."""
    import rag.observability.langfuse as langfuse_module

    # long enough for the ten requests below on a busy machine
    monkeypatch.setattr(langfuse_module, "_PAUSE_SECONDS", (4.0, 4.0), raising=False)
    url = refused_url()
    port = int(url.rsplit(":", 1)[1])
    server = LangfuseStandIn("stall", port=port).__enter__() if mode == "stall" else None
    # Refused: 1 s of retries, then the failure pauses tracing. Stalled: the export would time
    # out only after 8 s; tracing must pause while it is still waiting (after 1 s).
    timeout = 8.0 if mode == "stall" else 1.0
    settings = traced_settings(
        kb_settings, url, tracing={"export_timeout_seconds": timeout}
    )  # batches every 0.2 s
    tracing = tracing_for(settings)
    tracer: Any = tracing.langfuse
    built: list[str] = []
    replay = tracer._replay

    def counted(record: Any) -> None:
        built.append(record.trace_id)
        replay(record)

    monkeypatch.setattr(tracer, "_replay", counted)
    pipeline = _pipeline(kb, settings, tracing)
    question = Query(question="How long are backups kept?", tenant="default")
    try:
        pipeline.run(question)  # its export is refused, or stalls
        deadline = time.monotonic() + (3 if mode == "stall" else 10)
        while time.monotonic() < deadline and not getattr(tracer, "paused", lambda: False)():
            time.sleep(0.1)
        before = len(built)
        answers = [pipeline.run(question) for _ in range(10)]
        time.sleep(0.5)  # the worker drains its queue
        assert all(a.answer and a.trace_id for a in answers), "requests are served as ever"
        assert len(built) - before == 0, (
            f"{len(built) - before} of 10 traces built for a failing Langfuse"
        )

        if server is not None:
            server.stop()  # the stalled export ends (connection closed): a failure
        server = LangfuseStandIn("ok", port=port).__enter__()
        deadline = time.monotonic() + 30
        arrived = False
        while time.monotonic() < deadline and not arrived:
            pipeline.run(question)
            arrived = server.wait_for(lambda s: any(x.name == "query" for x in s.spans), 0.5)
        assert arrived, "traces reach Langfuse again once it answers"
    finally:
        pipeline.close()
        tracing.shutdown(timeout=1.0)
        if server is not None:
            server.stop()


def test_a_batch_of_traces_is_scrubbed_in_one_pass_of_the_pii_model(
    kb: KnowledgeBase,
    kb_settings: Callable[..., Settings],
    standin: LangfuseStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Export-time masking runs spaCy once over a batch's questions and answers, not once
    per text (one call each cost ~2.5x more CPU, which requests under load pay for: the
    GIL); the names are still scrubbed."""
    from rag.guards.pii import detector_for

    settings = traced_settings(kb_settings, standin.url, tracing={"flush_interval_seconds": 5.0})
    engine = detector_for(settings.pii)
    engine.warm_up()
    nlp = engine._engine.nlp_engine
    calls: list[tuple[str, str]] = []
    single, batch = nlp.process_text, nlp.process_batch

    def process_text(text: str, language: str) -> Any:
        calls.append(("text", threading.current_thread().name))
        return single(text, language)

    def process_batch(texts: Any, language: str, **kw: Any) -> Any:
        calls.append(("batch", threading.current_thread().name))
        return batch(texts, language, **kw)

    monkeypatch.setattr(nlp, "process_text", process_text)
    monkeypatch.setattr(nlp, "process_batch", process_batch)
    tracing = tracing_for(settings)
    pipeline = _pipeline(kb, settings, tracing)
    names = ["John Miller", "Sarah Connor", "Maria Garcia", "David Chen", "Anna Kowalski"]
    try:
        for name in names:
            pipeline.run(Query(question=f"How long does {name} keep backups?", tenant="default"))
        assert tracing.flush(15.0)
        assert standin.wait_for(lambda s: len([x for x in s.spans if x.name == "query"]) >= 5)
    finally:
        pipeline.close()
        tracing.shutdown(timeout=2.0)
    # the export's thread (the processor's, or flush's); not the requests' (MainThread)
    exporter = [kind for kind, thread in calls if thread != "MainThread"]
    assert exporter.count("text") == 0 and exporter.count("batch") >= 1, calls
    sent = standin.everything()
    assert not [n for n in names if n in sent], "names reached Langfuse"


def test_fields_encoded_ahead_give_the_sdks_own_attributes() -> None:
    # The worker JSON-encodes input/output itself (the C encoder; the SDK's walks every value
    # in Python): what reaches Langfuse must be byte for byte what the SDK would have written.
    from langfuse._client.attributes import create_generation_attributes, create_span_attributes

    from rag.observability.langfuse import _SERIALIZED, _json

    fields: dict[str, Any] = {
        "input": {"question": "Où sont les sauvegardes ? ünïcode", "history": [1, 2.5, None]},
        "output": {"hits": [{"id": "a", "score": 0.1234, "ok": True}], "empty": {}},
        "metadata": {"streaming": False},
        "usage_details": {"input": 12, "output": 3},
        "model_parameters": {"temperature": 0.0},
    }
    odd = {"input": {"score": float("nan")}, "output": "already text"}
    for build, sample in (
        (create_generation_attributes, fields),
        (create_span_attributes, {k: v for k, v in fields.items() if k in ("input", "output")}),
        (create_span_attributes, odd),
    ):
        ahead = {k: (_json(v) if k in _SERIALIZED else v) for k, v in sample.items()}
        assert build(**ahead) == build(**sample)


def test_the_process_worker_builds_and_exports_spans_outside_the_server(
    kb: KnowledgeBase,
    kb_settings: Callable[..., Settings],
    standin: LangfuseStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tracing.worker: process — nothing of the span building, masking or export may run in
    # this (the server's) process: here it would raise; the trace arrives all the same.
    from rag.observability.langfuse import LangfuseTracer

    def not_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("span work ran in the server process")

    monkeypatch.setattr(LangfuseTracer, "_replay", not_here)
    monkeypatch.setattr(LangfuseTracer, "_mask_export", not_here)
    settings = traced_settings(kb_settings, standin.url, tracing={"worker": "process"})
    tracing = tracing_for(settings)
    tracer = tracing.langfuse
    assert tracer is not None and tracer.process.is_alive()  # type: ignore[attr-defined]
    pipeline = _pipeline(kb, settings, tracing)
    answer = pipeline.run(
        Query(question=f"How long are backups kept? Mail me at {PII_EMAIL}", tenant="default")
    )
    assert answer.trace_id
    spans = _wait_trace(standin, answer.trace_id, tracing)
    assert any(s.name == "query" for s in spans)
    assert tracing.score(answer.trace_id, "user_feedback", 1.0, comment=f"thanks, {PII_NAME}")
    assert standin.wait_for(
        lambda s: any(
            x["name"] == "user_feedback" and x.get("traceId") == answer.trace_id for x in s.scores
        )
    ), standin.scores
    assert PII_EMAIL not in standin.everything() and PII_NAME not in standin.everything()
    assert tracing.flush(5.0)
    started = time.monotonic()
    assert tracing.shutdown(timeout=3.0)
    assert time.monotonic() - started < 4.0
    assert not tracer.process.is_alive()  # type: ignore[attr-defined]
    pipeline.close()


def test_the_process_worker_drops_traces_in_the_server_while_langfuse_fails(
    kb: KnowledgeBase, kb_settings: Callable[..., Settings]
) -> None:
    # The exporter process says in shared memory that Langfuse refuses; the server then
    # forwards nothing (records dropped on arrival, as with the thread worker).
    settings = traced_settings(
        kb_settings, refused_url(), tracing={"worker": "process", "export_timeout_seconds": 1.0}
    )
    tracing = tracing_for(settings)
    tracer: Any = tracing.langfuse
    sent: list[str] = []
    send = tracer._send

    def counted(message: tuple[Any, ...]) -> bool:
        if message[0] == "trace":
            sent.append(message[1].trace_id)
        return bool(send(message))

    tracer._send = counted
    pipeline = _pipeline(kb, settings, tracing)
    question = Query(question="How long are backups kept?", tenant="default")
    try:
        pipeline.run(question)  # its export is refused: the child pauses tracing
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not tracer.paused():
            time.sleep(0.1)
        assert tracer.paused(), "the exporter process's pause reaches the server"
        shared = tracer._pause_state
        tracer._pause_state = lambda: (time.monotonic() + 60, 0.0)  # held for the requests below
        before, unsent = len(sent), tracer.unsent
        answers = [pipeline.run(question) for _ in range(5)]
        assert _drained(tracer)
        assert all(a.answer and a.trace_id for a in answers), "requests are served as ever"
        assert len(sent) == before and tracer.unsent == unsent + 5
        tracer._pause_state = lambda: (0.0, 0.0)
        pipeline.run(question)
        assert _drained(tracer)
        assert len(sent) == before + 1, "forwarded again once Langfuse is not failing"
        tracer._pause_state = shared
    finally:
        pipeline.close()
        tracing.shutdown(timeout=1.0)


def _drained(tracer: Any, timeout: float = 20.0) -> bool:
    """The server's queue to the exporter process is empty (everything sent or dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tracer._queue.unfinished_tasks == 0:
            return True
        time.sleep(0.05)
    return False
