"""A time budget for the work on one file, checked cooperatively.

The ingestor runs each file's parse, transforms, chunking and scoring inside
``with work_budget(seconds):``; the loops of that work (parsers' per-element and per-page
loops, the chunker, the injection and PII scoring of each chunk, the detector's windows) call
:func:`check_budget`, which raises :class:`~rag.core.errors.WorkBudgetExceeded` once the
budget is spent. Outside a budget ``check_budget`` does nothing, so the same code serves
queries unchanged.

Why cooperative and not a subprocess with a timeout: a thread cannot be killed, and a worker
process per file would have to re-create what the ingest runs in-process (parsers and
transforms registered at run time, the tokenizer, Presidio) or pay for a start per file. The
checks bound every loop; what runs between two checks is linear in the file's size (the
parsers' inputs are made linear first: ``rag.core.markup``, the unpacked-size limit of zip
formats), so one file overruns its budget by at most one such step. A third-party parser
whose own code is slow is bounded only where it calls ``check_budget``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from rag.core.errors import WorkBudgetExceeded

__all__ = ["DEFAULT_UNPACKED_BYTES", "WorkBudget", "check_budget", "unpack_limit", "work_budget"]

# What a compressed format may unpack to when no budget says (ingestion.max_unpacked_mb's default).
DEFAULT_UNPACKED_BYTES = 50_000_000


@dataclass
class WorkBudget:
    seconds: float
    deadline: float
    setting: str
    # What a zip-based file (all members) or one compressed PDF stream may unpack to.
    max_unpacked_bytes: int = DEFAULT_UNPACKED_BYTES

    def exceeded(self) -> WorkBudgetExceeded:
        return WorkBudgetExceeded(
            f"parsing and scoring this file took longer than {self.seconds:.0f} s "
            f"({self.setting}): it is not retried until it changes or the limit is raised"
        )


_current: ContextVar[WorkBudget | None] = ContextVar("rag_work_budget", default=None)


@contextmanager
def work_budget(
    seconds: float,
    setting: str = "ingestion.parse_timeout_s",
    max_unpacked_bytes: int = DEFAULT_UNPACKED_BYTES,
) -> Iterator[WorkBudget]:
    """Give the work inside the block ``seconds``; :func:`check_budget` raises after that.
    ``max_unpacked_bytes``: what compressed input may unpack to (:func:`unpack_limit`)."""
    budget = WorkBudget(seconds, time.monotonic() + seconds, setting, max_unpacked_bytes)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def check_budget() -> None:
    """Raise ``WorkBudgetExceeded`` when the current budget is spent (no budget: nothing)."""
    budget = _current.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise budget.exceeded()


def unpack_limit() -> int:
    """Bytes a compressed input (a .docx's members together, one PDF stream) may unpack to."""
    budget = _current.get()
    return budget.max_unpacked_bytes if budget is not None else DEFAULT_UNPACKED_BYTES
