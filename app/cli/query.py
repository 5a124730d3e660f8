"""``rag query "QUESTION"``: an answer over the ingested folders, with verified citations.

``--json`` prints the pipeline's result object; ``--stream`` prints tokens as they come
(with ``--json``: one JSON event per line, ``{"event": "token", "data": ...}``, the last one
``done``); ``--filter key=value`` (repeatable; a key given twice matches either value) narrows
retrieval by payload fields such as ``source``; ``--prompt name@version`` picks a prompt
version; ``--context-only`` skips generation and prints the packed context.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from app.cli.core import daemon_client, fail, get_settings, open_index, print_json
from rag.core.errors import RagError
from rag.core.types import DoneEvent, Query, ResetEvent, TokenEvent

__all__ = ["parse_filters", "query"]


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
    for sentence in result.get("unsupported") or []:
        typer.echo(f"note: not supported by the documents: {sentence!r}", err=True)
    if result.get("trace_id"):
        typer.echo(f"trace: {result['trace_id']}", err=True)


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
) -> None:
    """Answer QUESTION from the index, every citation checked against the passage it cites."""
    from rag.query.pipeline import QueryPipeline

    try:
        filters = parse_filters(filter_ or [])
    except ValueError as exc:
        fail(str(exc), code=2)
    settings = get_settings()
    query = Query(
        question=question,
        filters=filters or None,
        prompt=prompt,
        generate=not context_only,
        user=user,
    )
    client = daemon_client()
    if client is not None:
        # A running `rag watch`/`rag serve` holds the store: it answers (not streamed).
        try:
            result = client.query(
                {
                    "question": query.question,
                    "filters": query.filters,
                    "prompt": query.prompt,
                    "generate": query.generate,
                    "user": query.user,
                }
            )
        except RuntimeError as exc:
            fail(str(exc))
        finally:
            client.close()
        if as_json:
            if stream:  # the same event lines a streamed answer ends with
                for kind in ("citations", "done"):
                    payload = result["citations"] if kind == "citations" else result
                    sys.stdout.write(
                        json.dumps(
                            {"event": kind, "data": payload}, ensure_ascii=False, default=str
                        )
                        + "\n"
                    )
                return
            print_json(result)
            return
        _print_result(result, context_only)
        return
    from rag.observability import tracing_for

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
        if not stream:
            result = pipeline.run(query).as_json()
        else:
            result = {}
            streamed = ""
            for event in pipeline.stream(query):
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
            return
    except RagError as exc:  # every error the library raises on purpose says what to do
        fail(str(exc))
    finally:
        pipeline.close()
        index.close()
        tracing.shutdown()  # this process's one trace leaves now (bounded wait)
    if as_json:
        print_json(result)
        return
    _print_result(result, context_only)


def _print_result(result: dict[str, Any], context_only: bool) -> None:
    if context_only:
        for c in result["citations"]:
            typer.echo(f"[{c['n']}] {c['source']} (score {c['score']:.3f})\n{c['quote']}\n")
        return
    typer.echo(result["answer"])
    _print_sources(result)
    _print_notes(result)
