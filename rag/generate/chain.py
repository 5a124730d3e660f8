"""The fallback chain: ask each backend in turn until one answers.

A backend that raises, or runs past ``generation.timeout_seconds`` (each backend gets the
full time), hands over to the next; so does one whose finished answer the consumer refuses
(``accept``: verification found nothing in it that answers). If it had already streamed
tokens, a ``("reset", info)`` event tells the consumer to discard them before the next
backend's tokens arrive. The outcome says which backend answered (``generator``), what
happened to the ones before it (``failures``: failed and refused alike), and whether
something actually went wrong (``degraded``: a backend before it failed or timed out — not
merely that an earlier one's answer was refused, which is the chain working as designed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from rag.contracts import ChainOutcome
from rag.core.config import GenerationSettings, PiiSettings
from rag.core.registry import Registry
from rag.core.types import BackendUsage, FinishReason
from rag.generate.base import (
    GenerationError,
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
    approximate_counter,
    close_quietly,
)

__all__ = [
    "GENERATORS",
    "ChainEvent",
    "ChainOutcome",
    "GeneratorChain",
    "GeneratorContext",
    "GeneratorFactory",
    "build_chain",
    "build_generator",
    "finish_reason",
]

log = logging.getLogger(__name__)

ChainEvent = tuple[str, Any]
# observe(event, generator, usage, error): see GeneratorChain.stream
Observer = Callable[[str, "Generator", "BackendUsage | None", "str | None"], None]


def attempt_usage(
    generator: Generator,
    usage: Usage | None,
    request: GenerationRequest,
    pieces: list[str],
    outcome: str,
) -> BackendUsage:
    """What one call used: as the backend reported it, else counted with its tokenizer when
    it produced text before failing (the prompt was read and tokens generated: billed)."""
    model = generator.describe().get("model")
    entry = BackendUsage(
        backend=generator.name,
        model=str(model) if model is not None else None,
        outcome=outcome,  # type: ignore[arg-type]
    )
    if usage is not None:
        entry.prompt_tokens, entry.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    elif pieces and generator.uses_llm:
        try:
            counter = generator.tokens
            entry.prompt_tokens = counter.count_messages(request.messages)
            entry.completion_tokens = counter("".join(pieces))
        except Exception:  # noqa: BLE001 - no tokenizer: the shared estimate
            rough = approximate_counter()
            entry.prompt_tokens = sum(rough(m.get("content", "")) for m in request.messages)
            entry.completion_tokens = rough("".join(pieces))
        entry.estimated = True
    return entry


def total_usage(attempts: list[BackendUsage], last: Usage) -> Usage:
    """The request's usage: every attempt summed, ``finish_reason`` of the one that answered."""
    return Usage(
        sum(a.prompt_tokens for a in attempts),
        sum(a.completion_tokens for a in attempts),
        cost=sum(a.cost for a in attempts),
        backends=[a.model_copy() for a in attempts],
        finish_reason=last.finish_reason,
    )


class _Refused(GenerationError):
    """A finished answer the consumer refused: the next backend is asked, nothing failed."""


