"""User feedback on answers: a local record, and thumbs-down answers as golden-set candidates.

``POST /v1/feedback`` (api/routes_feedback.py) and ``rag feedback`` use this. Each feedback is
one JSON line in ``<data_dir>/feedback/feedback.jsonl`` (0600, appended under a lock)::

    {"id": "fb_…", "trace_id": "…", "tenant": "acme", "value": 0, "comment": "<scrubbed>",
     "created_at": "2026-…Z", "question": "<scrubbed>", "answer": "<scrubbed>",
     "sources": ["policies/backup-policy.md"], "abstained": false}

``question``/``answer``/``sources`` come from :class:`RecentTraces`, the last answers this
process traced (in memory only, bounded): feedback on an older trace keeps its score and
comment, and the question is in Langfuse. A thumbs-down with its question is a *candidate*
golden entry; ``rag feedback confirm ID`` appends it (with the sources and expected answers a
person gives) to the golden set, and records the confirmation in ``confirmed.jsonl``.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.core.datadir import folder_lock
from rag.core.errors import FeedbackConflictError, FeedbackError

__all__ = ["FEEDBACK_DIR", "FeedbackStore", "RecentTraces", "golden_candidate"]

FEEDBACK_DIR = "feedback"
FEEDBACK_FILE = "feedback.jsonl"
CONFIRMED_FILE = "confirmed.jsonl"


class RecentTraces:
    """trace id → what the answer was (tenant, question, answer, sources), last ``size`` only."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, trace_id: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._items[trace_id] = record
            self._items.move_to_end(trace_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, trace_id: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(trace_id)
            return dict(item) if item is not None else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FeedbackStore:
    def __init__(self, data_dir: Path):
        self.folder = data_dir / FEEDBACK_DIR
        self.path = self.folder / FEEDBACK_FILE
        self.confirmed_path = self.folder / CONFIRMED_FILE
        self._lock = threading.Lock()

    def _locked(self) -> AbstractContextManager[None]:
        return folder_lock(self.folder, self._lock)

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def add(
        self,
        trace_id: str,
        tenant: str,
        value: int,
        comment: str | None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one feedback (``comment`` and ``context`` already scrubbed); returns it."""
        record: dict[str, Any] = {
            "id": "fb_" + secrets.token_hex(6),
            "trace_id": trace_id,
            "tenant": tenant,
            "value": int(value),
            "comment": comment,
            "created_at": _now(),
        }
        for key in ("question", "answer", "sources", "abstained"):
            if context and key in context:
                record[key] = context[key]
        with self._locked():
            self._append(self.path, record)
        return record

    def records(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every feedback, oldest first (one tenant's with ``tenant``)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line after a crash
                if tenant is None or rec.get("tenant") == tenant:
                    out.append(rec)
        return out

    def confirmed(self) -> dict[str, dict[str, Any]]:
        if not self.confirmed_path.exists():
            return {}
        out = {}
        for line in self.confirmed_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["feedback_id"]] = rec
        return out

    def candidates(self) -> list[dict[str, Any]]:
        """Thumbs-down feedback with its question, not yet confirmed into a golden set."""
        done = self.confirmed()
        return [
            r
            for r in self.records()
            if r.get("value") == 0 and r.get("question") and r["id"] not in done
        ]

    def get(self, feedback_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records() if r["id"] == feedback_id), None)

    def confirm(
        self,
        feedback_id: str,
        golden: Path,
        sources: list[str] | None = None,
        answers: list[str] | None = None,
        question: str | None = None,
    ) -> dict[str, Any]:
        """Append the candidate to the golden set ``golden`` (JSON lines); returns the entry."""
        record = self.get(feedback_id)
        if record is None:
            raise FeedbackError(f"no feedback {feedback_id} (`rag feedback` lists them)")
        if feedback_id in self.confirmed():
            raise FeedbackConflictError(f"feedback {feedback_id} is already in a golden set")
        entry = golden_candidate(record)
        if question:
            entry["question"] = question
        if not entry.get("question"):
            raise FeedbackConflictError(
                f"feedback {feedback_id} has no question recorded: give it with --question"
            )
        if sources is not None:
            entry["sources"] = sources
        if answers is not None:
            entry["answers"] = answers
        golden.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            existing = golden.read_text(encoding="utf-8") if golden.exists() else ""
            with open(golden, "a", encoding="utf-8") as f:
                if existing and not existing.endswith("\n"):
                    f.write("\n")
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._append(
                self.confirmed_path,
                {"feedback_id": feedback_id, "golden": str(golden), "at": _now(), "entry": entry},
            )
        return entry


def golden_candidate(record: dict[str, Any]) -> dict[str, Any]:
    """The golden-set line a thumbs-down proposes: its question, the sources it cited (a
    person corrects them), no expected answers yet."""
    return {
        "id": f"feedback-{record['id'].removeprefix('fb_')}",
        "question": record.get("question") or "",
        "sources": list(record.get("sources") or []),
        "answers": [],
    }
