"""The query path, one stage per line: retrieve → rerank → prompt → pack → generate → verify.

``QueryPipeline(index, settings)`` is cheap to build; ``warm_up()`` loads the models.
``run(question, ...)`` returns the ``rag query --json`` object; ``stream(question, ...)``
yields the same work as events:

- ``("token", str)`` while the answer is generated (raw model text, markers as written);
- ``("reset", {"failed", "next", "error"})`` when a backend failed mid-answer and the next
  one starts over: discard the tokens received so far;
- ``("citations", list)`` once the answer is verified;
- ``("done", dict)`` last: the final object, whose ``answer`` is authoritative (verified,
  markers renumbered, or the abstention text).

With ``generate=False`` nothing is generated: ``answer`` is "" and ``citations`` is the packed
context (``verified: false``), in the order the generator would have seen it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.citations import SupportScorer, VerifiedAnswer, model_abstained, verify_answer
from rag.config import Settings
from rag.generate import GenerationRequest, GeneratorChain, build_chain
from rag.generate.base import close_quietly
from rag.generate.chain import ChainOutcome
from rag.pack import PackedContext, Packer
from rag.prompts import Prompt, PromptRegistry
from rag.rerank import Reranker, build_reranker
from rag.retrieve import Retriever

if TYPE_CHECKING:
    from rag.index import Index

__all__ = ["Event", "Prepared", "QueryPipeline"]

log = logging.getLogger(__name__)

Event = tuple[str, Any]
# Tokens kept free beyond the counted prompt: chat templates differ a little between servers.
_SAFETY_TOKENS = 16


@dataclass
class Prepared:
    """The model's input for one question: the prompt, the packed context, and stage timings."""

    question: str
    prompt: Prompt
    max_tokens: int
    context: PackedContext
    timings: dict[str, float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class QueryPipeline:
    def __init__(self, index: Index, settings: Settings):
        self.index = index
        self.settings = settings
        self.retriever = Retriever(index, settings.retrieval)
        self.reranker: Reranker = build_reranker(settings.rerank, index.embedder)
        self.prompts = PromptRegistry(settings.prompts)
        self.scorer = SupportScorer(index.embedder.embed)
        self._chain: GeneratorChain | None = None

    @property
    def chain(self) -> GeneratorChain:
        if self._chain is None:
            self._chain = build_chain(self.settings.generation, self.scorer)
        return self._chain

    def warm_up(self) -> None:
        """Load everything a first query would: embedder, BM25, reranker, prompts, generators."""
        self.index.embedder.warm_up()
        self.index.sparse.embed_query("warm up")
        self.prompts.load()
        self.reranker.warm_up()
        self.chain.warm_up()

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()

    # -- public API ------------------------------------------------------------------
    def run(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        prompt: str | None = None,
        generate: bool = True,
        user: str | None = None,
        session: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] | None = None
        for kind, payload in self._events(
            question, filters, prompt, generate, user, session, streaming=False
        ):
            if kind == "done":
                result = payload
        assert result is not None
        return result

    def stream(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        prompt: str | None = None,
        generate: bool = True,
        user: str | None = None,
        session: str | None = None,
    ) -> Iterator[Event]:
        return self._events(question, filters, prompt, generate, user, session, streaming=True)

    # -- stages ----------------------------------------------------------------------
    def _budget(self, prompt: Prompt, question: str, max_tokens: int) -> tuple[Packer, int]:
        generator = self.chain.budget_generator()
        counter = generator.tokens
        skeleton = prompt.render(**self._variables(prompt, question, ""))
        budget = (
            generator.context_window
            - counter.count_messages(skeleton)
            - max_tokens
            - _SAFETY_TOKENS
        )
        return Packer(counter), budget

    def _variables(
        self, prompt: Prompt, question: str, context: str, passages: int = 0
    ) -> dict[str, str]:
        values = {
            "question": question,
            "context": context,
            "passages": str(passages),
            "abstain_text": self.settings.generation.abstain_text,
        }
        return {k: v for k, v in values.items() if k in prompt.variables}

    def prepare(
        self,
        question: str,
        *,
        filters: dict[str, Any] | None = None,
        prompt: str | None = None,
        user: str | None = None,
        session: str | None = None,
    ) -> Prepared:
        """Retrieve, rerank, choose the prompt and pack: everything before the model call."""
        question = (question or "").strip()
        if not question:
            raise ValueError("the question is empty: ask something")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        top_k = self.settings.retrieval.top_k
        fetch = (
            top_k if self.reranker.name == "none" else max(self.settings.rerank.candidates, top_k)
        )
        hits = self.retriever.run(question, top_k=fetch, filters=filters)
        timings["retrieve"] = _ms(time.perf_counter() - t)

        t = time.perf_counter()
        hits = self.reranker.rerank(question, hits, top_k)
        timings["rerank"] = _ms(time.perf_counter() - t)

        t = time.perf_counter()
        chosen = self.prompts.select(prompt, user=user, session=session)
        max_tokens = chosen.max_tokens or self.settings.generation.max_answer_tokens
        packer, budget = self._budget(chosen, question, max_tokens)
        context = packer.pack(hits, budget) if hits else PackedContext([], "", 0, budget)
        timings["pack"] = _ms(time.perf_counter() - t)
        return Prepared(question, chosen, max_tokens, context, timings)

    def _events(
        self,
        question: str,
        filters: dict[str, Any] | None,
        prompt_ref: str | None,
        generate: bool,
        user: str | None,
        session: str | None,
        streaming: bool,
    ) -> Iterator[Event]:
        started = time.perf_counter()
        prepared = self.prepare(
            question, filters=filters, prompt=prompt_ref, user=user, session=session
        )
        question, prompt, context, timings = (
            prepared.question,
            prepared.prompt,
            prepared.context,
            prepared.timings,
        )
        max_tokens = prepared.max_tokens
        gen = self.settings.generation
        base: dict[str, Any] = {
            "answer": "",
            "abstained": False,
            "degraded": False,
            "generator": None,
            "citations": [],
            "prompt": prompt.ref,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0},
            "timings_ms": timings,
            "context_tokens": context.tokens,
        }
        if not generate:
            base["citations"] = [p.as_citation() for p in context.passages]
            timings["total"] = _ms(time.perf_counter() - started)
            yield ("citations", base["citations"])
            yield ("done", base)
            return
        if not context.passages:
            # Nothing retrieved (empty index or filters that match nothing): no model call.
            base.update(answer=gen.abstain_text, abstained=True)
            timings["total"] = _ms(time.perf_counter() - started)
            yield ("citations", [])
            yield ("done", base)
            return

        t = time.perf_counter()
        messages = prompt.render(
            **self._variables(prompt, question, context.text, len(context.passages))
        )
        request = GenerationRequest(
            messages=messages,
            question=question,
            context=context,
            max_tokens=max_tokens,
            temperature=prompt.temperature if prompt.temperature is not None else gen.temperature,
            stop=prompt.stop,
            extra={"stream": streaming},
        )
        outcome: ChainOutcome | None = None
        verified_by_text: dict[str, VerifiedAnswer] = {}

        def verify(text: str) -> VerifiedAnswer:
            if text not in verified_by_text:
                verified_by_text[text] = verify_answer(
                    text, context, self.scorer, gen.verify, question, gen.abstain_text
                )
            return verified_by_text[text]

        def accept(text: str) -> str | None:
            # An answer that says something but none of it is supported goes to the next backend
            # (a small model copying headers, or writing off-topic); a model's own abstention stays.
            if not gen.fallback_on_unsupported or (
                text.strip() and model_abstained(text, gen.abstain_text)
            ):
                return None
            return "answer not supported by the documents" if verify(text).abstained else None

        events = self.chain.stream(request, accept=accept)
        try:
            for kind, payload in events:
                if kind == "end":
                    outcome = payload
                else:
                    yield (kind, payload)
        finally:
            close_quietly(events)
        assert outcome is not None
        timings["generate"] = _ms(time.perf_counter() - t)
        if outcome.first_token_ms is not None:
            timings["first_token"] = round(
                timings["retrieve"] + timings["rerank"] + timings["pack"] + outcome.first_token_ms,
                3,
            )

        t = time.perf_counter()
        verified = verify(outcome.text)
        timings["verify"] = _ms(time.perf_counter() - t)
        timings["total"] = _ms(time.perf_counter() - started)
        base.update(
            answer=verified.answer,
            abstained=verified.abstained,
            degraded=outcome.degraded,
            generator=outcome.generator,
            citations=verified.citations,
            usage=outcome.usage.as_dict(),
            unsupported=verified.unsupported,
            fallbacks=outcome.failures,
        )
        yield ("citations", verified.citations)
        yield ("done", base)
