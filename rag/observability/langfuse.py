"""The Langfuse tracer: one trace per query, a span per stage, a generation per backend attempt.

Implements :class:`rag.query.tracing.Tracer` over the Langfuse Python SDK (v5, OpenTelemetry
underneath), on a ``TracerProvider`` of its own — never the process-global one. Imported
only when tracing is configured (:func:`rag.observability.tracer_for`).

What a trace holds:

- the root observation ``query``: input the question, output the answer (both scrubbed);
  trace attributes user and session (pseudonymised), tenant, release, environment; scores
  ``abstained``, ``degraded`` and ``citation_support`` (verified citations / citations);
- a span per stage the runner times (``condense``, ``retrieve``, ``rerank``, ``prompt``,
  ``pack``, ``generate``, ``verify``, and any added stage: PII, cache, injection...), with what
  the stage produced as ids, sources and scores — passage text only with ``tracing.passages:
  text``; a follow-up's ``condense`` span holds the question as asked and the standalone
  question answered (scrubbed);
- under ``generate``, one ``generation`` per backend attempt: model, parameters,
  ``usage_details``, ``cost_details`` (when priced), ``completion_start_time`` (the first
  token), the prompt name and version in metadata, and the outcome — answered, refused by
  verification, failed or skipped — with its (scrubbed) reason as the status message.

The request thread only records what happened (names, times, plain dicts: ~0.3 ms a
request); one worker thread turns each finished request into OpenTelemetry spans (explicit
start and end times, the SDK's own attribute builders and tracer scope) that the SDK's
processor exports. Never a flush per request: spans leave in the background (batches every
``tracing.flush_interval_seconds``); a server that is down, answers 503 or never answers
costs the request nothing (an export try is bounded by ``export_timeout_seconds``, then the
batch is dropped). :meth:`LangfuseTracer.shutdown` bounds the last flush.

Errors: an exception escaping a span would be exported verbatim (message and stack trace);
it is caught inside, recorded as a scrubbed status message, and re-raised outside.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rag.core.access import DRAWN_ON, restricted
from rag.core.errors import TracingError
from rag.query.tracing import Span

if TYPE_CHECKING:
    from rag.observability import TracingConfig
    from rag.observability.feedback import RecentTraces
    from rag.observability.ids import TraceKeys
    from rag.observability.scrub import TraceScrubber
    from rag.query.stages import QueryState

__all__ = ["LangfuseTracer"]

log = logging.getLogger(__name__)

_STATE_KEY = "langfuse"
_FLUSH_AT = 512
_QUEUE = 1000  # traces waiting for the worker; beyond it new ones are dropped
# After a failed export (Langfuse refusing, answering 5xx, or past the export timeout), the
# traces of the next seconds are dropped on arrival instead of being built into spans,
# masked and sent to a server that is not taking them: that work competes with requests for
# the CPU and the GIL (under load it cost 20-40 % of p50). The pause doubles per failure.
_PAUSE_SECONDS = (2.0, 60.0)  # the first pause, the longest
# An export still waiting after this long: Langfuse is stalling (a healthy one answers in
# milliseconds); traces are dropped on arrival until it answers or the export times out.
_SLOW_EXPORT_SECONDS = 1.0
NumericType = Literal["NUMERIC", "BOOLEAN"]
_TYPES = {
    "retrieve": "retriever",
    "rerank": "retriever",
    "verify": "evaluator",
    "answer": "evaluator",
}
_MAX_MESSAGE = 500
# Free text gets the full PII scrubber at export: these attributes whole, and in the root's
# input/output JSON the fields below. Every other string gets the regular-expression floor
# (ids, sources, scores: cheap, and spaCy on them would cost ~45 ms a KB for nothing).
_FREE_TEXT = ("status_message", "metadata.error", "metadata.unsupported")
_FREE_FIELDS = frozenset(
    {"question", "answer", "unsupported", "comment", "standalone_question", "asked"}
)
_IO = ("langfuse.observation.input", "langfuse.observation.output")
_SAFE = frozenset(
    {
        "langfuse.observation.type",
        "langfuse.observation.level",
        "langfuse.observation.model.name",
        "langfuse.observation.usage_details",
        "langfuse.observation.cost_details",
        "langfuse.observation.completion_start_time",
        "langfuse.observation.model.parameters",
        "langfuse.environment",
        "langfuse.release",
        "langfuse.version",
        "langfuse.trace.name",
        "user.id",
        "session.id",
    }
)


@dataclass
class _Obs:
    """One observation as the request thread saw it: replayed into a span off that thread."""

    name: str
    kind: str  # span, retriever, evaluator, generation
    parent: int | None
    start_ns: int
    end_ns: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    usage: Any = None  # a generation's BackendUsage (priced after the chain: read at replay)


@dataclass
class _Request:
    trace_id: str
    tenant: str
    user: str | None
    session: str | None
    groups: list[str] | None = None  # the asker's groups (None: the CLI's, access.cli_groups)
    obs: list[_Obs] = field(default_factory=list)
    open: list[int] = field(default_factory=lambda: [0])  # indexes into obs, innermost last
    # sentence-by-sentence verification inside generate: summed, not a span each
    nested_ms: float = 0.0
    nested_calls: int = 0
    scores: list[tuple[str, float, NumericType]] = field(default_factory=list)
    # a prompt release's mark (rag/query/releases.py): version, role, share, a rollback's reason
    release: dict[str, Any] | None = None

    @property
    def innermost(self) -> str:
        return self.obs[self.open[-1]].name


_STOP = object()


class LangfuseSpan(Span):
    __slots__ = ()


class LangfuseTracer:
    """``request(state)`` / ``span(name, state)`` recording into Langfuse."""

    def __init__(self, config: TracingConfig, keys: TraceKeys, scrubber: TraceScrubber):
        from langfuse import Langfuse
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        self.config = config
        self.keys = keys
        self.scrubber = scrubber
        resource = {
            "service.name": "rag-kb",
            "langfuse.environment": config.environment,
            "langfuse.release": config.release,
        }
        # Our own provider: the SDK would otherwise install itself as the global one.
        self.provider = TracerProvider(
            resource=Resource.create({k: v for k, v in resource.items() if v}),
            # Stopped by shutdown(), bounded; OpenTelemetry's own exit hook would wait for a
            # stalled server for the whole export timeout.
            shutdown_on_exit=False,
        )
        self.client = Langfuse(
            public_key=config.public_key,
            secret_key=config.secret_key,
            base_url=config.base_url,
            timeout=max(1, round(config.export_timeout_seconds)),
            flush_interval=config.flush_interval_seconds,
            # Batches by time, not every 15 spans (the SDK's default): one export a second
            # instead of one per request, far less thread hand-over on the request path.
            flush_at=_FLUSH_AT,
            environment=config.environment,
            release=config.release,
            tracer_provider=self.provider,
            mask_otel_spans=self._mask_export,
            span_exporter=_WatchedExporter(_otlp_exporter(config), self),
        )
        self._closed = False
        self.paused_until = 0.0  # time.monotonic() until which traces are dropped on arrival
        self.exporting_since = 0.0  # time.monotonic() when the export in flight began
        self._pause = 0.0
        self.unsent = 0  # traces dropped because Langfuse was failing
        self._lock = threading.Lock()
        # Export-time masking may run spaCy (rag.guards.pii) on the exporter's thread: at exit it is
        # stopped first (batches dropped), so no model code runs while the interpreter ends.
        self._masking = threading.Lock()
        self._batch_scrubbed: dict[str, str] = {}  # the batch being masked: text -> scrubbed
        self._batch_parsed: dict[str, Any] = {}  # its input/output attributes: JSON -> value
        self._stopping = False
        atexit.register(self._quiesce)
        self.recent: RecentTraces | None = None  # set by rag.observability.Tracing
        # The SDK's attribute builders and tracer scope (langfuse 5.x): imported now, so an
        # SDK without them turns tracing off at start-up (tracing_for warns), not per trace.
        from langfuse._client.attributes import (
            create_generation_attributes,
            create_span_attributes,
        )
        from langfuse._client.constants import LANGFUSE_TRACER_NAME
        from langfuse._version import __version__ as sdk_version
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        # The SDK's own tracer scope on our provider: its processor exports these spans.
        self._otel = self.provider.get_tracer(
            LANGFUSE_TRACER_NAME, sdk_version, attributes={"public_key": config.public_key}
        )
        self._ids = RandomIdGenerator()
        self._span_attributes = create_span_attributes
        self._generation_attributes = create_generation_attributes
        self.dropped = 0  # traces not recorded: the worker's queue was full
        self.failed = 0  # traces the worker could not turn into spans
        self._queue: queue.Queue[Any] = queue.Queue(_QUEUE)
        self._worker = threading.Thread(target=self._work, name="rag-langfuse", daemon=True)
        self._worker.start()

    # -- the Tracer protocol -----------------------------------------------------------
    # The request thread only records (names, times, plain dicts); the SDK's work — spans,
    # attribute serialisation, media checks — happens on one worker thread (_replay).
    @contextmanager
    def request(self, state: QueryState) -> Iterator[Span]:
        span = LangfuseSpan("query")
        q = state.query
        tenant = q.tenant or self.config.tenant
        if self._closed or (
            self.config.sample_rate < 1.0 and random.random() >= self.config.sample_rate
        ):
            yield span
            return
        trace_id = q.trace_id or self.keys.new_trace_id(tenant)
        record = _Request(
            trace_id=trace_id,
            tenant=tenant,
            # The principal (API key's or token's user) when there is one, pseudonymised.
            user=self.keys.user(q.asker or q.user),
            session=self.keys.user(q.session),
            groups=None if q.groups is None else sorted(q.groups),
        )
        record.obs.append(
            _Obs(
                "query",
                "span",
                None,
                time.time_ns(),
                fields={
                    "input": {"question": self.scrubber.quick(state.question)},
                    "metadata": {"streaming": state.streaming, "generate": q.generate},
                },
            )
        )
        state.trace_id = trace_id
        state.extras[_STATE_KEY] = record
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:  # noqa: BLE001 - recorded scrubbed, re-raised below
            error = exc
        try:
            record.obs[0].end_ns = time.time_ns()
            self._finish(state, record, error)
            if self.paused():
                self.unsent += 1
            else:
                self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
        except Exception as exc:  # noqa: BLE001 - tracing never breaks a query
            log.debug("tracing: could not finish the trace (%s)", exc)
        finally:
            state.extras.pop(_STATE_KEY, None)
        if error is not None:
            raise error

    @contextmanager
    def span(self, name: str, state: QueryState) -> Iterator[Span]:
        span = LangfuseSpan(name)
        record: _Request | None = state.extras.get(_STATE_KEY)
        if record is None:
            yield span
            return
        if name == "verify" and record.innermost == "generate":
            started = time.perf_counter()
            try:
                yield span
            finally:
                record.nested_ms += (time.perf_counter() - started) * 1000.0
                record.nested_calls += 1
            return
        kind = "generation" if name == "generation" else _TYPES.get(name, "span")
        obs = _Obs(name, kind, record.open[-1], time.time_ns())
        record.obs.append(obs)
        index = len(record.obs) - 1
        if kind != "generation":
            record.open.append(index)
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:  # noqa: BLE001 - recorded scrubbed, re-raised below
            error = exc
        try:
            obs.end_ns = time.time_ns()
            if kind == "generation":
                obs.fields = self._generation_fields(span.attributes, error)
                obs.usage = span.attributes.get("usage")
            else:
                record.open.remove(index)
                obs.fields = self._stage_fields(name, state, span, error)
        except Exception as exc:  # noqa: BLE001
            log.debug("tracing: could not record span %s (%s)", name, exc)
        if error is not None:
            raise error

    # -- generations -------------------------------------------------------------------
    def _generation_fields(
        self, attrs: dict[str, Any], error: BaseException | None
    ) -> dict[str, Any]:
        usage = attrs.get("usage")  # rag.core.types.BackendUsage
        outcome = attrs.get("outcome") or (getattr(usage, "outcome", None) if usage else None)
        reason = attrs.get("error")
        if error is not None:
            outcome, reason = "failed", _describe(error)
        fields: dict[str, Any] = {
            "name": f"generation {attrs.get('backend') or ''}".strip(),
            "model": attrs.get("model") or attrs.get("backend"),
            "metadata": {
                "backend": attrs.get("backend"),
                "outcome": outcome or "answered",
                "prompt": attrs.get("prompt"),
                "estimated_usage": bool(getattr(usage, "estimated", False)),
            },
        }
        params = attrs.get("model_parameters")
        if params:
            fields["model_parameters"] = {k: v for k, v in params.items() if v is not None}
        if usage is not None:
            fields["usage_details"] = {
                "input": int(usage.prompt_tokens),
                "output": int(usage.completion_tokens),
                "total": int(usage.prompt_tokens + usage.completion_tokens),
            }
        first = attrs.get("first_token_at")
        if first is not None:
            fields["completion_start_time"] = datetime.fromtimestamp(first, UTC)
        if reason:
            text = self.scrubber.quick(str(reason))[:_MAX_MESSAGE]
            fields["metadata"]["error"] = text
            fields["status_message"] = text
            fields["level"] = "WARNING" if outcome in ("refused", "skipped") else "ERROR"
        return fields

    # -- what each stage produced ------------------------------------------------------
    def _passages(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | int:
        mode = self.config.passages
        if mode == "none":
            return len(items)
        if mode == "ids":
            for item in items:
                item.pop("text", None)
        return items

    def _stage_fields(
        self, name: str, state: QueryState, span: Span, error: BaseException | None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        meta = {k: _plain(v) for k, v in span.attributes.items()}
        if name in ("retrieve", "rerank"):
            hits = [
                {
                    "id": h.id,
                    "source": h.payload.get("source"),
                    "section": h.payload.get("section"),
                    "score": round(float(h.score), 4),
                    "text": h.payload.get("text"),
                }
                for h in state.hits
            ]
            fields["output"] = {"hits": self._passages(hits)}
            meta["hits"] = len(hits)
        elif name == "condense" and state.standalone is not None:
            # the follow-up as asked and the standalone question answered (both scrubbed)
            condensed = state.condensed
            fields["input"] = {"asked": self.scrubber.quick(getattr(condensed, "asked", ""))}
            fields["output"] = {"standalone_question": self.scrubber.quick(state.standalone)}
        elif name == "prompt" and state.prompt is not None:
            fields["output"] = state.prompt.ref
            meta["max_tokens"] = state.max_tokens
        elif name == "pack":
            ctx = state.context
            passages = [
                {
                    "n": p.n,
                    "ids": p.chunk_ids,
                    "source": p.source,
                    "section": p.section,
                    "score": round(float(p.score), 4),
                    "text": p.text,
                }
                for p in ctx.passages
            ]
            fields["output"] = {"passages": self._passages(passages)}
            meta.update(tokens=ctx.tokens, budget=ctx.budget, dropped=ctx.dropped)
        elif name == "generate" and state.outcome is not None:
            out = state.outcome
            meta.update(
                generator=out.generator,
                degraded=out.degraded,
                fallbacks=[f.get("generator") for f in out.failures],
                first_token_ms=out.first_token_ms,
            )
        elif name == "answer" and state.answer is not None:
            a = state.answer
            fields["output"] = {
                "abstained": a.abstained,
                "citations": len(a.citations),
                "verified": sum(1 for c in a.citations if c.verified),
                "unsupported": len(a.unsupported),
                "withheld": a.withheld,
            }
        if error is not None:
            fields["level"] = _level(error)
            fields["status_message"] = self.scrubber.quick(_describe(error))[:_MAX_MESSAGE]
        if meta:
            fields["metadata"] = meta
        return fields

    def _finish(self, state: QueryState, record: _Request, error: BaseException | None) -> None:
        root = record.obs[0].fields
        if isinstance(state.extras.get("release"), dict):
            record.release = {
                k: self.scrubber.quick(v) if isinstance(v, str) and k == "rolled_back" else v
                for k, v in state.extras["release"].items()
            }
        answer = state.answer
        if error is not None:
            root["level"] = _level(error)
            root["status_message"] = self.scrubber.quick(_describe(error))[:_MAX_MESSAGE]
            return
        # Values the PII layer recorded in the retrieved chunks (and their parts) are known
        # PII: the restored answer and the question lose them here, whatever the detector
        # makes of them at export.
        known = _stored_pii(state)
        if known:
            inp = root.get("input")
            if isinstance(inp, dict) and isinstance(inp.get("question"), str):
                inp["question"] = self.scrubber.known(inp["question"], known)
        if answer is None:
            return
        # An answer drawn from documents some of the tenant may not read is withheld from the
        # trace (whoever reads traces may not be one of their readers) unless passages: text.
        withheld = self._restricted(state) if self.config.passages != "text" else []
        shown_answer = (
            f"[withheld: drawn from documents restricted to {', '.join(withheld)}; "
            "tracing.passages: text shows it]"
            if withheld
            else answer.answer
        )
        output: dict[str, Any] = {
            "answer": self.scrubber.quick(self.scrubber.known(shown_answer, known)),
            "abstained": answer.abstained,
            "degraded": answer.degraded,
            "generator": answer.generator,
            "prompt": answer.prompt.model_dump() if answer.prompt else None,
            "citations": [
                {"n": c.n, "source": c.source, "score": round(c.score, 4), "verified": c.verified}
                for c in answer.citations
            ],
            "usage": answer.usage.as_dict(),
        }
        cost = getattr(answer.usage, "cost", 0.0)
        if cost:
            output["cost"] = cost
        if answer.unsupported:
            output["unsupported"] = (
                len(answer.unsupported)
                if withheld
                else [
                    self.scrubber.quick(self.scrubber.known(t, known)) for t in answer.unsupported
                ]
            )
        root["output"] = output
        if self.recent is not None:
            self.recent.add(
                record.trace_id,
                {
                    "tenant": record.tenant,
                    "question": state.question,
                    "answer": shown_answer,
                    "sources": sorted({c.source for c in answer.citations}),
                    "abstained": answer.abstained,
                },
            )
        record.scores = [
            ("abstained", 1.0 if answer.abstained else 0.0, "BOOLEAN"),
            ("degraded", 1.0 if answer.degraded else 0.0, "BOOLEAN"),
        ]
        if answer.citations and state.query.generate:
            verified = sum(1 for c in answer.citations if c.verified)
            record.scores.append(
                ("citation_support", round(verified / len(answer.citations), 4), "NUMERIC")
            )

    @staticmethod
    def _restricted(state: QueryState) -> list[str]:
        """The groups of the documents the answer drew on (its context, or a cached answer's)
        that not everyone in the tenant reads; "no group" for a document nobody is given."""
        shown = {p.doc_id for p in state.context.passages}
        labels = [
            h.payload.get("groups") or [] for h in state.hits if h.payload.get("doc_id") in shown
        ]
        labels += state.extras.get(DRAWN_ON) or []
        out: set[str] = set()
        for groups in labels:
            if restricted(groups):
                out.update(groups or ["no group"])
        return sorted(out)

    # -- the worker: records into OpenTelemetry spans the Langfuse processor exports -----
    def _work(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is _STOP:
                    return
                if self.paused():
                    self.unsent += 1
                else:
                    self._replay(record)
            except Exception as exc:  # noqa: BLE001 - one bad record never stops the worker
                self.failed += 1
                if self.failed == 1:
                    log.warning("tracing: could not record a trace (%s); dropping it", exc)
                else:
                    log.debug("tracing: could not record a trace (%s)", exc)
            finally:
                self._queue.task_done()

    def _replay(self, record: _Request) -> None:
        from opentelemetry import trace as otel
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        trace_attrs: dict[str, Any] = {
            "langfuse.trace.name": "rag-query",
            "langfuse.trace.tags": (
                f"tenant:{record.tenant}",
                *(f"group:{g}" for g in record.groups or ()),
            ),
            "langfuse.trace.metadata.tenant": json.dumps(record.tenant),
            # The asker's groups: who may read what this trace shows (null: the CLI's).
            "langfuse.trace.metadata.groups": json.dumps(record.groups),
        }
        if record.user:
            trace_attrs["user.id"] = record.user
        if record.session:
            trace_attrs["session.id"] = record.session
        if self.config.release:
            trace_attrs["langfuse.version"] = self.config.release
        if record.release:
            # a prompt release served this answer: which version, which side, and a rollback
            # this answer decided (its reason) — filterable by tag in Langfuse
            trace_attrs["langfuse.trace.metadata.release"] = json.dumps(record.release)
            tags = [f"release:{record.release.get('role')}"]
            if record.release.get("rolled_back"):
                tags.append("release:rolled_back")
            trace_attrs["langfuse.trace.tags"] = (*trace_attrs["langfuse.trace.tags"], *tags)
        parent = NonRecordingSpan(
            SpanContext(
                trace_id=int(record.trace_id, 16),
                span_id=self._ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        spans: list[Any] = []
        for i, obs in enumerate(record.obs):
            fields = dict(obs.fields)
            name = fields.pop("name", None) or obs.name
            for key in _SERIALIZED:
                if key in fields:
                    fields[key] = _json(fields[key])
            if obs.kind == "generation":
                cost = float(getattr(obs.usage, "cost", 0.0) or 0.0)
                if cost > 0:
                    fields["cost_details"] = {"total": cost}
                attrs = self._generation_attributes(**fields)
            else:
                if obs.name == "generate":
                    meta = fields.setdefault("metadata", {})
                    meta.update(
                        verify_calls=record.nested_calls, verify_ms=round(record.nested_ms, 3)
                    )
                attrs = self._span_attributes(observation_type=obs.kind, **fields)  # type: ignore[arg-type]
            attrs.update(trace_attrs)
            if i == 0:
                attrs["langfuse.internal.as_root"] = True
            context = otel.set_span_in_context(parent if obs.parent is None else spans[obs.parent])
            spans.append(
                self._otel.start_span(
                    name, context=context, start_time=obs.start_ns, attributes=attrs
                )
            )
        for obs, span in zip(reversed(record.obs), reversed(spans), strict=True):
            span.end(end_time=max(obs.end_ns, obs.start_ns))
        for name, value, data_type in record.scores:
            self.client.create_score(
                trace_id=record.trace_id, name=name, value=value, data_type=data_type
            )

    # -- scores from outside a request (feedback, evals) ---------------------------------
    def score(
        self,
        trace_id: str | None,
        name: str,
        value: float,
        *,
        comment: str | None = None,
        data_type: str = "NUMERIC",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """A score on a trace (or, with ``trace_id`` None, standalone); sent in the background."""
        self.client.create_score(
            trace_id=trace_id,
            name=name,
            value=value,
            comment=self.scrubber.full(comment) if comment else None,
            data_type=cast(NumericType, data_type if data_type == "BOOLEAN" else "NUMERIC"),
            metadata=metadata,
        )

    def eval_report(
        self,
        report_id: str,
        metrics: dict[str, float],
        metadata: dict[str, Any],
        *,
        trace_id: str | None = None,
    ) -> str:
        """An eval report as a trace (``rag-eval``) with each metric a score on it, so
        quality over time sits next to the request traces; returns the trace id."""
        from langfuse import propagate_attributes

        trace_id = trace_id or self.keys.new_trace_id("evals")
        with (
            self.client.start_as_current_observation(
                trace_context={"trace_id": trace_id},
                name="eval-report",
                as_type="evaluator",
                input={"report": report_id, **metadata},
                output=metrics,
            ),
            propagate_attributes(
                trace_name="rag-eval", tags=["eval"], metadata={"report": report_id}
            ),
        ):
            pass
        for name, value in metrics.items():
            self.client.create_score(
                trace_id=trace_id,
                name=f"eval.{name}",
                value=float(value),
                data_type="NUMERIC",
                metadata={"report": report_id},
            )
        return trace_id

    # -- export-time masking (the exporter's thread) -----------------------------------
    def _mask_export(self, *, params: Any) -> Any:
        """Every string attribute of every span in the batch scrubbed before it leaves; if
        this raises, the SDK drops the batch (fails closed)."""
        from langfuse.types import MaskOtelSpansResult, OtelSpanPatch

        if self._stopping:
            raise TracingError("tracing is stopping: batch dropped")
        if self.paused():  # spans built before the last failure: no masking for nothing
            raise TracingError("Langfuse is failing: batch dropped")
        with self._masking:
            if self._stopping:
                raise TracingError("tracing is stopping: batch dropped")
            return MaskOtelSpansResult(span_patches=self._patches(params, OtelSpanPatch))

    def _free_texts(self, params: Any) -> dict[str, str]:
        """Every free text of the batch (question, answer, errors...) fully scrubbed, in one
        pass of the PII model over all of them (one call per text cost ~2.5x more)."""
        texts: list[str] = []

        def walk(v: Any, free: bool) -> None:
            if isinstance(v, str):
                if free:
                    texts.append(v)
            elif isinstance(v, dict):
                for k, x in v.items():
                    walk(x, free or k in _FREE_FIELDS)
            elif isinstance(v, list):
                for x in v:
                    walk(x, free)

        for span in params.spans.values():
            for key, value in span.attributes.items():
                if not isinstance(value, str) or key in _SAFE:
                    continue
                if key in _IO:
                    try:
                        parsed = json.loads(value)
                    except ValueError:
                        texts.append(value)
                    else:
                        self._batch_parsed[value] = parsed
                        walk(parsed, False)
                elif _free_text(key):
                    texts.append(value)
        unique = [t for t in dict.fromkeys(texts) if t.strip()]
        return dict(zip(unique, self.scrubber.full_many(unique), strict=True)) if unique else {}

    def _full(self, text: str) -> str:
        done = self._batch_scrubbed.get(text)
        return done if done is not None else self.scrubber.full(text)

    def _patches(self, params: Any, patch: Any) -> dict[Any, Any]:
        self._batch_scrubbed = self._free_texts(params)
        try:
            return self._batch_patches(params, patch)
        finally:
            self._batch_scrubbed = {}
            self._batch_parsed = {}

    def _batch_patches(self, params: Any, patch: Any) -> dict[Any, Any]:
        patches = {}
        for ident, span in params.spans.items():
            if self._stopping:
                raise TracingError("tracing is stopping: batch dropped")
            changed: dict[str, Any] = {}
            for key, value in span.attributes.items():
                if key in _SAFE or key.startswith("langfuse.internal"):
                    continue
                if isinstance(value, str):
                    if key in _IO:
                        new = self._scrub_json(value)
                    elif _free_text(key):
                        new = self._full(value)
                    else:
                        new = self.scrubber.quick(value)
                    if new != value:
                        changed[key] = new
                elif isinstance(value, tuple | list) and value and isinstance(value[0], str):
                    new_seq = tuple(self.scrubber.quick(v) for v in value)
                    if new_seq != tuple(value):
                        changed[key] = new_seq
            if changed:
                patches[ident] = patch(set_attributes=changed)
        return patches

    def _scrub_json(self, raw: str) -> str:
        """An input/output attribute (JSON): free-text fields fully scrubbed, the rest regex."""
        if raw in self._batch_parsed:
            value = self._batch_parsed[raw]  # parsed once per batch, in _free_texts
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                return self._full(raw)

        def walk(v: Any, free: bool) -> Any:
            if isinstance(v, str):
                return self._full(v) if free else self.scrubber.quick(v)
            if isinstance(v, dict):
                return {k: walk(x, free or k in _FREE_FIELDS) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x, free) for x in v]
            return v

        out = walk(value, False)
        return raw if out == value else json.dumps(out, ensure_ascii=False)

    def _quiesce(self) -> None:
        """No more export-time masking: what is still queued is dropped (fails closed)."""
        self._stopping = True
        if self._masking.acquire(timeout=2.0):  # a masking call in flight finishes first
            self._masking.release()

    # -- Langfuse failing: traces dropped on arrival for a while -------------------------
    def paused(self) -> bool:
        """Langfuse failed the last export (for a while), or the export in flight stalls."""
        paused_until, since = self._pause_state()
        if not (paused_until or since):
            return False
        now = time.monotonic()
        return now < paused_until or (since > 0.0 and now - since > _SLOW_EXPORT_SECONDS)

    def _pause_state(self) -> tuple[float, float]:
        """(paused until, the export in flight began), on the monotonic clock; 0.0: not."""
        return self.paused_until, self.exporting_since

    def exported(self, ok: bool) -> None:
        """An export's outcome (the exporter's thread): a failure pauses tracing, doubling."""
        if ok:
            self._pause, self.paused_until = 0.0, 0.0
            return
        first, longest = _PAUSE_SECONDS
        self._pause = min(longest, self._pause * 2 if self._pause else first)
        self.paused_until = time.monotonic() + self._pause
        log.warning(
            "tracing: Langfuse at %s did not take a batch of spans; traces of the next %.0fs "
            "are dropped (%d so far)",
            self.config.base_url,
            self._pause,
            self.unsent,
        )

    # -- lifecycle ---------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Export what is queued, waiting at most ``timeout`` seconds (True: all sent)."""

        def flush() -> None:
            self._queue.join()
            self.client.flush()

        return _bounded(flush, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop, waiting at most ``timeout`` (default
        ``tracing.shutdown_timeout_seconds``); later requests are not traced."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        timeout = self.config.shutdown_timeout_seconds if timeout is None else timeout

        def stop() -> None:
            self._queue.put(_STOP)
            self._worker.join()
            self.client.shutdown()
            self.provider.shutdown()

        try:  # the SDK keeps one client per public key: a later tracer gets a fresh one
            from langfuse._client.resource_manager import LangfuseResourceManager

            with LangfuseResourceManager._lock:
                LangfuseResourceManager._instances.pop(self.config.public_key, None)
        except Exception as exc:  # noqa: BLE001 - a newer SDK without it: nothing to forget
            log.debug("tracing: could not forget the Langfuse client (%s)", exc)

        done = _bounded(stop, timeout)
        if not done:
            self._quiesce()
            log.warning(
                "tracing: Langfuse at %s did not take the last spans within %.1fs; dropped them",
                self.config.base_url,
                timeout,
            )
        return done


def _otlp_exporter(config: TracingConfig) -> Any:
    """The OTLP/HTTP exporter the SDK would build (endpoint, Basic auth, gzip), built here so
    :class:`_WatchedExporter` sees each export's outcome."""
    import base64

    from langfuse._version import __version__ as sdk_version
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    auth = base64.b64encode(f"{config.public_key}:{config.secret_key}".encode()).decode("ascii")
    return OTLPSpanExporter(
        endpoint=f"{config.base_url}/api/public/otel/v1/traces",
        headers={
            "Authorization": f"Basic {auth}",
            "x-langfuse-sdk-name": "python",
            "x-langfuse-sdk-version": sdk_version,
            "x-langfuse-public-key": config.public_key,
            "x-langfuse-ingestion-version": "4",
        },
        timeout=max(1, round(config.export_timeout_seconds)),
        compression=Compression.Gzip,
    )


class _WatchedExporter(SpanExporter):
    """The OTLP exporter, telling the tracer whether each export went through."""

    def __init__(self, inner: Any, tracer: LangfuseTracer):
        self._inner = inner
        self._tracer = tracer

    def export(self, spans: Any) -> Any:
        self._tracer.exporting_since = time.monotonic()
        try:
            result = self._inner.export(spans)
        except Exception:
            self._tracer.exported(False)
            raise
        finally:
            self._tracer.exporting_since = 0.0
        self._tracer.exported(result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis=timeout_millis))


