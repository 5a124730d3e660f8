"""``rag feedback``: what users said about answers (``POST /v1/feedback``, the chat page's
thumbs), and thumbs-down answers turned into golden-set entries.

- ``rag feedback [--tenant T] [--down] [--json]``: the feedback, newest last;
- ``rag feedback --candidates``: thumbs-down answers not yet in a golden set, as golden-set
  JSON lines (question, the sources it cited, no expected answers yet) to review;
- ``rag feedback confirm ID [--golden FILE] [--source S]... [--answer A]... [--question Q]``:
  append candidate ID to the golden set (default ``evals.suite``), so the eval suite grows
  from production failures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.core import fail, get_settings, print_json
from rag.core.errors import RagError

__all__ = ["feedback_confirm", "feedback_list"]


def _store() -> Any:
    from rag.observability.feedback import FeedbackStore

    return FeedbackStore(get_settings().resolved_data_dir())


def feedback_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's")] = None,
    down: Annotated[bool, typer.Option("--down", help="Only thumbs-down")] = False,
    candidates: Annotated[
        bool,
        typer.Option(
            "--candidates",
            help="Thumbs-down answers not yet in a golden set, as golden-set JSON lines",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List user feedback on answers (or, with --candidates, proposed golden-set entries)."""
    if ctx.invoked_subcommand is not None:
        return
    from rag.observability.feedback import golden_candidate

    store = _store()
    if candidates:
        rows = [r for r in store.candidates() if tenant is None or r.get("tenant") == tenant]
        if not rows:
            typer.echo(
                "no candidates: thumbs-down answers with their question appear here", err=True
            )
        for r in rows:
            line = {**golden_candidate(r), "_feedback": r["id"]} if not as_json else r
            typer.echo(json.dumps(line, ensure_ascii=False))
        if rows and not as_json:
            typer.echo(
                "confirm one into the golden set: rag feedback confirm ID "
                "[--source PATH]... [--answer TEXT]...",
                err=True,
            )
        return
    records = store.records(tenant)
    if down:
        records = [r for r in records if r.get("value") == 0]
    if as_json:
        print_json(records)
        return
    if not records:
        typer.echo("no feedback yet (POST /v1/feedback, or the thumbs on the chat page)")
    confirmed = store.confirmed()
    for r in records:
        thumb = "up  " if r.get("value") == 1 else "down"
        mark = " [in golden set]" if r["id"] in confirmed else ""
        question = (r.get("question") or "").replace("\n", " ")[:80]
        typer.echo(
            f"{r['id']}  {r['created_at']}  {r.get('tenant', ''):<12} {thumb}  "
            f"trace {r['trace_id']}{mark}"
        )
        if question:
            typer.echo(f"    question: {question}")
        if r.get("comment"):
            typer.echo(f"    comment:  {r['comment'][:200]}")


def feedback_confirm(
    feedback_id: Annotated[str, typer.Argument(help="The id from `rag feedback --candidates`")],
    golden: Annotated[
        Path | None,
        typer.Option(
            "--golden", help="The golden set (JSON lines) to append to; default evals.suite"
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", help="A document that answers it (repeatable; default: the cited ones)"
        ),
    ] = None,
    answer: Annotated[
        list[str] | None,
        typer.Option("--answer", help="Text a correct answer contains (repeatable)"),
    ] = None,
    question: Annotated[
        str | None, typer.Option("--question", help="The question, reworded or given")
    ] = None,
) -> None:
    """Put a thumbs-down answer's question into the golden set, as a person confirmed it."""
    settings = get_settings()
    target = golden or (Path(settings.evals.suite) if settings.evals.suite else None)
    if target is None:
        fail("no golden set to add to: give --golden FILE.jsonl, or set evals.suite", code=2)
    assert target is not None
    if target.suffix != ".jsonl":
        fail(f"{target}: confirm appends JSON lines; give a .jsonl golden set", code=2)
    try:
        entry = _store().confirm(
            feedback_id, target, sources=source, answers=answer, question=question
        )
    except RagError as exc:  # FeedbackError: unknown, already confirmed, no question
        fail(str(exc))
    typer.echo(json.dumps(entry, ensure_ascii=False))
    typer.echo(f"added to {target}: `rag eval` asks it from now on", err=True)
