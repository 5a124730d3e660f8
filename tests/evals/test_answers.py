"""The answer eval's right-answer match (evals/answers.py): SQuAD's normalisation, and the
code-aware match beside it, where punctuation is a word break so that a code name inside a call
or a dotted path ("csv.DictReader(f)") still contains the gold name ("DictReader"). The runner
here is a stand-in returning fixed answers: what is tested is the scoring, not the pipeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from app.cli.eval import _print_answers, _print_conversations
from evals.answers import (
    contains_gold,
    contains_gold_code_aware,
    evaluate_answers,
    normalize_code_aware,
)
from evals.conversations import evaluate_conversations, load_conversations
from evals.datasets import AnswerKey
from evals.report import build_report
from evals.report_html import render_html
from rag.core.types import Turn

CODE_ANSWER = "Use csv.DictReader(f) to read each row into a dict [1]."


def test_a_code_name_inside_a_call_is_right_code_aware_but_not_squad() -> None:
    assert normalize_code_aware("csv.DictReader(f)") == "csv dictreader f"
    assert contains_gold_code_aware(CODE_ANSWER, ["DictReader"])
    assert contains_gold_code_aware("Call json.loads(s).", ["json.loads()"])
    # SQuAD's figure keeps its meaning: the glued "csvdictreaderf" holds no "dictreader"
    assert not contains_gold(CODE_ANSWER, ["DictReader"])
    # still whole words: "DictReader" is not in "DictReaders", "re.sub" not in "re.subn"
    assert not contains_gold_code_aware("csv.DictReaders(f)", ["DictReader"])
    assert not contains_gold_code_aware("Call re.subn().", ["re.sub"])
    assert contains_gold_code_aware("It allows 1,200 requests.", ["1,200"])


def _answer(text: str) -> dict[str, Any]:
    return {"answer": text, "abstained": False, "citations": [{"source": "csv.html"}]}


def test_the_answer_eval_reports_both_matches_side_by_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = {
        "reader": CODE_ANSWER,
        "writer": "The DictWriter class writes dicts [1].",
        "miss": "The csv module reads CSV files [1].",
    }
    result = evaluate_answers(
        lambda q: _answer(answers[q]),
        {q: q for q in answers},
        {
            "reader": AnswerKey(True, ["DictReader"]),
            "writer": AnswerKey(True, ["DictWriter"]),
            "miss": AnswerKey(True, ["DictReader"]),
        },
        {q: {"csv.html": 1} for q in answers},
    )
    assert result["answer_contains_gold"] == pytest.approx(1 / 3, abs=1e-5)
    assert result["answer_contains_gold_code_aware"] == pytest.approx(2 / 3, abs=1e-5)
    by_id = {q["id"]: q for q in result["per_query"]}
    assert (by_id["reader"]["contains_gold"], by_id["reader"]["contains_gold_code_aware"]) == (
        False,
        True,
    )
    _print_answers("pydocs", result)
    printed = capsys.readouterr().out
    assert "answer_contains_gold               0.3333" in printed
    assert "answer_contains_gold_code_aware    0.6667" in printed
    report = build_report({"pydocs": {**result, "kind": "answers"}}, [], 0.02, "manual")
    assert report["metrics"]["pydocs.answer_contains_gold_code_aware"] == pytest.approx(
        2 / 3, abs=1e-5
    )
    assert "pydocs.answer_contains_gold_code_aware" in render_html(report)


def test_conversations_report_both_matches_for_first_turns_and_follow_ups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    talk = {
        "id": "csv",
        "turns": [
            {
                "question": "how do i read a csv file as dicts",
                "sources": ["csv.html"],
                "answers": ["DictReader"],
            },
            {
                "question": "and write one?",
                "kind": "ellipsis",
                "sources": ["csv.html"],
                "answers": ["DictWriter"],
            },
        ],
    }
    path = tmp_path / "conversations.jsonl"
    path.write_text(json.dumps(talk) + "\n", encoding="utf-8")
    replies = {
        "how do i read a csv file as dicts": CODE_ANSWER,
        "and write one?": "Use csv.DictWriter(f, fieldnames) [1].",
    }

    def run(question: str, history: Sequence[Turn]) -> dict[str, Any]:
        return _answer(replies[question])

    result = evaluate_conversations(run, load_conversations(path))
    for part in ("first_turn", "follow_up"):
        assert result[part]["answer_contains_gold"] == 0.0
        assert result[part]["answer_contains_gold_code_aware"] == 1.0
    _print_conversations("pyconv", result)
    printed = capsys.readouterr().out
    assert "answer_contains_gold_code_aware        1.0000     1.0000" in printed
    report = build_report(
        {"pyconv": {"kind": "answers", "questions": 0, "conversations": result}}, [], 0.02, "m"
    )
    assert report["metrics"]["pyconv.follow_up.answer_contains_gold_code_aware"] == 1.0
    assert report["metrics"]["pyconv.first_turn.answer_contains_gold"] == 0.0
    assert "right, code-aware" in render_html(report)
