"""Each eval report's metrics reach Langfuse as scores on an ``eval-report`` trace (the real
SDK against the loopback stand-in), and a report is written whatever Langfuse does."""

from __future__ import annotations

import uuid
from typing import Any

from evals.report import save_report
from tests.langfuse_standin import LangfuseStandIn, refused_url

SUITES = {
    "golden": {
        "kind": "retrieval",
        "questions": 2,
        "ndcg@10": 0.75,
        "recall@10": 1.0,
        "mrr": 0.5,
        "latency_ms": {"p50": 12.0, "p95": 20.0},
        "per_query": [],
    }
}


def _settings(tmp_settings: Any, url: str) -> Any:
    return tmp_settings(
        tracing={
            "public_key": f"pk-lf-evals-{uuid.uuid4().hex[:12]}",
            "secret_key": "sk-lf-evals",
            "base_url": url,
            "flush_interval_seconds": 0.2,
            "shutdown_timeout_seconds": 2.0,
        }
    )


def test_report_metrics_become_scores(tmp_settings: Any) -> None:
    from rag.observability import tracing_for

    with LangfuseStandIn() as standin:
        settings = _settings(tmp_settings, standin.url)
        folder, report = save_report(settings, SUITES, "manual", "test", {}, [])
        assert (folder / "report.json").exists() and report["metrics"]
        expected = {f"eval.{k}" for k in report["metrics"]}
        assert standin.wait_for(lambda s: expected <= {x["name"] for x in s.scores})
        trace_ids = {x["traceId"] for x in standin.scores if x["name"] in expected}
        assert len(trace_ids) == 1
        by_name = {x["name"]: x["value"] for x in standin.scores}
        assert (
            by_name[next(iter(sorted(expected)))] == report["metrics"][sorted(report["metrics"])[0]]
        )
        assert standin.wait_for(
            lambda s: any(x.name == "eval-report" and x.trace_id in trace_ids for x in s.spans)
        )
        tracing_for(settings).shutdown(1.0)


def test_report_written_when_langfuse_is_down(tmp_settings: Any) -> None:
    from rag.observability import tracing_for

    settings = _settings(tmp_settings, refused_url())
    folder, report = save_report(settings, SUITES, "manual", "test", {}, [])
    assert (folder / "report.json").exists() and report["metrics"]
    tracing_for(settings).shutdown(0.5)
