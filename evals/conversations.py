"""Conversation evals: multi-turn golden sets, each turn answered with the conversation so far.

A dataset folder's ``conversations.jsonl`` holds one conversation a line::

    {"id": "rate-limits", "turns": [
      {"question": "What is the free tier rate limit of the public API?", "kind": "first",
       "sources": ["api-rate-limits.html"], "answers": ["60 requests per minute"]},
      {"question": "And the business tier?", "kind": "ellipsis",
       "sources": ["api-rate-limits.html"], "answers": ["1,200 requests per minute"]}]}

- ``kind`` says what the turn tests: ``first``; a follow-up by ``ellipsis``, ``pronoun`` or an
  ``implicit`` reference; a ``complete`` follow-up that names its own subject; a ``shift`` to
  a new topic (the old turns must not pollute it);
- ``sources``: documents that answer it (paths relative to the docs folder, or corpus ids);
  ``[]`` marks a turn the documents do not answer (an abstention is right);
- ``answers``: strings a right answer contains (SQuAD normalisation, as the answer eval; and
  code-aware, punctuation a word break, beside it).

Each turn is answered through the runner with the earlier questions and the answers the system
itself gave as history, as a chat client sends them. The measures are the answer eval's
(:func:`evals.answers.evaluate_answers`), for first turns and follow-ups side by side, and per
kind; each turn records its ``standalone_question``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.answers import contains_gold, contains_gold_code_aware
from evals.datasets import DatasetError
from evals.retrieval import latency_summary
from rag.core.types import Turn

__all__ = [
    "KINDS",
    "Conversation",
    "ConversationTurn",
    "evaluate_conversations",
    "load_conversations",
    "measures",
]

KINDS = ("first", "ellipsis", "pronoun", "implicit", "complete", "shift")
FOLLOW_UP_KINDS = KINDS[1:]
# (question, history) -> the answer's JSON object
TurnRunner = Callable[[str, Sequence[Turn]], Mapping[str, Any]]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ConversationTurn:
    question: str
    kind: str
    sources: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return bool(self.sources)


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: list[ConversationTurn]


def _strings(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DatasetError(f"{where}: '{key}' must be a list of strings")


def load_conversations(path: Path) -> list[Conversation]:
    """Read ``conversations.jsonl``; raises :class:`DatasetError` naming the line at fault."""
    out: list[Conversation] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not JSON ({exc})") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("turns"), list):
                raise DatasetError(f'{where}: expected {{"id", "turns": [...]}}')
            cid = str(raw.get("id") or lineno)
            if cid in seen:
                raise DatasetError(f"{where}: conversation id {cid!r} is used twice")
            seen.add(cid)
            turns = []
            for i, t in enumerate(raw["turns"]):
                at = f"{where} turn {i + 1}"
                if not isinstance(t, dict) or not str(t.get("question") or "").strip():
                    raise DatasetError(f"{at}: each turn needs a 'question'")
                kind = str(t.get("kind") or ("first" if i == 0 else "complete"))
                if kind not in KINDS:
                    raise DatasetError(f"{at}: kind {kind!r} is none of {', '.join(KINDS)}")
                if (kind == "first") != (i == 0):
                    raise DatasetError(f"{at}: 'first' is the kind of a conversation's first turn")
                turns.append(
                    ConversationTurn(
                        str(t["question"]),
                        kind,
                        _strings(t.get("sources"), at, "sources"),
                        _strings(t.get("answers"), at, "answers"),
                    )
                )
            if not turns:
                raise DatasetError(f"{where}: conversation {cid!r} has no turns")
            out.append(Conversation(cid, turns))
    return out


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 6) if flags else None


def measures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer eval's measures over some turns."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    return {
        "answer_contains_gold": _rate(
            [r["contains_gold"] for r in answerable if r["contains_gold"] is not None]
        ),
        "answer_contains_gold_code_aware": _rate(
            [
                r["contains_gold_code_aware"]
                for r in answerable
                if r["contains_gold_code_aware"] is not None
            ]
        ),
        "gold_cited": _rate([r["gold_cited"] for r in answerable if r["gold_cited"] is not None]),
        "abstention_rate_unanswerable": _rate([r["abstained"] for r in unanswerable]),
        "false_abstention_rate_answerable": _rate([r["abstained"] for r in answerable]),
        "turns": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "latency_ms": latency_summary([r["latency_ms"] for r in rows]),
    }


def evaluate_conversations(
    run: TurnRunner,
    conversations: Sequence[Conversation],
    to_doc: Callable[[str], str] = lambda source: source,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Answer every turn of every conversation in order, and score first turns and follow-ups."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    started = time.perf_counter()
    total = sum(len(c.turns) for c in conversations)
    done = 0
    for conv in conversations:
        history: list[Turn] = []
        for i, turn in enumerate(conv.turns):
            if should_stop is not None and should_stop():
                break
            t0 = time.perf_counter()
            try:
                result = run(turn.question, tuple(history))
            except Exception as exc:  # noqa: BLE001 - one failing turn must not hide the others
                errors.append({"id": f"{conv.id}#{i + 1}", "error": f"{type(exc).__name__}: {exc}"})
                result = {"answer": "", "abstained": True, "citations": []}
            elapsed = (time.perf_counter() - t0) * 1000.0
            answer = str(result.get("answer") or "")
            abstained = bool(result.get("abstained"))
            cited = [to_doc(str(c.get("source", ""))) for c in result.get("citations") or []]
            gold_docs = sorted({to_doc(s) for s in turn.sources})
            rows.append(
                {
                    "id": f"{conv.id}#{i + 1}",
                    "conversation": conv.id,
                    "turn": i + 1,
                    "kind": turn.kind,
                    "question": turn.question,
                    "standalone_question": result.get("standalone_question"),
                    "answerable": turn.answerable,
                    "gold_answers": turn.answers,
                    "gold_docs": gold_docs,
                    "answer": answer[:1000],
                    "abstained": abstained,
                    "contains_gold": contains_gold(answer, turn.answers)
                    if turn.answerable and turn.answers
                    else None,
                    "contains_gold_code_aware": contains_gold_code_aware(answer, turn.answers)
                    if turn.answerable and turn.answers
                    else None,
                    "gold_cited": bool(set(gold_docs) & set(cited)) if turn.answerable else None,
                    "cited": cited,
                    "latency_ms": round(elapsed, 3),
                }
            )
            history += [Turn("user", turn.question), Turn("assistant", answer)]
            done += 1
            if progress:
                progress("turns", done, total)
    first = [r for r in rows if r["kind"] == "first"]
    follow = [r for r in rows if r["kind"] != "first"]
    out: dict[str, Any] = {
        "conversations": len(conversations),
        "first_turn": measures(first),
        "follow_up": measures(follow),
        "by_kind": {k: measures(rs) for k in KINDS if (rs := [r for r in rows if r["kind"] == k])},
        "latency_ms": latency_summary([r["latency_ms"] for r in rows]),
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 3),
        "per_turn": rows,
    }
    a, b = out["first_turn"]["answer_contains_gold"], out["follow_up"]["answer_contains_gold"]
    out["follow_up_gap"] = round(a - b, 6) if a is not None and b is not None else None
    return out
