"""``rag pii scan FILE`` / ``rag pii scan --text "..."``: what the PII policy finds, for tuning it.

FILE holds JSON lines ``{"id": ..., "text": ...}`` (``-`` reads standard input); each line out
on stdout is ``{"id": ..., "entities": [{"type", "start", "end", "score"}]}`` with character
offsets into that text, found with the configured ``pii`` section (entities, thresholds,
allow list, context words, patterns) exactly as every sink applies it. ``--text`` scans one
text and prints one line with ``"id": null``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.core import fail, get_settings
from rag.core.errors import RagError

__all__ = ["pii_scan"]


def _lines(path: str) -> Any:
    if path == "-":
        yield from enumerate(sys.stdin, 1)
        return
    p = Path(path)
    if not p.is_file():
        fail(f"{path}: no such file (give a JSONL file of {{'id', 'text'}} lines, or --text)")
    with p.open(encoding="utf-8") as f:
        yield from enumerate(f, 1)


def pii_scan(
    file: Annotated[
        str | None, typer.Argument(help='JSONL file of {"id", "text"} lines; - for stdin')
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Scan this one text")] = None,
) -> None:
    """Detect PII with the configured policy: JSONL {"id", "entities": [...]} on stdout."""
    if (file is None) == (text is None):
        fail('give a JSONL FILE or --text "...", not both', code=2)
    settings = get_settings()
    from rag.guards.pii import Detector, detector_for

    pii = settings.pii.model_copy(update={"enabled": True})
    detector: Detector = detector_for(pii)
    try:
        detector.warm_up()
    except RagError as exc:
        fail(str(exc), code=2)
    out = sys.stdout

    def emit(item_id: Any, value: str) -> None:
        entities = [s.as_dict() for s in detector.detect(value)]
        out.write(json.dumps({"id": item_id, "entities": entities}, ensure_ascii=False) + "\n")

    if text is not None:
        emit(None, text)
        return
    assert file is not None
    for n, line in _lines(file):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            value = item["text"]
            if not isinstance(value, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            fail(f'{file}:{n}: expected a JSON object with "id" and a string "text" ({exc})')
        emit(item.get("id"), value)
        out.flush()
