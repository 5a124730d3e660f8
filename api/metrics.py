"""Prometheus metrics for ``GET /metrics`` (text exposition format, prometheus-client).

Each app has its own registry (several apps in one test process must not collide). Route
labels use the route template (``/v1/documents/{path}``), never the raw path, so label
cardinality stays bounded. Ingestion counters and queue depths are read at scrape time
from the daemon and the concurrency gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _LiveCollector(Collector):
    """Values owned elsewhere (daemon totals, gate depths), read when scraped."""

    def __init__(self, read: Callable[[], dict[str, Any]]):
        self.read = read

    def collect(self) -> Iterable[Metric]:
        data = self.read()
        ingest = data.get("ingestion") or {}
        files = CounterMetricFamily(
            "rag_ingestion_files", "Files handled by the watch daemon", labels=["outcome"]
        )
        for outcome in ("ingested", "deleted"):
            files.add_metric([outcome], float(ingest.get(f"files_{outcome}", 0)))
        yield files
        yield CounterMetricFamily(
            "rag_ingestion_chunks_embedded",
            "Chunk texts embedded by the daemon",
            value=float(ingest.get("chunks_embedded", 0)),
        )
        yield CounterMetricFamily(
            "rag_ingestion_syncs", "Syncs run by the daemon", value=float(ingest.get("syncs", 0))
        )
        yield GaugeMetricFamily(
            "rag_ingestion_pending_paths",
            "Changed paths waiting to be synced",
            value=float(ingest.get("pending_paths", 0)),
        )
        queue = GaugeMetricFamily(
            "rag_queue_depth", "Requests waiting for a backend slot", labels=["backend"]
        )
        active = GaugeMetricFamily(
            "rag_backend_active", "Requests running on a backend", labels=["backend"]
        )
        rejected = CounterMetricFamily(
            "rag_backend_rejected", "Requests refused with 503 (queue full)", labels=["backend"]
        )
        for name, gate in (data.get("gates") or {}).items():
            queue.add_metric([name], float(gate["waiting"]))
            active.add_metric([name], float(gate["active"]))
            rejected.add_metric([name], float(gate["rejected"]))
        yield queue
        yield active
        yield rejected
        yield CounterMetricFamily(
            "rag_rate_limited",
            "Requests refused with 429 (rate limit)",
            value=float(data.get("rate_limited", 0)),
        )
        yield from _cache_and_cost_metrics(data)
        yield from _release_metrics(data.get("releases") or {})
        if data.get("injection_flagged_chunks") is not None:
            yield GaugeMetricFamily(
                "rag_injection_flagged_chunks",
                "Indexed chunks flagged as prompt injection (kept out of answers by default)",
                value=float(data["injection_flagged_chunks"]),
            )


def _cache_and_cost_metrics(data: dict[str, Any]) -> Iterable[Metric]:
    """The answer cache's counters and today's spend per tenant (rag/query/answer_cache.py, rag/query/costs.py)."""
    cache = data.get("cache")
    if cache is not None:
        hits = CounterMetricFamily(
            "rag_cache_hits", "Answers served by the answer cache", labels=["kind"]
        )
        for kind, n in (cache.get("hits_by_kind") or {}).items():
            hits.add_metric([str(kind)], float(n))
        yield hits
        yield CounterMetricFamily(
            "rag_cache_misses",
            "Cacheable questions answered afresh",
            value=float(cache.get("misses", 0)),
        )
        yield CounterMetricFamily(
            "rag_cache_invalidations",
            "Cache entries dropped because a cited chunk or document changed",
            value=float(cache.get("invalidated", 0)),
        )
        yield GaugeMetricFamily(
            "rag_cache_entries", "Answers in the cache", value=float(cache.get("entries", 0))
        )
        yield CounterMetricFamily(
            "rag_cache_saved_cost",
            "What the cached answers cost when first answered: spent once, not again",
            value=float(cache.get("saved_cost", 0.0)),
        )
        yield CounterMetricFamily(
            "rag_cache_saved_tokens",
            "Model tokens the cache hits did not spend again",
            value=float(cache.get("saved_tokens", 0)),
        )
    costs = data.get("costs")
    if costs is not None:
        spent = GaugeMetricFamily(
            "rag_cost_today", "Spend of the current UTC day, per tenant", labels=["tenant"]
        )
        budget = GaugeMetricFamily(
            "rag_cost_budget", "Daily budget per tenant (costs.daily_budget)", labels=["tenant"]
        )
        ratio = GaugeMetricFamily(
            "rag_cost_budget_used_ratio", "Spend today / daily budget", labels=["tenant"]
        )
        for tenant, row in (costs.get("tenants") or {}).items():
            spent.add_metric([tenant], float(row.get("cost", 0.0)))
            if row.get("budget") is not None:
                cap = float(row["budget"])
                budget.add_metric([tenant], cap)
                used = float(row.get("cost", 0.0))
                ratio.add_metric([tenant], used / cap if cap > 0 else (1.0 if used else 0.0))
        yield spent
        yield budget
        yield ratio
        warnings = CounterMetricFamily(
            "rag_budget_warnings",
            "Budget thresholds crossed (costs.warn_at), per tenant and level",
            labels=["tenant", "level"],
        )
        for (tenant, level), n in (costs.get("warnings") or {}).items():
            warnings.add_metric([tenant, level], float(n))
        yield warnings


_RELEASE_FIGURES = (
    "abstention_rate",
    "thumbs_down_rate",
    "all_verified_rate",
    "latency_p95_ms",
    "cost_per_answer",
)


def _release_metrics(releases: dict[str, Any]) -> Iterable[Metric]:
    """Prompt releases (rag/query/releases.py): rollbacks, each version's share and its figures
    over the current step's window, side by side."""
    rollbacks = CounterMetricFamily(
        "rag_prompt_release_rollbacks",
        "Prompt releases rolled back (automatically or by hand), per prompt",
        labels=["prompt"],
    )
    share = GaugeMetricFamily(
        "rag_prompt_release_share",
        "Share of users (%) each version of a prompt under release serves",
        labels=["prompt", "version"],
    )
    answers = GaugeMetricFamily(
        "rag_prompt_release_answers",
        "Answers of the current step's window, per version",
        labels=["prompt", "version", "role"],
    )
    figures = GaugeMetricFamily(
        "rag_prompt_release_figure",
        "A version's figure over the current step's window (abstention_rate, thumbs_down_rate, "
        "all_verified_rate, latency_p95_ms, cost_per_answer)",
        labels=["prompt", "version", "role", "figure"],
    )
    for name, release in releases.items():
        rollbacks.add_metric([name], float(release.get("rollbacks", 0)))
        for version, pct in (release.get("share") or {}).items():
            share.add_metric([name, str(version)], float(pct))
        if release.get("status") != "running":
            continue
        for role, arm in (release.get("figures") or {}).items():
            labels = [name, str(arm["version"]), role]
            answers.add_metric(labels, float(arm["answers"]))
            for figure in _RELEASE_FIGURES:
                if arm.get(figure) is not None:
                    figures.add_metric([*labels, figure], float(arm[figure]))
    yield rollbacks
    yield share
    yield answers
    yield figures


