"""Conversation evals (evals/conversations.py): the file format, each turn answered with the
conversation so far, first turns and follow-ups side by side, and the report that shows them.
The runner here is a stand-in that records what it was handed (the pipeline's own answers are
tests/api/test_follow_ups.py's)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from evals.conversations import evaluate_conversations, load_conversations
from evals.datasets import DatasetError
from evals.report import build_report
from evals.report_html import render_html
from rag.core.types import Turn

CONVERSATIONS = [
    {
        "id": "rate-limits",
        "turns": [
            {
                "question": "What is the free tier rate limit?",
                "kind": "first",
                "sources": ["api.html"],
                "answers": ["60 requests per minute"],
            },
            {
                "question": "And the business tier?",
                "kind": "ellipsis",
                "sources": ["api.html"],
                "answers": ["1,200 requests per minute"],
            },
            {"question": "And the enterprise tier?", "kind": "ellipsis", "sources": []},
        ],
    },
    {
        "id": "backups",
        "turns": [
            {
                "question": "How long are backups kept?",
                "sources": ["backup.md"],
                "answers": ["35 days"],
            },
            {
                "question": "Where are they stored?",
                "kind": "pronoun",
                "sources": ["backup.md"],
                "answers": ["eu-west-2"],
            },
        ],
    },
]

ANSWERS = {
    "What is the free tier rate limit?": (
        "The free tier allows 60 requests per minute [1].",
        "api.html",
    ),
    "And the business tier?": (
        "The business tier allows 1,200 requests per minute [1].",
        "api.html",
    ),
    "And the enterprise tier?": ("Enterprise customers ask their account manager [1].", "api.html"),
    "How long are backups kept?": ("Backups are kept for 35 days [1].", "backup.md"),
    "Where are they stored?": (None, None),  # abstains
}


def write(tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_each_turn_gets_the_conversation_so_far_and_both_sides_are_scored(tmp_path: Path) -> None:
    seen: list[tuple[str, tuple[Turn, ...]]] = []

    def run(question: str, history: Sequence[Turn]) -> dict[str, Any]:
        seen.append((question, tuple(history)))
        text, source = ANSWERS[question]
        if text is None:
            return {"answer": "The documents don't say.", "abstained": True, "citations": []}
        return {
            "answer": text,
            "abstained": False,
            "citations": [{"source": source}],
            "standalone_question": f"standalone: {question}" if history else None,
        }

    result = evaluate_conversations(run, load_conversations(write(tmp_path, CONVERSATIONS)))
    # the history holds the earlier questions and the answers given to them, in order
    assert seen[0] == ("What is the free tier rate limit?", ())
    assert [t.role for t in seen[2][1]] == ["user", "assistant", "user", "assistant"]
    assert seen[2][1][3].content == "The business tier allows 1,200 requests per minute [1]."
    assert seen[3][1] == (), "a new conversation starts without history"
    first, follow = result["first_turn"], result["follow_up"]
    assert (first["turns"], follow["turns"]) == (2, 3)
    assert first["answer_contains_gold"] == 1.0 and first["gold_cited"] == 1.0
    assert follow["answer_contains_gold"] == 0.5  # business tier right, "they" abstained
    assert follow["false_abstention_rate_answerable"] == 0.5
    assert follow["abstention_rate_unanswerable"] == 0.0  # the enterprise tier was answered
    assert result["follow_up_gap"] == 0.5
    assert set(result["by_kind"]) == {"first", "ellipsis", "pronoun"}
    assert result["per_turn"][1]["standalone_question"] == "standalone: And the business tier?"
    # the report shows both sides and the follow-ups that went wrong
    report = build_report(
        {"chat": {"kind": "answers", "questions": 0, "conversations": result}}, [], 0.02, "manual"
    )
    assert report["metrics"]["chat.follow_up.answer_contains_gold"] == 0.5
    assert report["metrics"]["chat.first_turn.answer_contains_gold"] == 1.0
    worst = report["suites"]["chat"]["conversations"]["worst_follow_ups"]
    assert [w["id"] for w in worst] == ["rate-limits#3", "backups#2"]
    assert "per_turn" not in report["suites"]["chat"]["conversations"]
    page = render_html(report)
    assert "<h2>Conversations</h2>" in page and "follow-up" in page
    assert "And the enterprise tier?" in page


def test_a_drop_in_follow_ups_is_a_regression() -> None:
    def suite(right: float) -> dict[str, Any]:
        part = {"answer_contains_gold": right, "turns": 4}
        return {"kind": "answers", "conversations": {"first_turn": part, "follow_up": part}}

    old = build_report({"chat": suite(0.9)}, [], 0.02, "manual")
    new = build_report({"chat": suite(0.5)}, [old], 0.02, "manual")
    assert {r["metric"] for r in new["regressions"]} == {
        "chat.first_turn.answer_contains_gold",
        "chat.follow_up.answer_contains_gold",
    }


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"id": "a", "turns": []}, "has no turns"),
        ({"id": "a", "turns": [{"kind": "first"}]}, "needs a 'question'"),
        ({"id": "a", "turns": [{"question": "q", "kind": "chit-chat"}]}, "kind 'chit-chat'"),
        ({"id": "a", "turns": [{"question": "q"}, {"question": "r", "kind": "first"}]}, "'first'"),
        ({"id": "a", "turns": [{"question": "q", "sources": "a.md"}]}, "list of strings"),
    ],
)
def test_a_bad_conversation_file_names_the_line(tmp_path: Path, row: Any, says: str) -> None:
    with pytest.raises(DatasetError, match=says) as err:
        load_conversations(write(tmp_path, [row]))
    assert "conversations.jsonl:1" in str(err.value)