class GeneratorChain:
    def __init__(
        self,
        generators: list[Generator],
        timeout_seconds: float = 60.0,
        spare: Generator | None = None,
    ):
        if not generators:
            raise GenerationError(
                "generation.chain is empty: list at least one of " + ", ".join(GENERATORS.names())
            )
        self.generators = generators
        self.timeout_seconds = timeout_seconds
        # Asked only when a budget skips every backend (``stream(skip=...)``): costs nothing.
        self.spare = spare

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.generators]

    @property
    def primary(self) -> Generator:
        return self.generators[0]

    def special_tokens(self) -> frozenset[str]:
        """Every backend's own special-token strings: what Pack breaks in questions and passages."""
        out: frozenset[str] = frozenset()
        for g in self.generators:
            try:
                out |= g.special_tokens
            except Exception as exc:  # noqa: BLE001 - a backend that cannot load its tokenizer
                # fails on its own turn (and breaks its own tokens there): the query goes on.
                log.debug("generator %s: no special tokens (%s)", g.name, exc)
        return out

    def budget_generator(self) -> Generator:
        """The backend whose tokenizer and window bound the context: the tightest LLM one."""
        llms = [g for g in self.generators if g.uses_llm]
        return min(llms, key=lambda g: g.context_window) if llms else self.generators[0]

    def warm_up(self) -> None:
        """Load every backend; one that fails is logged (queries fall back past it) unless all fail."""
        errors = []
        for g in self.generators:
            try:
                g.warm_up()
            except Exception as exc:  # noqa: BLE001 - a backend that cannot start is skipped
                log.warning("generator %s is not available: %s", g.name, exc)
                errors.append(f"{g.name}: {exc}")
        if len(errors) == len(self.generators):
            raise GenerationError(
                "no generator in generation.chain could start (" + "; ".join(errors) + ")"
            )

    def close(self) -> None:
        for g in self.generators:
            g.close()

    def stream(
        self,
        request: GenerationRequest,
        accept: Callable[[str], str | None] | None = None,
        skip: Callable[[Generator], str | None] | None = None,
        observe: Observer | None = None,
        calls: list[BackendUsage] | None = None,
    ) -> Iterator[ChainEvent]:
        """``("token", str)``…, maybe ``("reset", info)`` and more tokens, then ``("end", ChainOutcome)``.

        ``accept(text)`` returns why a finished answer is refused (or None): a refused answer
        hands over to the next backend like a failure; the last backend's answer is kept.
        ``skip(generator)`` returns why a backend is not asked at all (a spent budget: rag.query.costs)
        or None; skipping counts as degraded. When every backend is skipped, ``spare`` (an
        extractive backend, no model cost) answers.
        ``observe(event, generator, usage, error)`` hears each attempt begin (``"start"``) and
        end (``"end"``: its ``BackendUsage``, the error or refusal; ``"cancelled"`` when the
        consumer stopped listening): what a tracer records as one generation per attempt.
        ``calls``: a list the attempts are recorded in as they end (also the one in flight when
        the consumer stops listening): what was spent when no outcome comes.
        """

        def note(
            event: str, generator: Generator, entry: BackendUsage | None, error: str | None
        ) -> None:
            if observe is not None:
                observe(event, generator, entry, error)

        failures: list[dict[str, str]] = []
        attempts: list[BackendUsage] = calls if calls is not None else []
        failed = False  # a backend raised or timed out (not: its answer was refused)
        kept: ChainOutcome | None = None  # the first answer refused by ``accept``
        generators = list(self.generators)
        skipped: dict[int, str] = {}
        if skip is not None:
            for position, generator in enumerate(generators):
                reason = skip(generator)
                if reason:
                    skipped[position] = reason
            if len(skipped) == len(generators):
                spare = self.spare
                if spare is None or spare in generators:
                    skipped.pop(len(generators) - 1)  # nothing cheaper to ask: the last one answers
                else:
                    generators.append(spare)
        for position, generator in enumerate(generators):
            if position in skipped:
                failed = True
                log.info("generator %s skipped: %s", generator.name, skipped[position])
                failures.append({"generator": generator.name, "error": skipped[position]})
                attempts.append(attempt_usage(generator, Usage(), request, [], "skipped"))
                note("start", generator, None, None)
                note("end", generator, attempts[-1], skipped[position])
                continue
            attempt = replace(request, deadline=time.monotonic() + self.timeout_seconds)
            pieces: list[str] = []
            usage = Usage()
            reported: Usage | None = None
            started = time.perf_counter()
            first_token_ms: float | None = None
            note("start", generator, None, None)
            try:
                items = generator.stream(attempt)
                try:
                    for item in items:
                        if isinstance(item, Usage):
                            usage = reported = item
                            continue
                        if first_token_ms is None:
                            first_token_ms = (time.perf_counter() - started) * 1000.0
                        pieces.append(item)
                        yield ("token", item)
                finally:
                    close_quietly(items)  # also when our consumer stopped listening
                text = "".join(pieces)
                refused = accept(text) if accept and position + 1 < len(generators) else None
                if refused:
                    kept = kept or ChainOutcome(
                        text,
                        generator.name,
                        failed,
                        usage,
                        [],
                        first_token_ms,
                        finish_reason=finish_reason(generator, usage, request),
                    )
                    raise _Refused(refused, backend=generator.name)
            except GeneratorExit:
                attempts.append(attempt_usage(generator, reported, request, pieces, "failed"))
                note("end", generator, None, "cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - any backend failure falls through to the next one
                reason = (
                    str(exc) if isinstance(exc, GenerationError) else f"{type(exc).__name__}: {exc}"
                )
                if isinstance(exc, _Refused):
                    log.info("generator %s refused: %s", generator.name, reason)
                    attempts.append(attempt_usage(generator, reported, request, pieces, "refused"))
                else:
                    failed = True
                    log.warning("generator %s failed: %s", generator.name, reason)
                    attempts.append(attempt_usage(generator, reported, request, pieces, "failed"))
                failures.append({"generator": generator.name, "error": reason})
                note("end", generator, attempts[-1], reason)
                if pieces:
                    nxt = generators[position + 1].name if position + 1 < len(generators) else None
                    yield ("reset", {"failed": generator.name, "next": nxt, "error": reason})
                continue
            attempts.append(attempt_usage(generator, reported, request, pieces, "answered"))
            note("end", generator, attempts[-1], None)
            yield (
                "end",
                ChainOutcome(
                    text=text,
                    generator=generator.name,
                    degraded=failed,
                    usage=total_usage(attempts, usage),
                    failures=failures,
                    first_token_ms=first_token_ms,
                    generate_ms=(time.perf_counter() - started) * 1000.0,
                    finish_reason=finish_reason(generator, usage, request),
                    attempts=attempts,
                ),
            )
            return
        if kept is not None:
            # Only refused answers and failures: the refused answer stands (verification abstains).
            kept.failures = failures
            kept.degraded = failed
            kept.attempts = attempts
            kept.usage = total_usage(attempts, kept.usage)
            yield ("end", kept)
            return
        detail = "; ".join(f"{f['generator']}: {f['error']}" for f in failures)
        raise GenerationError(f"every generator in generation.chain failed ({detail})")


def finish_reason(generator: Generator, usage: Usage, request: GenerationRequest) -> FinishReason:
    """Why ``generator`` stopped: what it reported, else ``length`` when an LLM used up
    ``max_tokens`` (a backend that does not say, e.g. a server without ``finish_reason``)."""
    if usage.finish_reason is not None:
        return usage.finish_reason
    if generator.uses_llm and usage.completion_tokens >= request.max_tokens:
        return "length"
    return "stop"


@dataclass(frozen=True)
class GeneratorContext:
    """What a generator factory is handed: the ``generation`` settings, the sentence scorer
    (the index's embedder; the extractive backend ranks sentences with it) and, for backends
    that count tokens with the local model's tokenizer, a way to load it."""

    settings: GenerationSettings
    scorer: Any = None
    local_tokens: Callable[[], TokenCounter] | None = None


# A name in ``generation.chain`` -> a factory building that backend (cheaply: models load in
# ``warm_up``). Built in: openai, local, extractive; another is one ``GENERATORS.register``.
GeneratorFactory = Callable[[GeneratorContext], Generator]

GENERATORS: Registry[GeneratorFactory] = Registry("generator", "generation.chain")


def build_generator(
    name: str,
    settings: GenerationSettings,
    scorer: Any,
    local_tokens: Callable[[], TokenCounter] | None = None,
) -> Generator:
    """The backend ``name`` (a :data:`GENERATORS` entry); ConfigError naming
    ``generation.chain`` and the registered names when there is none."""
    return GENERATORS.get(name)(GeneratorContext(settings, scorer, local_tokens))


def _openai(context: GeneratorContext) -> Generator:
    from rag.generate.openai import OpenAIGenerator

    settings = context.settings
    return OpenAIGenerator(
        settings.openai, settings.timeout_seconds, fallback_tokens=context.local_tokens
    )


_local_cache: dict[tuple[Any, ...], Generator] = {}


def _local(context: GeneratorContext) -> Generator:
    from rag.generate.local import LocalGenerator

    # One model per process, however many pipelines (tests, API workers) use it.
    local = context.settings.local
    key = tuple(sorted(local.model_dump().items()))
    if key not in _local_cache:
        _local_cache[key] = LocalGenerator(local)
    return _local_cache[key]


def _extractive(context: GeneratorContext) -> Generator:
    from rag.generate.extractive import ExtractiveGenerator

    settings = context.settings
    return ExtractiveGenerator(
        context.scorer, settings.extractive_sentences, settings.extractive_min_score
    )


GENERATORS.register("openai", _openai)
GENERATORS.register("local", _local)
GENERATORS.register("extractive", _extractive)


def build_chain(
    settings: GenerationSettings, scorer: Any, pii: PiiSettings | None = None
) -> GeneratorChain:
    """The configured chain; with ``pii`` (``Settings.pii``), backends that send text out of
    the process see it pseudonymised (rag.guards.pii.outbound)."""

    def local_tokens() -> TokenCounter:
        from rag.generate.local import local_token_counter

        try:
            return local_token_counter(settings.local)
        except GenerationError as exc:
            # Without the `local` extra (llama-cpp-python) or the GGUF there is no local
            # tokenizer to borrow: count conservatively instead of failing every query.
            log.warning("no local tokenizer for openai (%s): counting ~3 characters a token", exc)
            return approximate_counter()

    from rag.guards.pii.outbound import pseudonymising

    generators = [
        pseudonymising(build_generator(n, settings, scorer, local_tokens), pii)
        for n in settings.chain
    ]
    return GeneratorChain(
        generators,
        timeout_seconds=settings.timeout_seconds,
        spare=next(
            (g for g in generators if g.name == "extractive"),
            build_generator("extractive", settings, scorer) if "extractive" in GENERATORS else None,
        ),
    )
