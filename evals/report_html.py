"""report.html: one self-contained page a person reads after a reindex.

Top to bottom: regressions (or "none"), the metrics with their change since the previous
report, the plots (recall@k curve, latency distribution, score history), the worst queries
with what was retrieved, then the configuration. Inline CSS and SVG only: it opens from disk,
offline, and prints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from evals.metric_names import higher_is_better, is_quality_metric
from evals.svg import histogram, line_chart

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1b1f24}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border-bottom:1px solid #eaeef2;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#57606a}.banner{padding:10px 14px;border-radius:6px;margin:12px 0}
.banner.bad{background:#ffebe9;border:1px solid #ff8182}.banner.good{background:#dafbe1;border:1px solid #4ac26b}
.better{color:#1a7f37}.worse{color:#cf222e}.same{color:#57606a}.regressed{background:#fff1f0}
.rel{font-weight:600;color:#1a7f37}.doc{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #eaeef2;border-radius:6px}
.chart-title{font-size:13px;font-weight:600}.tick{font-size:10px;fill:#57606a}.axis{font-size:11px;fill:#24292f}
.legend{font-size:11px;fill:#24292f}.grid{stroke:#eaeef2}.plot-bg{fill:#fcfcfd;stroke:#d0d7de}
.bar{fill:#54aeff}.marker{stroke:#cf222e;stroke-dasharray:4 3}.marker-label{font-size:10px;fill:#cf222e}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}details{margin:8px 0}
"""


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return escape(str(value))


def _delta_cell(key: str, delta: float | None) -> str:
    if delta is None:
        return '<td class="num same">new</td>'
    if abs(delta) < 5e-4:
        return f'<td class="num same" data-delta="{delta}">±0.000</td>'
    good = (delta > 0) == higher_is_better(key)
    cls = "better" if good else "worse"
    arrow = "▲" if delta > 0 else "▼"
    return f'<td class="num {cls}" data-delta="{delta}">{arrow} {delta:+.3f}</td>'


def _variants_table(report: Mapping[str, Any]) -> str:
    """A release gate's variants (``collection:kb_v2``, ``prompt:answer@v4``) side by side."""
    variants: Mapping[str, Mapping[str, float]] = report.get("variants") or {}
    if not variants:
        return ""
    names = list(variants)
    keys = sorted({k for figures in variants.values() for k in figures})
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{escape(k)}</td>"
        + "".join(f'<td class="num">{_num(variants[n].get(k))}</td>' for n in names)
        + "</tr>"
        for k in keys
    )
    return f'<h2>Variants</h2><table id="variants"><tr><th>metric</th>{head}</tr>{rows}</table>'