def _bounded(fn: Any, timeout: float) -> bool:
    """Run ``fn`` in a daemon thread; True when it finished within ``timeout`` seconds."""
    thread = threading.Thread(target=fn, name="rag-langfuse-flush", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


# The fields the SDK JSON-encodes whole: its encoder walks every value in Python (0.44 ms against
# 0.19 ms per trace building attributes); a string it passes through unchanged.
_SERIALIZED = ("input", "output", "usage_details", "model_parameters")


def _json(value: Any) -> Any:
    """``value`` JSON-encoded by the C encoder, as the SDK's encoder writes plain data
    (dicts, lists, strings, numbers, booleans: all the tracer records); anything else,
    NaN included, is left for the SDK to encode."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return value


def _free_text(key: str) -> bool:
    return any(key.endswith(suffix) or f".{suffix}." in key for suffix in _FREE_TEXT)


def _level(error: BaseException) -> str:
    """A client that went away (the stream closed) is a warning; anything else an error."""
    return "WARNING" if isinstance(error, GeneratorExit) else "ERROR"


def _describe(error: BaseException) -> str:
    if isinstance(error, GeneratorExit):
        return "cancelled: the client stopped reading the answer"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _plain(value: Any) -> Any:
    """A span attribute as JSON can carry it."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        dump = getattr(value, "model_dump", None)
        return dump(mode="json") if callable(dump) else str(value)


def _stored_pii(state: QueryState) -> list[tuple[str, str]]:
    """The (type, value) pairs the PII layer stored with the retrieved chunks at ingest."""
    pairs: list[tuple[str, str]] = []
    for hit in getattr(state, "hits", None) or ():
        entry = (getattr(hit, "payload", None) or {}).get("pii")
        values = entry.get("values") if isinstance(entry, dict) else None
        for v in values or ():
            if isinstance(v, list | tuple) and len(v) == 2 and str(v[1]).strip():
                pairs.append((str(v[0]), str(v[1])))
    return pairs
