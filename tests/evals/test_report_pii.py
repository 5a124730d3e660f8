"""Eval reports (report.json, report.html) carry no PII: questions, answers and errors scrubbed."""

from __future__ import annotations

from typing import Any

from evals.report import save_report

EMAIL = "john.miller@gmail.com"
PHONE = "+44 20 7946 0958"


def test_saved_reports_are_scrubbed(tmp_settings: Any) -> None:
    settings = tmp_settings()
    suites = {
        "golden-answers": {
            "kind": "answers",
            "questions": 1,
            "per_query": [
                {
                    "id": "q-7",
                    "question": f"Who answers {EMAIL}?",
                    "answerable": True,
                    "answer": f"Call {PHONE} [1].",
                    "abstained": False,
                    "gold_answers": [EMAIL],
                    "contains_gold": False,
                    "gold_cited": False,
                    "latency_ms": 3.0,
                }
            ],
        }
    }
    folder, report = save_report(settings, suites, "manual", f"asked by {EMAIL}", {}, [])
    written = (folder / "report.json").read_text() + (folder / "report.html").read_text()
    assert EMAIL not in written and PHONE not in written
    worst = report["suites"]["golden-answers"]["worst"][0]
    assert worst["id"] == "q-7" and worst["answer"] == "Call <PHONE_NUMBER> [1]."
    assert "<EMAIL_ADDRESS>" in written


def test_reports_as_written_with_pii_disabled(tmp_settings: Any) -> None:
    settings = tmp_settings(pii={"enabled": False})
    folder, _ = save_report(settings, {}, "manual", f"asked by {EMAIL}", {}, [])
    assert EMAIL in (folder / "report.json").read_text(), "off means off: the test above can fail"