def _model_label(model: Any) -> str:
    from rag.query.costs import model_label

    return model_label(str(model)) if model else ""


class Metrics:
    def __init__(self, live: Callable[[], dict[str, Any]]):
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series double the output and nobody graphs them
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "rag_stage_seconds",
            "Query pipeline stage latency",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("rag_tokens", "Model tokens", ["kind"], registry=self.registry)
        self.answers = Counter(
            "rag_answers",
            "Answers by generator and outcome",
            ["generator", "outcome"],
            registry=self.registry,
        )
        self.variant_answers = Counter(
            "rag_variant_answers",
            "Answers per variant: prompt version and the collection that served them, by outcome",
            ["prompt", "collection", "outcome"],
            registry=self.registry,
        )
        self.variant_latency = Histogram(
            "rag_variant_answer_seconds",
            "Answer latency per variant (prompt version, collection)",
            ["prompt", "collection"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "rag_llm_tokens",
            "Model tokens of every call (refused and failed attempts included)",
            ["backend", "model", "tenant", "kind"],
            registry=self.registry,
        )
        self.llm_cost = Counter(
            "rag_llm_cost",
            "Cost of every model call, from costs.prices",
            ["backend", "model", "tenant"],
            registry=self.registry,
        )
        self.injection = Counter(
            "rag_injection_detected",
            "Prompt injection met by queries: attacked questions, attack spans cut out of chunks, "
            "flagged chunks kept out",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(live))

    def observe_result(
        self, result: dict[str, Any], tenant: str = "", collection: str | None = None
    ) -> None:
        for stage, ms in (result.get("timings_ms") or {}).items():
            if isinstance(ms, (int, float)):
                self.stage.labels(str(stage)).observe(float(ms) / 1000.0)
        usage = result.get("usage") or {}
        for kind in ("prompt_tokens", "completion_tokens"):
            n = usage.get(kind)
            if isinstance(n, int) and n > 0:
                self.tokens.labels(kind.removesuffix("_tokens")).inc(n)
        if result.get("generator"):
            outcome = (
                "abstained"
                if result.get("abstained")
                else ("degraded" if result.get("degraded") else "answered")
            )
            if result.get("cached"):
                outcome = "cached"  # answered earlier by this generator, served by the cache
            self.answers.labels(str(result["generator"]), outcome).inc()
            prompt = result.get("prompt") or {}
            variant = (
                f"{prompt.get('name')}@{prompt.get('version')}" if prompt.get("name") else "",
                collection or "",
            )
            self.variant_answers.labels(*variant, outcome).inc()
            total = (result.get("timings_ms") or {}).get("total")
            if isinstance(total, (int, float)) and not result.get("cached"):
                self.variant_latency.labels(*variant).observe(float(total) / 1000.0)
        injection = result.get("injection") or {}
        if injection.get("question"):
            self.injection.labels("question").inc()
        if injection.get("passages_excluded"):
            self.injection.labels("passages_excluded").inc(int(injection["passages_excluded"]))
        if injection.get("spans_removed"):
            self.injection.labels("spans_removed").inc(int(injection["spans_removed"]))
        for call in usage.get("backends") or []:
            labels = (str(call.get("backend")), _model_label(call.get("model")), tenant)
            for kind in ("prompt", "completion"):
                n = call.get(f"{kind}_tokens")
                if isinstance(n, int) and n > 0:
                    self.llm_tokens.labels(*labels, kind).inc(n)
            cost = call.get("cost")
            if isinstance(cost, (int, float)) and cost > 0:
                self.llm_cost.labels(*labels).inc(float(cost))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every request and times it to the end of its response body (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            # The router records the matched route in the (shared) scope.
            route = str(getattr(scope.get("route"), "path", "<unmatched>"))
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
