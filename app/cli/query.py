"""``rag query "QUESTION"``: an answer over the ingested folders, with verified citations.

``--json`` prints the pipeline's result object; ``--stream`` prints tokens as they come
(with ``--json``: one JSON event per line, ``{"event": "token", "data": ...}``, the last one
``done``); ``--filter key=value`` (repeatable; a key given twice matches either value) narrows
retrieval by payload fields such as ``source``; ``--prompt name@version`` picks a prompt
version; ``--context-only`` skips generation and prints the packed context; ``--user`` and
``--session`` feed the prompt A/B split; ``--temperature`` and ``--max-tokens`` override the
prompt's generation settings.

While ``rag watch``/``rag serve`` holds the data dir, its pipeline answers over the control API
(``app.control``), streamed when ``--stream`` asks; otherwise a pipeline in this process does.
Either way the flags become one :class:`~rag.core.types.Query` (:func:`build_query`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Protocol

import typer

from app.cli.core import (
    daemon_client,
    fail,
    get_settings,
    open_index,
    print_json,
    stdout_to_a_pipe,
)
from rag.core.errors import RagError
from rag.core.types import Answer, DoneEvent, Query, ResetEvent, StreamEvent, TokenEvent

__all__ = ["build_query", "parse_filters", "query"]


def _value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.isdigit() or (raw.startswith("-") and raw[1:].isdigit()):
        return int(raw)
    return raw


def parse_filters(items: list[str]) -> dict[str, Any]:
    """``["source=a.md", "source=b.md", "page=2"]`` → ``{"source": ["a.md", "b.md"], "page": 2}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"--filter {item!r}: write it as key=value, e.g. --filter source=guide.md"
            )
        value = _value(raw.strip())
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def _print_sources(result: dict[str, Any]) -> None:
    citations = result.get("citations") or []
    if not citations:
        return
    typer.echo("\nSources:")
    for c in citations:
        where = " > ".join(c.get("section") or [])
        page = f" p. {c['page']}" if c.get("page") is not None else ""
        title = f" — {c['title']}" if c.get("title") else ""
        check = "verified" if c.get("verified") else "context"
        typer.echo(
            f"  [{c['n']}] {c['source']}{title}{' > ' + where if where else ''}{page}  ({check}, score {c['score']:.3f})"
        )


def _print_notes(result: dict[str, Any]) -> None:
    if result.get("degraded"):
        failed = ", ".join(f["generator"] for f in result.get("fallbacks") or [])
        typer.echo(
            f"note: answered by the fallback generator '{result['generator']}' ({failed} failed)",
            err=True,
        )
    withheld = int(result.get("withheld") or 0)
    if withheld:
        # Their text is never shown (generation.verify.unsupported: drop): only how many.
        typer.echo(
            f"note: {withheld} sentence(s) of the model's answer left out: no passage supports them",
            err=True,
        )
    if result.get("trace_id"):
        typer.echo(f"trace: {result['trace_id']}", err=True)


