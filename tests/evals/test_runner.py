"""The after-sync runner: background, coalescing, reports with deltas, ``last_eval`` in status."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.report import list_reports
from evals.runner import EvalRunner, eval_after_reindex
from evals.suite import run_default_suite
from ingestion.daemon import WatchDaemon
from rag.core.config import Settings
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor, SyncReport
from rag.indexing.reindex import reindex
from rag.indexing.status import collect_status

DOCS = {
    "backup.md": "# Backups\n\nFull database backups run nightly and are kept for 35 days in a second region.\n",
    "oncall.md": "# On-call\n\nThe primary on-call engineer must acknowledge a page within five minutes.\n",
    "notes/expenses.md": "# Expenses\n\nHotel costs are reimbursed up to 180 EUR per night with a receipt.\n",
    "notes/laptops.md": "# Laptops\n\nA stolen laptop must be reported to the helpdesk within one hour so it can be wiped.\n",
}
GOLDEN = [
    {
        "id": "backup",
        "question": "How long are database backups retained?",
        "sources": ["backup.md"],
    },
    {
        "id": "oncall",
        "question": "How fast must on-call acknowledge pages?",
        "sources": ["oncall.md"],
    },
    {
        "id": "hotel",
        "question": "What is the hotel limit per night?",
        "sources": ["notes/expenses.md"],
    },
    {
        "id": "laptop",
        "question": "What do I do when my laptop is stolen?",
        "sources": ["notes/laptops.md"],
    },
]


@pytest.fixture()
def kb(
    tmp_path: Path, tmp_settings: Callable[..., Settings], embedder: Embedder
) -> Iterator[tuple[Index, Path]]:
    folder = tmp_path / "kb"
    for rel, text in DOCS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(g) + "\n" for g in GOLDEN))
    settings = tmp_settings(
        evals={"suite": str(golden), "canary_samples": 8, "canary_top_k": 3, "top_k": 10}
    )
    index = Index(settings, embedder=embedder)
    index.open()
    yield index, folder
    index.close()


def test_suite_writes_report_and_last_eval(kb: tuple[Index, Path]) -> None:
    index, folder = kb
    Ingestor(index).sync_folder(folder)
    path, report = run_default_suite(index, trigger="manual")
    assert path.parent == index.settings.resolved_data_dir() / "reports"
    # evals.answers is on by default: the golden questions also go through the query path.
    assert set(report["suites"]) == {"golden", "answers", "canary", "injection"}
    answers = report["suites"]["answers"]
    assert answers["questions"] == len(GOLDEN) and answers["errors"] == []
    assert answers["false_abstention_rate_answerable"] is not None
    assert report["metrics"]["golden.recall@10"] == 1.0
    assert report["suites"]["canary"]["samples"] == 4  # one chunk per (short) file
    # Each probe is a sentence of one of four short files: its own file comes back first.
    assert report["metrics"]["canary.hit_rate@3"] == 1.0
    assert report["metrics"]["canary.mrr@10"] == 1.0, report["suites"]["canary"]
    assert report["suites"]["canary"]["worst"] == []
    status = collect_status(index)
    assert status["last_eval"]["id"] == report["id"] and status["last_eval"]["ok"] is True


def test_deleted_document_shows_as_regression(kb: tuple[Index, Path]) -> None:
    index, folder = kb
    Ingestor(index).sync_folder(folder)
    run_default_suite(index, trigger="sync")
    (folder / "oncall.md").unlink()
    Ingestor(index).sync_folder(folder)
    _, report = run_default_suite(index, trigger="sync")
    flagged = {r["metric"] for r in report["regressions"]}
    assert "golden.recall@10" in flagged  # 1.0 -> 0.75
    assert report["deltas"]["golden.recall@10"] == pytest.approx(-0.25)
    assert any("oncall.md" in n for n in report["suites"]["golden"]["notes"])
    last = collect_status(index)["last_eval"]
    assert last["ok"] is False and "golden.recall@10" in {r["metric"] for r in last["regressions"]}


def test_golden_set_for_another_kb_is_skipped(kb: tuple[Index, Path], tmp_path: Path) -> None:
    index, folder = kb
    Ingestor(index).sync_folder(folder)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "q?", "sources": ["not/here.md"]}) + "\n")
    _, report = run_default_suite(index, suite_path=other)
    assert set(report["suites"]) == {"canary", "injection"}
    assert any("names none of the indexed files" in n for n in report["notes"])


def test_requests_coalesce_and_never_block(kb: tuple[Index, Path]) -> None:
    index, _ = kb
    gate = threading.Event()
    calls: list[str] = []

    def slow_suite(
        index: Index, trigger: str, reason: str | None, should_stop: Callable[[], bool]
    ) -> Any:
        calls.append(trigger)
        gate.wait(30)
        return Path("/unused"), {"regressions": []}

    runner = EvalRunner(index, suite=slow_suite, echo=lambda m: None)
    changed = SyncReport(ingested=1)
    runner.on_sync(changed)  # returns although the suite is blocked
    assert runner.busy
    for _ in range(5):
        runner.on_sync(changed)
    runner.request("reindex")
    runner.on_sync(SyncReport(unchanged=3))  # nothing changed: no run
    assert not gate.is_set() and calls == ["sync"]
    gate.set()
    assert runner.wait_idle(30)
    assert calls == [
        "sync",
        "reindex",
    ]  # six requests during the run -> exactly one more, the latest
    assert runner.runs == 2


def test_failed_suite_is_recorded_not_raised(kb: tuple[Index, Path]) -> None:
    index, _ = kb

    def broken(index: Index, **kwargs: Any) -> Any:
        raise ValueError("golden set unreadable")

    runner = EvalRunner(index, suite=broken, echo=lambda m: None)
    runner.request("sync")
    assert runner.wait_idle(30)
    assert runner.last_error == "ValueError: golden set unreadable"
    assert collect_status(index)["last_eval"]["error"] == "ValueError: golden set unreadable"


def test_daemon_sync_triggers_reports_with_deltas(kb: tuple[Index, Path]) -> None:
    index, folder = kb
    messages: list[str] = []
    runner = EvalRunner(index, echo=messages.append)
    daemon = WatchDaemon(index, [folder], debounce_seconds=0.2, on_sync=[runner.on_sync])
    reports = index.settings.resolved_data_dir() / "reports"
    daemon.start()
    try:
        deadline = time.monotonic() + 90
        while len(list_reports(reports)) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list_reports(reports)) == 1, "no report after the initial sync"
        assert runner.wait_idle(60)
        (folder / "notes" / "laptops.md").unlink()
        while len(list_reports(reports)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runner.wait_idle(60)
    finally:
        runner.stop()
        daemon.stop()
    folders = list_reports(reports)
    assert len(folders) == 2
    second = json.loads((folders[1] / "report.json").read_text())
    assert second["trigger"] == "sync" and second["previous"] == folders[0].name
    assert second["deltas"]["golden.recall@10"] == pytest.approx(-0.25)
    assert "golden.recall@10" in {r["metric"] for r in second["regressions"]}
    assert any("regression" in m for m in messages)


def test_reindex_runs_the_suite(kb: tuple[Index, Path]) -> None:
    index, folder = kb
    Ingestor(index).sync_folder(folder)
    result = reindex(index)
    summary = eval_after_reindex(index, echo=lambda m: None)
    assert summary is not None and summary["trigger"] == "reindex" and summary["ok"]
    report = json.loads(Path(summary["report"]).with_name("report.json").read_text())
    assert report["index"]["collection"] == result["collection"]
    index.settings.evals.after_sync = False
    assert eval_after_reindex(index) is None
