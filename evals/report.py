"""Eval reports: ``<data_dir>/reports/<UTC timestamp>/report.json`` and ``report.html``.

A report holds the flat headline metrics of each suite (``golden.ndcg@10``,
``canary.hit_rate@10``, ``answers.gold_cited``, …), their change against the most recent
earlier report that has them, and ``regressions``: quality metrics that moved the wrong way
by more than ``evals.regression_threshold`` (absolute). Latency and token counts get deltas
but never count as regressions: on a shared CPU they move with the machine's load.
A suite whose questions changed since that report (another golden set hash) is compared but
not judged. Folders are written under a temporary name and renamed, so a reader never sees
half a report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.metric_names import higher_is_better, is_quality_metric
from evals.report_html import render_html
from evals.retrieval import HEADLINE_KEYS
from evals.verify import VERIFY_KEYS, verify_failures

if TYPE_CHECKING:
    from rag.core.config import Settings

__all__ = [
    "build_report",
    "flat_metrics",
    "higher_is_better",
    "is_quality_metric",
    "latest_report",
    "list_reports",
    "load_report",
    "new_report_id",
    "previous_reports",
    "reports_dir",
    "save_report",
    "summary",
    "write_report",
]

SCHEMA = 1
HISTORY_LENGTH = 30
_CONVERSATION_KEYS = (
    "answer_contains_gold",
    "answer_contains_gold_code_aware",
    "gold_cited",
    "abstention_rate_unanswerable",
    "false_abstention_rate_answerable",
)
ANSWER_FIGURES = (  # the answer eval's figures, in the order reports print them
    "answer_contains_gold",
    "answer_contains_gold_code_aware",
    "gold_cited",
    "citation_precision",
    "abstention_rate_unanswerable",
    "false_abstention_rate_answerable",
)


# -- metrics --------------------------------------------------------------------------
def flat_metrics(suite: str, result: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of one suite result, keyed ``<suite>.<metric>``."""
    out: dict[str, float] = {}
    kind = result.get("kind", "retrieval")
    if kind in ("injection", "injection_answers"):
        for key, value in (result.get("metrics") or {}).items():
            out[f"{suite}.{key}"] = float(value)
    elif kind == "verify":
        # kept / stopped figures of what a model wrote (evals/verify.py), both sets and each
        for key in VERIFY_KEYS:
            if result.get(key) is not None:
                out[f"{suite}.{key}"] = float(result[key])
        for name, figures in (result.get("sets") or {}).items():
            for key in VERIFY_KEYS:
                if figures.get(key) is not None:
                    out[f"{suite}.{name}.{key}"] = float(figures[key])
    elif kind in ("retrieval", "canary"):
        top_k = int((result.get("config") or {}).get("top_k") or 100)
        for key in HEADLINE_KEYS:
            if key.startswith("recall@") and int(key.split("@")[1]) > top_k:
                continue
            if key in result:
                out[f"{suite}.{key}"] = float(result[key])
        for key, value in result.items():
            if key.startswith("hit_rate@"):
                out[f"{suite}.{key}"] = float(value)
    else:
        for key in ANSWER_FIGURES:
            if result.get(key) is not None:
                out[f"{suite}.{key}"] = float(result[key])
        tokens = result.get("tokens_per_question") or {}
        if tokens.get("total") is not None:
            out[f"{suite}.tokens_per_question"] = float(tokens["total"])
        conversations = result.get("conversations") or {}
        for part in ("first_turn", "follow_up"):  # evals/conversations.py, side by side
            for key in _CONVERSATION_KEYS:
                value = (conversations.get(part) or {}).get(key)
                if value is not None:
                    out[f"{suite}.{part}.{key}"] = float(value)
    latency = result.get("latency_ms") or {}
    for p in ("p50", "p95"):
        if p in latency and (result.get("queries") or result.get("questions")):
            out[f"{suite}.latency_ms.{p}"] = float(latency[p])
    return out


