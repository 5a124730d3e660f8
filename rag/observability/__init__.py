"""Observability: Langfuse tracing of every query, and the scores that feedback and evals add.

Configured by the ``tracing`` section, else the SDK's own variables (``LANGFUSE_PUBLIC_KEY``,
``LANGFUSE_SECRET_KEY``, ``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST``). Without keys
:func:`tracing_for` returns a disabled :class:`Tracing` whose ``tracer`` is None: nothing is
imported (the SDK stays unloaded), no trace id is made, a query costs nothing more::

    tracing = tracing_for(settings)        # one per configuration per process
    pipeline = QueryPipeline(index, settings, tracer=tracing.tracer)
    tracing.score(trace_id, "user_feedback", 1.0, comment="...")
    tracing.shutdown()                     # bounded: tracing.shutdown_timeout_seconds
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.errors import FeedbackError
from rag.observability.feedback import FeedbackStore, RecentTraces
from rag.observability.ids import TraceKeys, keys_for
from rag.observability.scrub import TraceScrubber

if TYPE_CHECKING:
    from rag.core.config import Settings
    from rag.observability.langfuse import LangfuseTracer
    from rag.query.tracing import Tracer

__all__ = [
    "FeedbackError",
    "Tracing",
    "TracingConfig",
    "resolve_config",
    "shutdown_all",
    "tracing_for",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
FEEDBACK_SCORE = "user_feedback"


@dataclass(frozen=True)
class TracingConfig:
    """The ``tracing`` section with the ``LANGFUSE_*`` variables filled in."""

    public_key: str
    secret_key: str
    base_url: str
    tenant: str = "default"
    environment: str | None = None
    release: str | None = None
    sample_rate: float = 1.0
    passages: str = "ids"
    worker: str = "thread"
    export_timeout_seconds: float = 5.0
    flush_interval_seconds: float = 1.0
    shutdown_timeout_seconds: float = 3.0


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def resolve_config(settings: Settings) -> TracingConfig | None:
    """The tracing configuration, or None when tracing is off (disabled, or no keys)."""
    t = settings.tracing
    if not t.enabled or (_env("LANGFUSE_TRACING_ENABLED") or "true").lower() in ("false", "0"):
        return None
    public = t.public_key or _env("LANGFUSE_PUBLIC_KEY")
    secret = t.secret_key or _env("LANGFUSE_SECRET_KEY")
    if not public or not secret:
        return None
    base_url = t.base_url or _env("LANGFUSE_BASE_URL") or _env("LANGFUSE_HOST") or DEFAULT_BASE_URL
    rate = t.sample_rate
    if rate is None:
        try:
            rate = float(_env("LANGFUSE_SAMPLE_RATE") or 1.0)
        except ValueError:
            rate = 1.0
    return TracingConfig(
        public_key=public,
        secret_key=secret,
        base_url=base_url.rstrip("/"),
        tenant=settings.tenant,
        environment=t.environment or _env("LANGFUSE_TRACING_ENVIRONMENT"),
        release=t.release or _env("LANGFUSE_RELEASE"),
        sample_rate=min(max(rate, 0.0), 1.0),
        passages=t.passages,
        worker=t.worker,
        export_timeout_seconds=t.export_timeout_seconds,
        flush_interval_seconds=t.flush_interval_seconds,
        shutdown_timeout_seconds=t.shutdown_timeout_seconds,
    )


class Tracing:
    """Tracing for one deployment: the tracer (None when off), trace ids, scores."""

    def __init__(
        self,
        config: TracingConfig | None,
        keys: TraceKeys,
        scrubber: TraceScrubber,
        tracer: LangfuseTracer | None = None,
        data_dir: Path | None = None,
    ):
        self.config = config
        self.keys = keys
        self.scrubber = scrubber
        self.langfuse = tracer
        self.recent = RecentTraces()
        if tracer is not None:
            tracer.recent = self.recent
        self.feedback = FeedbackStore(data_dir) if data_dir is not None else None

    @property
    def enabled(self) -> bool:
        return self.langfuse is not None

    @property
    def tracer(self) -> Tracer | None:
        return self.langfuse

    def new_trace_id(self, tenant: str, user: str | None = None) -> str | None:
        """A trace id for a request of ``user`` in ``tenant`` about to run (None when tracing
        is off); only that user may rate it (``record_feedback``)."""
        return self.keys.new_trace_id(tenant, user) if self.langfuse is not None else None

    def owns(self, trace_id: str, tenant: str, user: str | None = None) -> bool:
        return self.keys.owns(trace_id, tenant, user)

    def score(
        self,
        trace_id: str | None,
        name: str,
        value: float,
        *,
        comment: str | None = None,
        data_type: str = "NUMERIC",
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Send a score (background); False when tracing is off or it could not be queued."""
        if self.langfuse is None:
            return False
        try:
            self.langfuse.score(
                trace_id, name, value, comment=comment, data_type=data_type, metadata=metadata
            )
        except Exception as exc:  # noqa: BLE001 - a score never fails its caller
            log.warning("tracing: could not send score %s (%s)", name, exc)
            return False
        return True

    def record_feedback(
        self,
        trace_id: str,
        tenant: str,
        value: int,
        comment: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """A user's thumbs up (1) or down (0) on one of their traces in ``tenant``: a local
        record and a ``user_feedback`` score on the trace. Raises :class:`FeedbackError` for
        a trace that is not ``user``'s in ``tenant`` (or any trace when tracing is off)."""
        if not self.enabled or not self.owns(trace_id, tenant, user):
            raise FeedbackError(
                f"no trace {trace_id} for this tenant: send the trace_id of one of your answers"
            )
        scrub = self.scrubber.full
        text = scrub(comment.strip())[:2000] if comment and comment.strip() else None
        context: dict[str, Any] = {}
        seen = self.recent.get(trace_id)
        if seen is not None and seen.get("tenant") == tenant:
            context = {
                "question": scrub(seen.get("question") or ""),
                "answer": scrub(seen.get("answer") or ""),
                "sources": seen.get("sources") or [],
                "abstained": bool(seen.get("abstained")),
            }
        record: dict[str, Any] = {"trace_id": trace_id, "tenant": tenant, "value": value}
        if self.feedback is not None:
            record = self.feedback.add(trace_id, tenant, value, text, context)
        self.score(
            trace_id,
            FEEDBACK_SCORE,
            float(value),
            comment=text,
            data_type="BOOLEAN",
            metadata={"feedback_id": record.get("id")},
        )
        return record

    def eval_report(
        self, report_id: str, metrics: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> str | None:
        """Send an eval report's metrics as scores (on a trace of their own), then wait
        for them at most ``tracing.shutdown_timeout_seconds``; None when tracing is off."""
        if self.langfuse is None:
            return None
        numbers = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v
        }
        try:
            trace_id = self.langfuse.eval_report(report_id, numbers, metadata or {})
        except Exception as exc:  # noqa: BLE001 - a report is written whatever Langfuse does
            log.warning("tracing: could not send eval report %s (%s)", report_id, exc)
            return None
        # A report is rare (after a sync, or `rag eval`, which exits next): wait for it, bounded.
        self.langfuse.flush(self.langfuse.config.shutdown_timeout_seconds)
        return trace_id

    def flush(self, timeout: float = 5.0) -> bool:
        return self.langfuse.flush(timeout) if self.langfuse is not None else True

    def shutdown(self, timeout: float | None = None) -> bool:
        return self.langfuse.shutdown(timeout) if self.langfuse is not None else True


# tracing.worker -> the tracer class (imported on first use: the SDK stays unloaded without keys)
_WORKERS = {
    "thread": ("rag.observability.langfuse", "LangfuseTracer"),
    "process": ("rag.observability.export_process", "ProcessLangfuseTracer"),
}
_instances: dict[tuple[Any, ...], Tracing] = {}
_lock = threading.Lock()


def tracing_for(settings: Settings) -> Tracing:
    """The process's :class:`Tracing` for these settings (the SDK keeps one client per
    public key, so one tracer per configuration)."""
    config = resolve_config(settings)
    data_dir: Path = settings.resolved_data_dir()
    key = (config, str(data_dir))
    with _lock:
        tracing = _instances.get(key)
        if tracing is not None and (tracing.langfuse is None or not tracing.langfuse._closed):
            return tracing
        scrubber = TraceScrubber(settings)
        keys = keys_for(data_dir)
        tracer = None
        if config is not None:
            try:
                module, name = _WORKERS[config.worker]
                tracer = getattr(importlib.import_module(module), name)(config, keys, scrubber)
            except Exception as exc:  # noqa: BLE001 - no tracing beats no service
                log.warning(
                    "tracing is off: cannot start the Langfuse client for %s (%s); check "
                    "LANGFUSE_* / the tracing section",
                    config.base_url,
                    exc,
                )
        tracing = _instances[key] = Tracing(config, keys, scrubber, tracer, data_dir)
        return tracing


def shutdown_all(timeout: float | None = None) -> None:
    """Every tracer of this process flushed and stopped (bounded each)."""
    with _lock:
        instances = list(_instances.values())
    for tracing in instances:
        tracing.shutdown(timeout)
