"""Reports: deltas against earlier reports, regressions, storage, and the HTML page's content."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from evals.report import build_report, latest_report, list_reports, summary, write_report
from evals.report_html import render_html


def retrieval_result(
    ndcg: float, recall10: float, p50: float = 12.0, content_hash: str = "h1"
) -> dict[str, Any]:
    per_query = [
        {
            "id": f"q{i}",
            "query": f"question {i} <b>",
            "ranked": [f"doc{i}.md", "other.md"],
            "scores": [0.9, 0.5],
            "relevant": [f"doc{i}.md" if i % 2 else "missing.md"],
            "first_relevant_rank": 1 if i % 2 else None,
            "ndcg@10": 1.0 if i % 2 else 0.0,
            "recall@10": 1.0 if i % 2 else 0.0,
            "latency_ms": 10.0 + i,
        }
        for i in range(6)
    ]
    return {
        "kind": "retrieval",
        "ndcg@10": ndcg,
        "recall@1": recall10 / 2,
        "recall@5": recall10,
        "recall@10": recall10,
        "recall@100": recall10,
        "mrr@10": ndcg,
        "queries": 6,
        "latency_ms": {"p50": p50, "p95": p50 * 2, "mean": p50, "max": p50 * 3},
        "recall_curve": {"1": recall10 / 2, "5": recall10, "10": recall10},
        "config": {"mode": "hybrid", "top_k": 10},
        "dataset": {"content_hash": content_hash},
        "per_query": per_query,
    }


def answers_result(false_abstention: float) -> dict[str, Any]:
    return {
        "kind": "answers",
        "answer_contains_gold": 0.7,
        "gold_cited": 0.8,
        "citation_precision": 0.9,
        "abstention_rate_unanswerable": 1.0,
        "false_abstention_rate_answerable": false_abstention,
        "questions": 4,
        "latency_ms": {"p50": 900.0, "p95": 1500.0},
        "tokens_per_question": {"total": 420.0},
        "per_query": [
            {
                "id": "a1",
                "question": "Q?",
                "answerable": True,
                "answer": "",
                "abstained": True,
                "gold_answers": ["x"],
                "gold_docs": ["d.md"],
                "cited": [],
                "verified": [],
                "contains_gold": False,
                "gold_cited": False,
                "latency_ms": 900.0,
            },
        ],
    }


T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_first_report_has_no_deltas() -> None:
    report = build_report({"golden": retrieval_result(0.8, 0.9)}, [], 0.02, "sync", now=T0)
    assert report["id"] == "20260101T120000.000000Z"
    assert report["metrics"]["golden.ndcg@10"] == 0.8
    assert "golden.recall@100" not in report["metrics"]  # deeper than the top 10 ranked
    assert report["deltas"] == {} and report["regressions"] == [] and report["previous"] is None
    assert (
        len(report["suites"]["golden"]["worst"]) == 3
    )  # the three misses; perfect queries are left out
    assert report["suites"]["golden"]["worst"][0]["first_relevant_rank"] is None  # worst first
    assert "per_query" not in report["suites"]["golden"]


def test_regressions_use_threshold_and_direction() -> None:
    before = build_report(
        {"golden": retrieval_result(0.80, 0.90, p50=10.0), "answers": answers_result(0.10)},
        [],
        0.02,
        "sync",
        now=T0,
    )
    after = build_report(
        {"golden": retrieval_result(0.75, 0.89, p50=50.0), "answers": answers_result(0.20)},
        [before],
        0.02,
        "reindex",
        now=T0 + dt.timedelta(hours=1),
    )
    assert after["previous"] == before["id"]
    assert after["deltas"]["golden.ndcg@10"] == pytest.approx(-0.05)
    assert after["deltas"]["golden.latency_ms.p50"] == pytest.approx(40.0)
    flagged = {r["metric"] for r in after["regressions"]}
    # ndcg fell 0.05 > 0.02; recall@10 fell 0.01 (within threshold); latency is never judged;
    # a *rise* in false abstentions is a regression (lower is better).
    assert flagged == {
        "golden.ndcg@10",
        "golden.mrr@10",
        "answers.false_abstention_rate_answerable",
    }
    assert "golden.recall@10" not in flagged and "golden.latency_ms.p50" not in flagged
    s = summary(after, Path("/x"))
    assert s["ok"] is False and len(s["regressions"]) == 3 and s["report"] == "/x/report.html"
    assert "golden.latency_ms.p50" not in s["metrics"]


def test_changed_question_set_is_compared_not_judged() -> None:
    before = build_report(
        {"golden": retrieval_result(0.9, 0.9, content_hash="old")}, [], 0.02, "sync", now=T0
    )
    after = build_report(
        {"golden": retrieval_result(0.5, 0.5, content_hash="new")}, [before], 0.02, "sync"
    )
    assert after["deltas"]["golden.ndcg@10"] == pytest.approx(-0.4)
    assert after["regressions"] == []
    assert any("other questions" in n for n in after["notes"])


def test_metric_missing_from_latest_compares_with_older_report() -> None:
    golden = build_report({"golden": retrieval_result(0.9, 0.9)}, [], 0.02, "sync", now=T0)
    other = build_report(
        {"scifact": retrieval_result(0.6, 0.7)},
        [golden],
        0.02,
        "manual",
        now=T0 + dt.timedelta(minutes=1),
    )
    again = build_report({"golden": retrieval_result(0.8, 0.9)}, [other, golden], 0.02, "sync")
    assert again["baseline"]["golden.ndcg@10"] == {"value": 0.9, "report": golden["id"]}
    assert [r["metric"] for r in again["regressions"]][:1] == ["golden.ndcg@10"]


def test_write_report_is_atomic_sorted_and_pruned(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    ids = []
    for i in range(4):
        r = build_report(
            {"golden": retrieval_result(0.5 + i / 10, 0.9)}, [], 0.02, "sync", now=T0
        )  # same id each time
        folder = write_report(reports, r, keep=3)
        ids.append(folder.name)
        assert (folder / "report.json").is_file() and (folder / "report.html").is_file()
    assert len(set(ids)) == 4  # same microsecond: later ones get a suffix, nothing overwritten
    assert [p.name for p in list_reports(reports)] == ids[1:]  # oldest pruned, order kept
    assert not list(reports.glob(".*"))  # no temp folders left
    found = latest_report(reports)
    assert found is not None and found[1]["metrics"]["golden.ndcg@10"] == pytest.approx(0.8)
    (reports / ids[-1] / "report.json").write_text("{broken")
    found = latest_report(reports)
    assert found is not None and found[0].name == ids[-2]


def test_html_shows_metrics_deltas_plots_and_worst_queries() -> None:
    before = build_report({"golden": retrieval_result(0.8, 0.9)}, [], 0.02, "sync", now=T0)
    after = build_report(
        {"golden": retrieval_result(0.7123, 0.9), "answers": answers_result(0.5)},
        [before],
        0.02,
        "reindex",
        now=T0 + dt.timedelta(days=1),
    )
    page = render_html(after)
    assert re.search(r'data-metric="golden.ndcg@10">0.712<', page)
    assert "▼ -0.088" in page and 'class="num worse"' in page
    assert "regression" in page and "golden.ndcg@10</b> fell from 0.800 to 0.712" in page
    assert page.count("<svg") == 4  # recall@k, two latency histograms, score history
    assert "Recall@k" in page and "Score history (last 2 reports)" in page
    assert "question 0 &lt;b&gt;" in page and '<b>"' not in page  # user text is escaped
    assert "missing.md" in page and "gold document not cited" in page
    # Self-contained: no scripts, no remote stylesheets, fonts or images.
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    json.dumps(after)  # and the report itself is plain JSON