def _metrics_table(report: Mapping[str, Any]) -> str:
    metrics: Mapping[str, float] = report.get("metrics") or {}
    deltas: Mapping[str, float] = report.get("deltas") or {}
    baseline: Mapping[str, Any] = report.get("baseline") or {}
    regressed = {r["metric"] for r in report.get("regressions") or []}
    rows = []
    for key in metrics:
        suite, _, name = key.partition(".")
        before = (baseline.get(key) or {}).get("value")
        cls = ' class="regressed"' if key in regressed else ""
        unit = " ms" if name.startswith("latency_ms") else ""
        rows.append(
            f"<tr{cls}><td>{escape(suite)}</td><td>{escape(name)}{unit}</td>"
            f'<td class="num value" data-metric="{escape(key)}">{_num(metrics[key])}</td>'
            f'{_delta_cell(key, deltas.get(key))}<td class="num">{_num(before)}</td></tr>'
        )
    return (
        '<table id="metrics-table"><thead><tr><th>suite</th><th>metric</th><th class="num">value</th>'
        '<th class="num">Δ vs previous</th><th class="num">previous</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _regressions(report: Mapping[str, Any]) -> str:
    regs = report.get("regressions") or []
    threshold = report.get("threshold")
    if not regs:
        prev = report.get("previous")
        text = (
            f"No regressions against report {escape(str(prev))}"
            if prev
            else "First report: nothing to compare with yet"
        )
        return (
            f'<div class="banner good" id="regressions">{text} (threshold {_num(threshold)}).</div>'
        )
    items = "".join(
        f"<li><b>{escape(r['metric'])}</b> fell from {_num(r['previous'])} to {_num(r['current'])} "
        f"({r['delta']:+.3f}; report {escape(str(r.get('previous_report')))})</li>"
        for r in regs
    )
    return (
        f'<div class="banner bad" id="regressions"><b>{len(regs)} regression{"s" if len(regs) != 1 else ""}</b> '
        f"beyond the threshold of {_num(threshold)}:<ul>{items}</ul></div>"
    )


def _recall_chart(suites: Mapping[str, Mapping[str, Any]]) -> str:
    curves = [(name, s["recall_curve"]) for name, s in suites.items() if s.get("recall_curve")]
    if not curves:
        return ""
    ks = sorted({int(k) for _, c in curves for k in c})
    pos = {k: float(i) for i, k in enumerate(ks)}
    series = [
        (name, [(pos[int(k)], float(v)) for k, v in sorted(c.items(), key=lambda kv: int(kv[0]))])
        for name, c in curves
    ]
    return line_chart(series, [(pos[k], str(k)) for k in ks], "Recall@k", "k (documents)", "recall")


def _latency_charts(suites: Mapping[str, Mapping[str, Any]]) -> list[str]:
    charts = []
    for name, s in suites.items():
        values = s.get("latencies_ms") or []
        if not values:
            continue
        lat = s.get("latency_ms") or {}
        markers = [(p, float(lat[p])) for p in ("p50", "p95") if p in lat]
        charts.append(histogram(values, f"Latency per query: {name}", "milliseconds", markers))
    return charts


def _history_chart(report: Mapping[str, Any]) -> str:
    history = report.get("history") or []
    if not history:
        return ""
    # The headline of each suite; the full set would crowd the chart.
    headline = ("ndcg@10", "recall@10", "answer_contains_gold", "gold_cited", "citation_precision")
    keys = [
        k
        for k in (report.get("metrics") or {})
        if is_quality_metric(k) and (k.split(".", 1)[-1] in headline or ".hit_rate@" in k)
    ][:8]
    series = []
    for key in keys:
        points = [
            (float(i), float(h["metrics"][key]))
            for i, h in enumerate(history)
            if key in (h.get("metrics") or {})
        ]
        if points:
            series.append((key, points))
    ticks = [
        (float(i), str(h.get("created_at") or h.get("id") or "")[5:16].replace("T", " "))
        for i, h in enumerate(history)
    ]
    return line_chart(
        series, ticks, f"Score history (last {len(history)} reports)", "report (UTC)", "score"
    )


def _worst_retrieval(name: str, worst: list[Mapping[str, Any]]) -> str:
    rows = []
    for q in worst:
        retrieved = "".join(
            f'<li class="doc{" rel" if r["relevant"] else ""}">{escape(str(r["doc"]))} '
            f'<span class="meta">{_num(float(r["score"]))}</span>{" ✓" if r["relevant"] else ""}</li>'
            for r in q.get("retrieved", [])[:5]
        )
        expected = ", ".join(
            f'<span class="doc">{escape(str(d))}</span>' for d in q.get("relevant", [])
        )
        rank = q.get("first_relevant_rank")
        rows.append(
            f'<tr><td>{escape(str(q.get("query", "")))}<div class="meta">{escape(str(q.get("id")))}</div></td>'
            f'<td>{expected}</td><td class="num">{rank if rank else "not found"}</td>'
            f'<td class="num">{_num(q.get("ndcg@10"))}</td><td><ol>{retrieved}</ol></td></tr>'
        )
    return (
        f'<h3>{escape(name)}</h3><table class="worst"><thead><tr><th>query</th><th>expected</th>'
        '<th class="num">first relevant rank</th><th class="num">nDCG@10</th><th>retrieved (top 5)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _worst_answers(name: str, worst: list[Mapping[str, Any]]) -> str:
    rows = []
    for q in worst:
        verdict = []
        if q.get("answerable"):
            verdict.append(
                "abstained"
                if q.get("abstained")
                else ("gold answer missing" if q.get("contains_gold") is False else "")
            )
            if q.get("gold_cited") is False:
                verdict.append("gold document not cited")
        else:
            verdict.append("answered an unanswerable question")
        cited = ", ".join(
            f'<span class="doc{" rel" if v else ""}">{escape(str(c))}</span>'
            for c, v in zip(q.get("cited") or [], q.get("verified") or [], strict=False)
        )
        rows.append(
            f"<tr><td>{escape(str(q.get('question', '')))}</td><td>{escape(str(q.get('answer', ''))[:400])}</td>"
            f"<td>{escape(', '.join(q.get('gold_answers') or []) or '(unanswerable)')}</td><td>{cited or '–'}</td>"
            f"<td>{escape('; '.join(v for v in verdict if v))}</td></tr>"
        )
    return (
        f'<h3>{escape(name)}</h3><table class="worst"><thead><tr><th>question</th><th>answer</th><th>gold</th>'
        f"<th>cited (verified bold)</th><th>why</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _worst_verify(name: str, worst: list[Mapping[str, Any]]) -> str:
    rows = [
        f'<tr><td>{escape(str(c.get("kind")))}<div class="meta">{escape(str(c.get("id")))}</div></td>'
        f"<td>{escape(str(c.get('question', '')))}</td><td>{escape(str(c.get('model_wrote') or '')[:400])}</td>"
        f"<td>{escape(str(c.get('user_got') or '')[:400])}</td><td>{escape(str(c.get('verdict')))}</td></tr>"
        for c in worst
    ]
    return (
        f'<h3>{escape(name)}</h3><table class="worst"><thead><tr><th>kind</th><th>question</th>'
        "<th>the model wrote</th><th>the user got</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _conversations(suites: Mapping[str, Mapping[str, Any]]) -> str:
    """First turns and follow-ups side by side, per suite that ran conversations."""
    parts = []
    labels = (
        ("answer_contains_gold", "right"),
        ("answer_contains_gold_code_aware", "right, code-aware"),
        ("gold_cited", "gold cited"),
        ("abstention_rate_unanswerable", "abstention (unanswerable)"),
        ("false_abstention_rate_answerable", "false abstention"),
    )
    for name, s in suites.items():
        conv = s.get("conversations")
        if not isinstance(conv, Mapping) or not conv.get("follow_up"):
            continue
        first, follow = conv.get("first_turn") or {}, conv.get("follow_up") or {}
        rows = "".join(
            f'<tr><td>{escape(label)}</td><td class="num">{_num(first.get(key))}</td>'
            f'<td class="num">{_num(follow.get(key))}</td></tr>'
            for key, label in labels
        )
        rows += (
            f'<tr><td>turns</td><td class="num">{_num(first.get("turns"))}</td>'
            f'<td class="num">{_num(follow.get("turns"))}</td></tr>'
        )
        worst = "".join(
            f'<tr><td>{escape(str(t.get("question")))}<div class="meta">{escape(str(t.get("id")))}'
            f" · {escape(str(t.get('kind')))}</div></td><td>{escape(str(t.get('standalone_question')))}</td>"
            f"<td>{escape(str(t.get('answer'))[:300])}</td></tr>"
            for t in conv.get("worst_follow_ups") or []
        )
        parts.append(
            f"<h3>{escape(name)}: {_num(conv.get('conversations'))} conversations</h3>"
            '<table class="conversations"><thead><tr><th></th><th class="num">first turn</th>'
            f'<th class="num">follow-up</th></tr></thead><tbody>{rows}</tbody></table>'
            + (
                '<table class="worst"><thead><tr><th>follow-up</th><th>answered as</th>'
                f"<th>answer</th></tr></thead><tbody>{worst}</tbody></table>"
                if worst
                else ""
            )
        )
    return f"<h2>Conversations</h2>{''.join(parts)}" if parts else ""


def render_html(report: Mapping[str, Any]) -> str:
    suites: Mapping[str, Mapping[str, Any]] = report.get("suites") or {}
    index = report.get("index") or {}
    emb = index.get("embedding") or {}
    charts = [
        c for c in [_recall_chart(suites), *_latency_charts(suites), _history_chart(report)] if c
    ]
    worst_parts = []
    for name, s in suites.items():
        if s.get("worst"):
            kind = s.get("kind")
            render = (
                _worst_answers
                if kind == "answers"
                else _worst_verify
                if kind == "verify"
                else _worst_retrieval
            )
            worst_parts.append(render(name, list(s["worst"])))
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in report.get("notes") or [])
    for name, s in suites.items():
        for n in s.get("notes") or []:
            notes += f"<li>{escape(name)}: {escape(str(n))}</li>"
    config = {
        name: {"kind": s.get("kind"), "dataset": s.get("dataset"), "config": s.get("config")}
        for name, s in suites.items()
    }
    title = f"Eval report {report.get('id', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p class="meta">created {escape(str(report.get("created_at")))} · trigger <b>{escape(str(report.get("trigger")))}</b>
{("· " + escape(str(report["reason"]))) if report.get("reason") else ""} ·
index {escape(str(index.get("collection", "–")))} ({_num(index.get("documents"))} documents, {_num(index.get("chunks"))} chunks) ·
embedding {escape(str(emb.get("model", "–")))} · compared with {escape(str(report.get("previous") or "nothing (first report)"))}</p>
{_regressions(report)}
<h2>Metrics</h2>{_metrics_table(report)}
{_variants_table(report)}
{_conversations(suites)}
{f'<h2>Notes</h2><ul id="notes">{notes}</ul>' if notes else ""}
<h2>Plots</h2><div class="charts">{"".join(charts)}</div>
<h2>Worst queries</h2>{"".join(worst_parts) or '<p class="meta">none</p>'}
<h2>Configuration</h2><details><summary>suites, retrieval and chunking settings</summary>
<pre>{escape(json.dumps({"index": index, "suites": config}, indent=2, default=str))}</pre></details>
<p class="meta">Machine-readable: <a href="report.json">report.json</a></p>
</body></html>
"""
