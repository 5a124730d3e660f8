"""The query path's stages, one small class each, over one typed :class:`QueryState`.

Contract of a stage (and of an output filter):

- construction is cheap (no model loading, no I/O);
- ``warm_up()`` loads whatever a first query would (idempotent);
- ``run(state)`` reads and writes ``state`` and yields the stream events it produces (most
  stages produce none). It is called inside a tracer span named ``name`` by the runner
  (:class:`rag.query.pipeline.QueryPipeline`); stages do not time themselves.

An :class:`OutputFilter` sees every piece of answer text before the user does — streamed or
not, the abstention included — and the citation quotes; redaction plugs in here.

Add a stage by passing ``stages=[...]`` to ``QueryPipeline`` (``default_stages`` gives the
list to extend), or a filter with ``output_filters=[...]``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from rag.contracts import OutputFilter, QueryState, Stage
from rag.core.config import Settings
from rag.core.errors import PromptError, QueryCancelled
from rag.core.textguard import neutralise_special_tokens
from rag.core.types import (
    Answer,
    Citation,
    CitationsEvent,
    Fallback,
    PromptRef,
    ResetEvent,
    StreamEvent,
    TokenEvent,
)
from rag.generate import GenerationRequest, GeneratorChain
from rag.generate.base import close_quietly
from rag.query.guard import InjectionGuard
from rag.query.pack import PackedContext, Packer
from rag.query.prompts import Prompt, PromptRegistry
from rag.query.releases import ReleaseStore, record_answer
from rag.query.rerank import Reranker
from rag.query.retrieve import Retriever
from rag.query.tracing import AttemptSpans
from rag.verification.citations import (
    AnswerVerifier,
    StreamingVerifier,
    SupportScorer,
    model_abstained,
)

if TYPE_CHECKING:
    from rag.core.types import BackendUsage
    from rag.query.costs import CostController

__all__ = [
    "AssembleAnswer",
    "Generate",
    "OutputFilter",
    "Pack",
    "QueryState",
    "Rerank",
    "Retrieve",
    "SelectPrompt",
    "Stage",
]

# Tokens kept free beyond the counted prompt: chat templates differ a little between servers.
_SAFETY_TOKENS = 16
_GUARD_SPARE = 4  # hits fetched beyond the wanted ones, for the injection guard to drop


def _variables(
    prompt: Prompt, settings: Settings, question: str, context: str, passages: int = 0
) -> dict[str, str]:
    values = {
        "question": question,
        "context": context,
        "passages": str(passages),
        "abstain_text": settings.generation.abstain_text,
    }
    return {k: v for k, v in values.items() if k in prompt.variables}


class Retrieve:
    """Hybrid search; fetches ``rerank.candidates`` when a reranker will cut them down."""

    name = "retrieve"

    def __init__(self, retriever: Retriever, settings: Settings, reranking: bool):
        self.retriever = retriever
        top_k = settings.retrieval.top_k
        self.fetch = max(settings.rerank.candidates, top_k) if reranking else top_k
        # Prompt injection: the question's attack part out first, flagged chunks after.
        self.guard = InjectionGuard(settings.injection)

    def warm_up(self) -> None:
        self.retriever.index.embedder.warm_up()
        self.retriever.index.sparse.embed_query("warm up")

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        q = state.query
        self.guard.question(state)
        if not state.question.strip():  # the question was nothing but an attack
            state.hits = []
            return
        # A few spare hits stand in for chunks the guard excludes.
        found = self.retriever.search(
            state.question,
            top_k=self.fetch + _GUARD_SPARE,
            filters=q.filters,
            reader=q.reader(self.retriever.index.settings),
            # the answer cache embedded it (the question as asked: not when the guard cut it)
            query_vector=state.query_vector if state.question == state.asked else None,
        )
        if found.vector is not None:
            state.retrieval_vector = (state.question, found.vector)
        state.hits = self.guard.passages(state, found.hits)[: self.fetch]
        yield from ()


class Rerank:
    name = "rerank"

    def __init__(self, reranker: Reranker, top_k: int):
        self.reranker = reranker
        self.top_k = top_k

    def warm_up(self) -> None:
        self.reranker.warm_up()

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        state.hits = self.reranker.rerank(state.question, state.hits, self.top_k)
        yield from ()


class SelectPrompt:
    """The prompt version for this query (pin, A/B by user/session, rollback) and its limits."""

    name = "prompt"

    def __init__(
        self, registry: PromptRegistry, settings: Settings, releases: ReleaseStore | None = None
    ):
        self.registry = registry
        self.settings = settings
        # A prompt release (rag/query/releases.py) decides the version before the pin and A/B.
        self.releases = releases

    def warm_up(self) -> None:
        self.registry.load()

    def _released(self, state: QueryState) -> Prompt | None:
        """The version a release picks for this request (None: no release speaks)."""
        q = state.query
        name = self.settings.prompts.name
        if self.releases is None or (q.prompt and q.prompt != name):
            return None  # an explicit name@version is answered as asked
        chosen = self.releases.choose(name, q.user or q.session)
        if chosen is None:
            return None
        version, role, release = chosen
        try:
            prompt = self.registry.get(name, version)
        except PromptError:
            return None  # its file is gone: the pin and A/B answer
        if role in ("candidate", "live"):
            share = release["steps"][release["step"]]
            state.extras["release"] = {
                "id": release["id"],
                "prompt": f"{name}@{version}",
                "role": role,
                "candidate_share": share,
            }
            state.on_answer.append(
                record_answer(
                    self.releases,
                    self.settings.releases,
                    release,
                    role,
                    version,
                    time.perf_counter(),
                )
            )
        return prompt

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        q = state.query
        state.prompt = self._released(state) or self.registry.select(
            q.prompt, user=q.user, session=q.session
        )
        state.max_tokens = (
            q.max_tokens or state.prompt.max_tokens or self.settings.generation.max_answer_tokens
        )
        yield from ()


class Pack:
    """Passages into the budget left by the rendered prompt and the answer, counted with the
    tightest backend's own tokenizer; then the messages."""

    name = "pack"

    def __init__(self, chain: GeneratorChain, settings: Settings):
        self.chain = chain
        self.settings = settings

    def warm_up(self) -> None:
        self.chain.budget_generator().tokens("warm up")

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        prompt = state.prompt
        assert prompt is not None, "Pack runs after SelectPrompt"
        generator = self.chain.budget_generator()
        counter = generator.tokens
        # Control-token strings in the question (chat history included) and in passages are
        # broken before anything is counted or rendered: text never opens a turn.
        special = self.chain.special_tokens()
        question = neutralise_special_tokens(state.question, special)
        skeleton = prompt.render(**_variables(prompt, self.settings, question, ""))
        budget = (
            generator.context_window
            - counter.count_messages(skeleton)
            - state.max_tokens
            - _SAFETY_TOKENS
        )
        state.context = (
            Packer(lambda text: counter(neutralise_special_tokens(text, special))).pack(
                state.hits, budget
            )
            if state.hits
            else PackedContext([], "", 0, budget)
        )
        state.messages = prompt.render(
            **_variables(
                prompt,
                self.settings,
                question,
                neutralise_special_tokens(state.context.text, special),
                len(state.context.passages),
            )
        )
        yield from ()


