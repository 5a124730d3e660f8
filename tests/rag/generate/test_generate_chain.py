"""The chain's fallback order with `accept`: refused answers hand over, and stand when nothing else answers.

The two backends here are scripted Generator subclasses: the chain's own logic is under test;
real backends go through it in tests/rag/query/test_pipeline.py and the vLLM integration test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rag.generate.base import GenerationError, GenerationRequest, Generator, TokenCounter, Usage
from rag.generate.chain import GeneratorChain
from rag.query.pack import PackedContext


class Scripted(Generator):
    def __init__(self, name: str, reply: str | None):
        self.name = name
        self.reply = reply  # None: fails

    @property
    def context_window(self) -> int:
        return 4096

    @property
    def tokens(self) -> TokenCounter:
        return TokenCounter(str.split)

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        if self.reply is None:
            raise GenerationError(f"{self.name} is down", backend=self.name)
        first, *rest = self.reply.split(" ")
        yield first
        for word in rest:
            yield " " + word
        yield Usage(1, 1)


REQUEST = GenerationRequest(
    messages=[], question="q", context=PackedContext([], "", 0, 100), max_tokens=8
)


def _run(chain: GeneratorChain) -> tuple[list[str], object]:
    events = list(
        chain.stream(REQUEST, accept=lambda text: "unsupported" if "bad" in text else None)
    )
    return [k for k, _ in events], events[-1][1]


def test_a_refused_answer_hands_over_with_a_reset() -> None:
    kinds, outcome = _run(
        GeneratorChain([Scripted("a", "bad answer"), Scripted("b", "good answer")])
    )
    assert kinds == ["token", "token", "reset", "token", "token", "end"]
    # A refusal is the chain working, not a degradation; ``failures`` still lists it.
    assert (
        outcome.generator == "b"
        and not outcome.degraded
        and outcome.failures == [{"generator": "a", "error": "unsupported"}]
    )


def test_a_failed_backend_degrades_the_answer() -> None:
    kinds, outcome = _run(GeneratorChain([Scripted("a", None), Scripted("b", "good answer")]))
    assert kinds == ["token", "token", "end"]
    assert outcome.generator == "b" and outcome.degraded
    assert outcome.failures == [{"generator": "a", "error": "a is down"}]


def test_the_refused_answer_stands_when_the_rest_fail() -> None:
    kinds, outcome = _run(GeneratorChain([Scripted("a", "bad answer"), Scripted("b", None)]))
    assert kinds[-1] == "end" and outcome.generator == "a" and outcome.text == "bad answer"
    assert [f["generator"] for f in outcome.failures] == ["a", "b"]
    assert outcome.degraded, "b failed"
    _, refused_only = _run(
        GeneratorChain(
            [Scripted("a", "bad answer"), Scripted("b", "bad too"), Scripted("c", "bad")]
        )
    )
    # The last backend is never refused: c answers, after two refusals and no failure.
    assert refused_only.generator == "c" and not refused_only.degraded
    assert [f["generator"] for f in refused_only.failures] == ["a", "b"]


def test_the_last_backend_is_never_refused_and_all_failing_is_an_error() -> None:
    _, outcome = _run(GeneratorChain([Scripted("a", "bad one")]))
    assert outcome.generator == "a"
    with pytest.raises(GenerationError, match="every generator"):
        _run(GeneratorChain([Scripted("a", None), Scripted("b", None)]))


class NoTokenizer(Scripted):
    """A remote backend whose tokenizer cannot be loaded."""

    uses_llm = True

    @property
    def tokens(self) -> TokenCounter:
        raise GenerationError("no tokenizer here", backend=self.name)


def test_usage_of_a_call_without_a_tokenizer_is_the_shared_estimate() -> None:
    from rag.generate.base import approximate_counter
    from rag.generate.chain import attempt_usage

    request = GenerationRequest(
        messages=[{"role": "user", "content": "How long are backups kept? " * 4}],
        question="q",
        context=PackedContext([], "", 0, 100),
        max_tokens=8,
    )
    entry = attempt_usage(
        NoTokenizer("remote", None), None, request, ["Thirty ", "five days."], "failed"
    )
    rough = approximate_counter()
    assert entry.estimated
    assert entry.prompt_tokens == rough(request.messages[0]["content"]) == 36
    assert entry.completion_tokens == rough("Thirty five days.") == 6
