"""A context passage for tests that hand a generator or the verifier text directly."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rag.contracts import Passage


def passage(text: str, n: int = 1, **fields: Any) -> Passage:
    """Passage ``n`` holding ``text`` whole (one chunk of one document); ``fields`` override."""
    made = Passage(
        chunk_ids=[f"c{n}"],
        doc_id=f"d{n}",
        source=f"doc{n}.md",
        title=None,
        section=[],
        page=None,
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        rank=n - 1,
        n=n,
    )
    return replace(made, **fields)