_BACKGROUND: ThreadPoolExecutor | None = None
_BACKGROUND_LOCK = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """One small pool for work that overlaps the model call (shared by every pipeline)."""
    global _BACKGROUND
    with _BACKGROUND_LOCK:
        if _BACKGROUND is None:
            _BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rag-verify")
        return _BACKGROUND


class Generate:
    """The fallback chain, its text released sentence by sentence once verified.

    Each finished backend answer is checked: one with no supported sentence that addresses the
    question hands over to the next backend (``generation.fallback_on_unsupported``) unless the
    model itself abstained.
    A backend abandoned after text was released is announced with a :class:`ResetEvent`.
    """

    name = "generate"

    def __init__(
        self,
        chain: GeneratorChain,
        scorer: SupportScorer,
        settings: Settings,
        costs: CostController | None = None,
    ):
        self.chain = chain
        self.scorer = scorer
        self.settings = settings
        self.costs = costs  # prices every call, skips priced backends past the tenant's budget

    def warm_up(self) -> None:
        self.chain.warm_up()

    def _verifier(self, state: QueryState) -> StreamingVerifier:
        gen = self.settings.generation
        ahead = None
        if gen.verify.min_relevance > 0 and self.chain.primary.uses_llm:
            # A finished-looking sentence is embedded for its relevance check while the model
            # writes on (no model to wait for: nothing to overlap).
            def ahead(text: str) -> object:
                return _background().submit(self.scorer.prepare_sentence, text)

        return StreamingVerifier(
            lambda: AnswerVerifier(
                state.context,
                self.scorer,
                gen.verify,
                state.question,
                gen.abstain_text,
                output_check=self.settings.injection.enabled
                and self.settings.injection.output_check,
            ),
            ahead,
        )

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        if not state.generating:
            return
        gen = self.settings.generation
        prompt = state.prompt
        assert prompt is not None, "Generate runs after SelectPrompt and Pack"
        q = state.query
        temperature = q.temperature
        if temperature is None:
            temperature = prompt.temperature if prompt.temperature is not None else gen.temperature
        request = GenerationRequest(
            messages=state.messages,
            question=state.question,
            context=state.context,
            max_tokens=state.max_tokens,
            temperature=temperature,
            stop=prompt.stop,
            extra={
                "stream": state.streaming,
                # PII found in each chunk at ingest (rag.guards.pii.outbound): not analysed again
                "pii_stored": {h.id: h.payload["pii"] for h in state.hits if "pii" in h.payload},
            },
        )
        if state.condensed is not None:
            # a follow-up: what it adds to the conversation, and what was answered before
            request.extra["follow_up"] = {
                "asked": state.condensed.asked,
                # how it was made standalone: an ellipsis names a new subject
                "reason": state.condensed.reason,
                "said": [t.content for t in q.history if t.role == "assistant"],
            }
        reuse = gen.verify.question_vector == "retrieval"
        if (
            reuse
            and state.retrieval_vector is not None
            and state.retrieval_vector[0] == state.question
        ):
            # The question's vector from retrieval: not embedded a second time (~30 ms of the
            # document encoder on one short text; benchmarks/load.py).
            self.scorer.remember(state.question, state.retrieval_vector[1])
        release = self._verifier(state)
        if gen.verify.min_relevance > 0 and self.chain.primary.uses_llm:
            # The relevance check needs the question's embedding: computed while the model
            # writes its first sentence, not after it (no model to wait for: no gain).
            _background().submit(self.scorer.prepare, state.question)

        def verified(pieces: list[str]) -> Iterator[StreamEvent]:
            for text in pieces:
                shown = state.filter_text(text)
                state.answer_text.append(shown)
                yield TokenEvent(shown)

        def accept(text: str) -> str | None:
            # An answer that says something but none of it supported goes to the next backend
            # (a small model copying headers, or writing off-topic); its own abstention stays.
            with state.tracer.span("verify", state):
                result = release.close()
            if not gen.fallback_on_unsupported or (
                text.strip() and model_abstained(text, gen.abstain_text)
            ):
                return None
            if not result.abstained:
                return None
            # Supported sentences, none of them relevant: it answers another question.
            if release.verifier.supported:
                return "answer does not address the question"
            return "answer not supported by the documents"

        tenant = q.tenant or self.settings.tenant
        costs = self.costs
        skip = (lambda g: costs.skip_reason(tenant, g)) if costs is not None else None
        attempts = AttemptSpans(state, {"temperature": temperature, "max_tokens": state.max_tokens})
        calls: list[BackendUsage] = []  # every model call, kept as it ends
        events = self.chain.stream(
            request, accept=accept, skip=skip, observe=attempts.observe, calls=calls
        )
        try:
            for kind, payload in events:
                if state.cancelled.is_set():
                    # Verification may hold text back for many tokens (no event to stop
                    # at): the model is stopped here, its request closed by the finally.
                    raise QueryCancelled("the reader of the answer went away")
                if kind == "token":
                    attempts.token()
                    if release.closed:  # the last backend was refused before it wrote anything
                        release.reset()
                    with state.tracer.span("verify", state):
                        pieces = release.feed(payload)
                    yield from verified(pieces)
                elif kind == "reset":
                    if release.has_released:
                        state.answer_text.clear()
                        yield ResetEvent(**payload)
                    release.reset()
                elif kind == "end":
                    state.outcome = payload
        finally:
            close_quietly(events)
            attempts.close()
            if costs is not None and state.outcome is None and calls:
                costs.charge_calls(calls, tenant)  # the client went away: still spent
        outcome = state.outcome
        assert outcome is not None
        if costs is not None:
            costs.charge(outcome, tenant)
        if outcome.text != release.raw:
            # Every backend failed or was refused: the first refused answer stands (it abstains).
            if release.has_released:
                state.answer_text.clear()
                yield ResetEvent(outcome.generator, None, "every later backend failed")
            release.reset()
            release.feed(outcome.text)
        with state.tracer.span("verify", state):
            state.verified = release.close()
        yield from verified(release.drain())