def build_query(
    question: str,
    *,
    filters: list[str] | None = None,
    prompt: str | None = None,
    context_only: bool = False,
    user: str | None = None,
    session: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Query:
    """``rag query``'s flags → the :class:`Query` both paths answer (the running daemon's
    pipeline over the control API, or one in this process): every flag reaches the pipeline
    the same way. Raises ``ValueError`` for a malformed ``--filter``."""
    return Query(
        question=question,
        filters=parse_filters(filters or []) or None,
        prompt=prompt,
        generate=not context_only,
        user=user,
        session=session,
        temperature=temperature,
        max_tokens=max_tokens,
    )


class Answerer(Protocol):
    """What answers ``rag query``: the daemon's control API (``app.control.DaemonClient``) or
    a ``QueryPipeline`` in this process."""

    def run(self, query: Query) -> Answer: ...

    def stream(self, query: Query) -> Iterator[StreamEvent]: ...


def query(
    question: Annotated[str, typer.Argument(help="The question")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result object as JSON")
    ] = False,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print tokens as they are generated")
    ] = False,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="key=value on chunk metadata (repeatable), e.g. source=guide.md"
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", help="Prompt version, NAME@VERSION (default: pinned/A-B)"),
    ] = None,
    context_only: Annotated[
        bool, typer.Option("--context-only", help="Retrieve, rerank and pack only; no generation")
    ] = False,
    user: Annotated[
        str | None, typer.Option("--user", help="User id for the prompt A/B split")
    ] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", help="Session id (the A/B split keeps a session's prompt)"),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            help="Sampling temperature (default: the prompt's, else config)",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens", min=1, help="Answer token limit (default: the prompt's, else config)"
        ),
    ] = None,
) -> None:
    """Answer QUESTION from the index, every citation checked against the passage it cites."""
    try:
        query = build_query(
            question,
            filters=filter_,
            prompt=prompt,
            context_only=context_only,
            user=user,
            session=session,
            temperature=temperature,
            max_tokens=max_tokens,
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    settings = get_settings()
    client = daemon_client()
    if client is not None:
        # A running `rag watch`/`rag serve` holds the store: its pipeline answers (streamed
        # when asked), with the query exactly as built here.
        from app.control import DaemonError

        try:
            _answer(client, query, as_json=as_json, stream=stream)
        except DaemonError as exc:
            fail(str(exc))
        finally:
            client.close()
        return
    from rag.observability import tracing_for
    from rag.query.pipeline import QueryPipeline

    index = open_index(create=False)
    tracing = tracing_for(settings)  # no keys: no tracer, nothing loaded
    pipeline = QueryPipeline(index, settings, tracer=tracing.tracer)
    try:
        # Models load before the clock starts: timings_ms then shows the query, not the start-up.
        pipeline.warm_up()
    except Exception as exc:  # noqa: BLE001 - any start-up failure becomes one clear message
        pipeline.close()
        index.close()
        fail(f"cannot load the query pipeline: {exc}")
    try:
        _answer(pipeline, query, as_json=as_json, stream=stream)
    except RagError as exc:  # every error the library raises on purpose says what to do
        fail(str(exc))
    finally:
        pipeline.close()
        index.close()
        tracing.shutdown()  # this process's one trace leaves now (bounded wait)


def _answer(answerer: Answerer, query: Query, *, as_json: bool, stream: bool) -> None:
    """Ask ``answerer`` and print what it says: one path for the daemon and this process."""
    with stdout_to_a_pipe():
        if not stream:
            result = answerer.run(query).as_json()
            if as_json:
                print_json(result)
            else:
                _print_result(result, not query.generate)
            return
        _print_stream(answerer.stream(query), as_json)


def _print_stream(events: Iterator[StreamEvent], as_json: bool) -> None:
    """Each event as it arrives: its JSON line with ``--json``, else the answer's text."""
    result: dict[str, Any] = {}
    streamed = ""
    for event in events:
        if as_json:
            line = {"event": event.kind, "data": event.data()}
            sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
        elif isinstance(event, TokenEvent):
            streamed += event.text
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ResetEvent):
            typer.echo(
                f"\n[{event.failed} failed: {event.error}; {event.next} answers instead]",
                err=True,
            )
            streamed = ""
        if isinstance(event, DoneEvent):
            result = event.data()
    if as_json:
        return
    # What was streamed is the verified answer (text is released once verified).
    sys.stdout.write("\n" if streamed else result.get("answer", "") + "\n")
    _print_sources(result)
    _print_notes(result)


def _print_result(result: dict[str, Any], context_only: bool) -> None:
    if context_only:
        for c in result["citations"]:
            typer.echo(f"[{c['n']}] {c['source']} (score {c['score']:.3f})\n{c['quote']}\n")
        return
    typer.echo(result["answer"])
    _print_sources(result)
    _print_notes(result)