# -- worst queries ---------------------------------------------------------------------
def _worst_retrieval(per_query: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    def badness(q: dict[str, Any]) -> tuple[float, float, float]:
        rank = q.get("first_relevant_rank")
        return (q.get("ndcg@10", 0.0), q.get("recall@10", 0.0), -(rank if rank else 1e9))

    # Perfect queries are not "worst" however few the misses: leave them out.
    worst = sorted((q for q in per_query if q.get("ndcg@10", 0.0) < 1.0 - 1e-9), key=badness)[:n]
    return [
        {
            "id": q["id"],
            "query": q["query"],
            "relevant": q["relevant"],
            "first_relevant_rank": q.get("first_relevant_rank"),
            "ndcg@10": q.get("ndcg@10"),
            "retrieved": [
                {"doc": d, "score": s, "relevant": d in set(q["relevant"])}
                for d, s in list(zip(q["ranked"], q["scores"], strict=False))[:10]
            ],
        }
        for q in worst
    ]


def _worst_answers(per_query: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    def badness(q: dict[str, Any]) -> int:
        if q["answerable"]:
            return (
                int(bool(q.get("contains_gold")))
                + int(bool(q.get("gold_cited")))
                + int(not q["abstained"])
            )
        return 3 if q["abstained"] else 0

    return [
        {
            k: q.get(k)
            for k in (
                "id",
                "question",
                "answerable",
                "answer",
                "abstained",
                "gold_answers",
                "gold_docs",
                "cited",
                "verified",
                "contains_gold",
                "gold_cited",
            )
        }
        for q in sorted(per_query, key=badness)[:n]
        if badness(q) < 3
    ]


def _compact_suite(result: Mapping[str, Any], worst_n: int) -> dict[str, Any]:
    """What report.json keeps of a suite: everything but the full per-query lists."""
    if result.get("kind") == "verify":
        kept = {k: v for k, v in result.items() if k != "per_case"}
        kept["worst"] = verify_failures(list(result.get("per_case") or []))[:worst_n]
        return kept
    per_query = list(result.get("per_query") or [])
    kept = {k: v for k, v in result.items() if k != "per_query"}
    if isinstance(kept.get("conversations"), Mapping):
        turns = list(kept["conversations"].get("per_turn") or [])
        kept["conversations"] = {
            **{k: v for k, v in kept["conversations"].items() if k != "per_turn"},
            # the follow-ups that went wrong, with the question they were answered as
            "worst_follow_ups": [
                {k: t.get(k) for k in ("id", "kind", "question", "standalone_question", "answer")}
                for t in turns
                if t.get("kind") != "first"
                and (
                    (t.get("answerable") and not t.get("contains_gold"))
                    or (not t.get("answerable") and not t.get("abstained"))
                )
            ][:worst_n],
        }
    kept["latencies_ms"] = [q["latency_ms"] for q in per_query if "latency_ms" in q]
    if result.get("kind", "retrieval") == "answers":
        kept["worst"] = _worst_answers(per_query, worst_n)
    else:
        kept["worst"] = _worst_retrieval(per_query, worst_n)
    return kept


# -- building ----------------------------------------------------------------------------
def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_report_id(now: dt.datetime | None = None) -> str:
    """A sortable UTC timestamp (microseconds keep two reports in one second apart)."""
    return (now or _utcnow()).strftime("%Y%m%dT%H%M%S.%fZ")


def build_report(
    suites: Mapping[str, Mapping[str, Any]],
    previous: list[dict[str, Any]],
    threshold: float,
    trigger: str,
    reason: str | None = None,
    index_info: Mapping[str, Any] | None = None,
    worst_n: int = 10,
    notes: list[str] | None = None,
    now: dt.datetime | None = None,
    variants: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Assemble a report; ``previous`` are earlier reports, newest first. ``variants``: the
    flat metrics of each variant a release gate compared (``collection:kb_v2``,
    ``prompt:answer@v4``), side by side."""
    now = now or _utcnow()
    metrics: dict[str, float] = {}
    for name, result in suites.items():
        metrics.update(flat_metrics(name, result))
    deltas: dict[str, float] = {}
    baseline: dict[str, dict[str, Any]] = {}
    regressions: list[dict[str, Any]] = []
    all_notes = list(notes or [])
    for key, value in metrics.items():
        suite = key.split(".", 1)[0]
        for old in previous:
            if key not in (old.get("metrics") or {}):
                continue
            before = float(old["metrics"][key])
            delta = round(value - before, 6)
            deltas[key] = delta
            baseline[key] = {"value": before, "report": old.get("id")}
            old_hash = (
                ((old.get("suites") or {}).get(suite) or {}).get("dataset", {}).get("content_hash")
            )
            new_hash = (suites[suite].get("dataset") or {}).get("content_hash")
            comparable = old_hash == new_hash
            if not comparable:
                note = f"suite '{suite}' has other questions than report {old.get('id')}: compared, not judged"
                if note not in all_notes:
                    all_notes.append(note)
            worse = -delta if higher_is_better(key) else delta
            if comparable and is_quality_metric(key) and worse > threshold + 1e-12:
                regressions.append(
                    {
                        "metric": key,
                        "previous": before,
                        "current": value,
                        "delta": delta,
                        "previous_report": old.get("id"),
                    }
                )
            break
    history = [
        {
            "id": old.get("id"),
            "created_at": old.get("created_at"),
            "metrics": old.get("metrics") or {},
        }
        for old in reversed(previous[: HISTORY_LENGTH - 1])
    ]
    report_id = new_report_id(now)
    history.append(
        {"id": report_id, "created_at": now.isoformat(timespec="seconds"), "metrics": metrics}
    )
    return {
        "schema": SCHEMA,
        "id": report_id,
        "created_at": now.isoformat(timespec="seconds"),
        "trigger": trigger,
        "reason": reason,
        "index": dict(index_info or {}),
        "metrics": metrics,
        "deltas": deltas,
        "baseline": baseline,
        "previous": previous[0].get("id") if previous else None,
        "regressions": regressions,
        "threshold": threshold,
        "variants": {name: dict(figures) for name, figures in (variants or {}).items()},
        "suites": {name: _compact_suite(result, worst_n) for name, result in suites.items()},
        "history": history,
        "notes": all_notes,
    }


def summary(report: Mapping[str, Any], path: Path | None = None) -> dict[str, Any]:
    """The few fields ``rag status`` shows as ``last_eval``."""
    return {
        "id": report.get("id"),
        "created_at": report.get("created_at"),
        "trigger": report.get("trigger"),
        "report": str(path / "report.html") if path else None,
        "metrics": {k: v for k, v in (report.get("metrics") or {}).items() if is_quality_metric(k)},
        "regressions": report.get("regressions") or [],
        "ok": not report.get("regressions"),
    }


# -- storage -----------------------------------------------------------------------------
def reports_dir(settings: Settings) -> Path:
    """``<data_dir>/reports``: every report of one data dir, whoever wrote it."""
    return settings.resolved_data_dir() / "reports"


def list_reports(reports_dir: Path) -> list[Path]:
    """Report folders, oldest first (names are sortable UTC timestamps)."""
    if not reports_dir.is_dir():
        return []
    return sorted(
        p
        for p in reports_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "report.json").is_file()
    )


def load_report(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    return data


def latest_report(reports_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    for folder in reversed(list_reports(reports_dir)):
        try:
            return folder, load_report(folder)
        except (OSError, ValueError):
            continue  # a damaged report does not hide the ones before it
    return None


def previous_reports(reports_dir: Path, limit: int = HISTORY_LENGTH) -> list[dict[str, Any]]:
    """Up to ``limit`` earlier reports, newest first."""
    out: list[dict[str, Any]] = []
    for folder in reversed(list_reports(reports_dir)):
        try:
            out.append(load_report(folder))
        except (OSError, ValueError):
            continue
        if len(out) >= limit:
            break
    return out


def write_report(reports_dir: Path, report: dict[str, Any], keep: int = 200) -> Path:
    """Write report.json and report.html into ``reports_dir/<id>/`` atomically; prune old ones."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    base = str(report["id"])
    folder: Path = reports_dir / base
    n = 0
    while folder.exists():  # two reports in the same microsecond: never overwrite one ("Z" < "Z-1")
        n += 1
        report["id"] = f"{base}-{n}"
        folder = reports_dir / report["id"]
    if report.get("history"):
        report["history"][-1]["id"] = report["id"]
    tmp = reports_dir / f".{report['id']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    (tmp / "report.html").write_text(render_html(report), encoding="utf-8")
    os.replace(tmp, folder)
    for old in list_reports(reports_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


# The report fields holding free text (questions, answers, passages, errors): scrubbed.
REPORT_TEXT_FIELDS = frozenset(
    {"question", "answer", "text", "quote", "reason", "error", "query", "notes", "gold_answers"}
)


def save_report(
    settings: Settings,
    suites: dict[str, dict[str, Any]],
    trigger: str,
    reason: str | None,
    info: dict[str, Any],
    notes: list[str],
    variants: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Compare with the earlier reports, write report.json + report.html; returns (folder, report)."""
    ev = settings.evals
    folder_root = reports_dir(settings)
    report = build_report(
        suites,
        previous_reports(folder_root),
        ev.regression_threshold,
        trigger,
        reason,
        info,
        ev.worst_queries,
        notes,
        variants=variants,
    )
    # Reports are written and shown: their free text carries no PII (rag.guards.pii, issue 11).
    from rag.guards.pii import scrubber_for

    report = scrubber_for(settings).scrub_fields(report, REPORT_TEXT_FIELDS)
    folder = write_report(folder_root, report, keep=ev.keep_reports)
    # Quality over time next to the traces: each metric a Langfuse score (tracing on only).
    from rag.observability import tracing_for

    tracing_for(settings).eval_report(
        str(report["id"]),
        dict(report.get("metrics") or {}),
        {"trigger": trigger, "suites": sorted(suites)},
    )
    return folder, report
