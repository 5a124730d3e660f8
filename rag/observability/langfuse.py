"""The Langfuse tracer: one trace per query, a span per stage, a generation per backend attempt.

Implements :class:`rag.tracing.Tracer` over the Langfuse Python SDK (v5, OpenTelemetry
underneath), on a ``TracerProvider`` of its own — never the process-global one. Imported
only when tracing is configured (:func:`rag.observability.tracer_for`).

What a trace holds:

- the root observation ``query``: input the question, output the answer (both scrubbed);
  trace attributes user and session (pseudonymised), tenant, release, environment; scores
  ``abstained``, ``degraded`` and ``citation_support`` (verified citations / citations);
- a span per stage the runner times (``retrieve``, ``rerank``, ``prompt``, ``pack``,
  ``generate``, ``verify``, and any added stage: PII, cache, injection...), with what the
  stage produced as ids, sources and scores — passage text only with ``tracing.passages:
  text``;
- under ``generate``, one ``generation`` per backend attempt: model, parameters,
  ``usage_details``, ``cost_details`` (when priced), ``completion_start_time`` (the first
  token), the prompt name and version in metadata, and the outcome — answered, refused by
  verification, failed or skipped — with its (scrubbed) reason as the status message.

Never a flush per request: spans leave in the background (batches every
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
import random
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from rag.tracing import Span

if TYPE_CHECKING:
    from rag.observability import TracingConfig
    from rag.observability.feedback import RecentTraces
    from rag.observability.ids import TraceKeys
    from rag.observability.scrub import TraceScrubber
    from rag.stages import QueryState

__all__ = ["LangfuseTracer"]

log = logging.getLogger(__name__)

_STATE_KEY = "langfuse"
NumericType = Literal["NUMERIC", "BOOLEAN"]
_TYPES = {"retrieve": "retriever", "rerank": "retriever", "verify": "evaluator"}
_MAX_MESSAGE = 500
# Attributes holding free text: scrubbed with the full PII scrubber at export. Every other
# string attribute gets the regular-expression floor.
_FREE_TEXT = ("input", "output", "status_message", "metadata.error", "metadata.unsupported")
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
class _Request:
    root: Any
    tenant: str
    open: list[Any] = field(default_factory=list)  # observations, innermost last
    names: list[str] = field(default_factory=lambda: ["query"])  # their names
    # sentence-by-sentence verification inside generate: summed, not a span each
    nested_ms: float = 0.0
    nested_calls: int = 0
    # generations ended once the generate stage closes (costs are priced after the chain)
    generations: list[tuple[Any, int, Any]] = field(default_factory=list)


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
            resource=Resource.create({k: v for k, v in resource.items() if v})
        )
        self.client = Langfuse(
            public_key=config.public_key,
            secret_key=config.secret_key,
            base_url=config.base_url,
            timeout=max(1, round(config.export_timeout_seconds)),
            flush_interval=config.flush_interval_seconds,
            environment=config.environment,
            release=config.release,
            tracer_provider=self.provider,
            mask_otel_spans=self._mask_export,
        )
        self._closed = False
        self._lock = threading.Lock()
        # Export-time masking may run spaCy (rag.pii) on the exporter's thread: at exit it is
        # stopped first (batches dropped), so no model code runs while the interpreter ends.
        self._masking = threading.Lock()
        self._stopping = False
        atexit.register(self._quiesce)
        self.recent: RecentTraces | None = None  # set by rag.observability.Tracing

    # -- the Tracer protocol -----------------------------------------------------------
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
        stack = ExitStack()
        try:
            from langfuse import propagate_attributes

            root = stack.enter_context(
                self.client.start_as_current_observation(
                    trace_context={"trace_id": trace_id},
                    name="query",
                    as_type="span",
                    input={"question": self.scrubber.quick(state.question)},
                    metadata={"streaming": state.streaming, "generate": q.generate},
                )
            )
            stack.enter_context(
                propagate_attributes(
                    user_id=self.keys.user(q.user),
                    session_id=self.keys.user(q.session),
                    metadata={"tenant": tenant},
                    version=self.config.release,
                    trace_name="rag-query",
                    tags=[f"tenant:{tenant}"],
                )
            )
        except Exception as exc:  # noqa: BLE001 - tracing never breaks a query
            log.debug("tracing: could not start a trace (%s)", exc)
            stack.close()
            yield span
            return
        record = _Request(root=root, tenant=tenant, open=[root])
        state.trace_id = trace_id
        state.extras[_STATE_KEY] = record
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:  # noqa: BLE001 - recorded scrubbed, re-raised below
            error = exc
        try:
            self._finish(state, record, trace_id, error)
        except Exception as exc:  # noqa: BLE001
            log.debug("tracing: could not finish the trace (%s)", exc)
        finally:
            state.extras.pop(_STATE_KEY, None)
            stack.close()
        if error is not None:
            raise error

    @contextmanager
    def span(self, name: str, state: QueryState) -> Iterator[Span]:
        span = LangfuseSpan(name)
        record: _Request | None = state.extras.get(_STATE_KEY)
        if record is None:
            yield span
            return
        if name == "generation":
            yield from self._generation(span, state, record)
            return
        if name == "verify" and record.names[-1] == "generate":
            started = time.perf_counter()
            try:
                yield span
            finally:
                record.nested_ms += (time.perf_counter() - started) * 1000.0
                record.nested_calls += 1
            return
        try:
            parent = record.open[-1]
            # Not the "current" span: stages stream across yields, the context stays put.
            obs = parent.start_observation(name=name, as_type=_TYPES.get(name, "span"))
        except Exception as exc:  # noqa: BLE001
            log.debug("tracing: could not start span %s (%s)", name, exc)
            yield span
            return
        record.open.append(obs)
        record.names.append(name)
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:  # noqa: BLE001 - recorded scrubbed, re-raised below
            error = exc
        try:
            record.open.remove(obs)
            record.names.pop()
            obs.update(**self._stage_fields(name, state, span, error))
            if name == "generate":
                self._end_generations(record)
            obs.end()
        except Exception as exc:  # noqa: BLE001
            log.debug("tracing: could not end span %s (%s)", name, exc)
        if error is not None:
            raise error

    # -- generations -------------------------------------------------------------------
    def _generation(self, span: Span, state: QueryState, record: _Request) -> Iterator[Span]:
        obs = None
        try:
            prompt = state.prompt
            obs = record.open[-1].start_observation(
                name="generation",
                as_type="generation",
                model_parameters={
                    "temperature": state.query.temperature,
                    "max_tokens": state.max_tokens,
                    "stream": state.streaming,
                },
                metadata={"prompt": prompt.ref if prompt is not None else None},
            )
        except Exception as exc:  # noqa: BLE001
            log.debug("tracing: could not start a generation (%s)", exc)
        error: BaseException | None = None
        try:
            yield span
        except BaseException as exc:  # noqa: BLE001
            error = exc
        if obs is not None:
            try:
                obs.update(**self._generation_fields(span.attributes, error))
                record.generations.append((obs, time.time_ns(), span.attributes.get("usage")))
            except Exception as exc:  # noqa: BLE001
                log.debug("tracing: could not record a generation (%s)", exc)
        if error is not None:
            raise error

    def _generation_fields(
        self, attrs: dict[str, Any], error: BaseException | None
    ) -> dict[str, Any]:
        usage = attrs.get("usage")  # rag.types.BackendUsage
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

    def _end_generations(self, record: _Request) -> None:
        for obs, ended, usage in record.generations:
            cost = float(getattr(usage, "cost", 0.0) or 0.0)
            if cost > 0:
                obs.update(cost_details={"total": cost})
            obs.end(end_time=ended)
        record.generations.clear()

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
        record: _Request = state.extras[_STATE_KEY]
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
                verify_calls=record.nested_calls,
                verify_ms=round(record.nested_ms, 3),
            )
        elif name == "verify" and state.answer is not None:
            a = state.answer
            fields["output"] = {
                "abstained": a.abstained,
                "citations": len(a.citations),
                "verified": sum(1 for c in a.citations if c.verified),
                "unsupported": len(a.unsupported),
            }
        if error is not None:
            fields["level"] = "ERROR"
            fields["status_message"] = self.scrubber.quick(_describe(error))[:_MAX_MESSAGE]
        if meta:
            fields["metadata"] = meta
        return fields

    def _finish(
        self, state: QueryState, record: _Request, trace_id: str, error: BaseException | None
    ) -> None:
        root = record.root
        self._end_generations(record)
        answer = state.answer
        if error is not None:
            root.update(
                level="ERROR",
                status_message=self.scrubber.quick(_describe(error))[:_MAX_MESSAGE],
            )
            return
        if answer is None:
            return
        output: dict[str, Any] = {
            "answer": self.scrubber.quick(answer.answer),
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
            output["unsupported"] = [self.scrubber.quick(t) for t in answer.unsupported]
        root.update(output=output)
        if self.recent is not None:
            self.recent.add(
                trace_id,
                {
                    "tenant": record.tenant,
                    "question": state.question,
                    "answer": answer.answer,
                    "sources": sorted({c.source for c in answer.citations}),
                    "abstained": answer.abstained,
                },
            )
        scores: list[tuple[str, float, NumericType]] = [
            ("abstained", 1.0 if answer.abstained else 0.0, "BOOLEAN"),
            ("degraded", 1.0 if answer.degraded else 0.0, "BOOLEAN"),
        ]
        if answer.citations and state.query.generate:
            verified = sum(1 for c in answer.citations if c.verified)
            scores.append(
                ("citation_support", round(verified / len(answer.citations), 4), "NUMERIC")
            )
        for name, value, data_type in scores:
            self.client.create_score(
                trace_id=trace_id,
                name=name,
                value=value,
                data_type=data_type,
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
        self, report_id: str, metrics: dict[str, float], metadata: dict[str, Any]
    ) -> str:
        """An eval report as a trace (``rag-eval``) with each metric a score on it, so
        quality over time sits next to the request traces; returns the trace id."""
        from langfuse import propagate_attributes

        trace_id = self.keys.new_trace_id("evals")
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
            raise RuntimeError("tracing is stopping: batch dropped")
        with self._masking:
            if self._stopping:
                raise RuntimeError("tracing is stopping: batch dropped")
            return MaskOtelSpansResult(span_patches=self._patches(params, OtelSpanPatch))

    def _patches(self, params: Any, patch: Any) -> dict[Any, Any]:
        patches = {}
        for ident, span in params.spans.items():
            changed: dict[str, Any] = {}
            for key, value in span.attributes.items():
                if key in _SAFE or key.startswith("langfuse.internal"):
                    continue
                if isinstance(value, str):
                    scrub = self.scrubber.full if _free_text(key) else self.scrubber.quick
                    new = scrub(value)
                    if new != value:
                        changed[key] = new
                elif isinstance(value, tuple | list) and value and isinstance(value[0], str):
                    new_seq = tuple(self.scrubber.quick(v) for v in value)
                    if new_seq != tuple(value):
                        changed[key] = new_seq
            if changed:
                patches[ident] = patch(set_attributes=changed)
        return patches

    def _quiesce(self) -> None:
        """No more export-time masking: what is still queued is dropped (fails closed)."""
        self._stopping = True
        if self._masking.acquire(timeout=2.0):  # a masking call in flight finishes first
            self._masking.release()

    # -- lifecycle ---------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Export what is queued, waiting at most ``timeout`` seconds (True: all sent)."""
        return _bounded(self.client.flush, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop, waiting at most ``timeout`` (default
        ``tracing.shutdown_timeout_seconds``); later requests are not traced."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        timeout = self.config.shutdown_timeout_seconds if timeout is None else timeout

        def stop() -> None:
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


def _bounded(fn: Any, timeout: float) -> bool:
    """Run ``fn`` in a daemon thread; True when it finished within ``timeout`` seconds."""
    thread = threading.Thread(target=fn, name="rag-langfuse-flush", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def _free_text(key: str) -> bool:
    return any(key.endswith(suffix) or f".{suffix}." in key for suffix in _FREE_TEXT)


def _describe(error: BaseException) -> str:
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