class AssembleAnswer:
    """The answer object from what the stages before left on the state: the verified
    citations (or, with ``generate: false``, the packed context), usage, abstention,
    fallbacks. Verification itself happened in ``Generate``, sentence by sentence. Emits the
    citations event; the walk ends here."""

    name = "answer"

    def __init__(self, settings: Settings):
        self.settings = settings

    def warm_up(self) -> None:
        return None

    def _citation(self, raw: dict[str, Any], state: QueryState) -> Citation:
        raw = {**raw, "quote": state.filter_text(str(raw.get("quote", "")))}
        return Citation.model_validate(raw)

    def run(self, state: QueryState) -> Iterator[StreamEvent]:
        prompt = state.prompt
        answer = Answer(
            answer="",
            abstained=False,
            degraded=False,
            generator=None,
            citations=[],
            prompt=PromptRef(**prompt.ref) if prompt is not None else None,
            timings_ms=state.timings,
            context_tokens=state.context.tokens,
        )
        if not state.query.generate:
            answer.citations = [
                self._citation(p.as_citation(), state) for p in state.context.passages
            ]
        elif not state.context.passages:
            # Nothing retrieved (empty index or filters that match nothing): no model call.
            text = state.filter_text(self.settings.generation.abstain_text)
            state.answer_text = [text]
            yield TokenEvent(text)
            answer.answer, answer.abstained = text, True
            answer.finish_reason = "stop"
        else:
            verified, outcome = state.verified, state.outcome
            assert verified is not None and outcome is not None
            answer.answer = "".join(state.answer_text)
            answer.abstained = verified.abstained
            answer.degraded = outcome.degraded
            answer.generator = outcome.generator
            answer.citations = [self._citation(c, state) for c in verified.citations]
            answer.usage = outcome.usage.model_copy()
            if self.settings.generation.verify.unsupported == "mark":
                answer.unsupported = [state.filter_text(t) for t in verified.unsupported]
            else:  # drop: never shown, not even as a list; only how many
                answer.withheld = len(verified.unsupported)
            answer.fallbacks = [Fallback(**f) for f in outcome.failures]
            answer.finish_reason = outcome.finish_reason
        # the condense stage's model rewrite is a call of this request too (charged there)
        for call in state.extras.get("condense_calls", ()):
            answer.usage.backends.insert(0, call.model_copy())
            answer.usage.prompt_tokens += call.prompt_tokens
            answer.usage.completion_tokens += call.completion_tokens
            answer.usage.cost = round(answer.usage.cost + call.cost, 10)
        answer.injection = state.injection
        state.answer = answer
        yield CitationsEvent(answer.citations)
