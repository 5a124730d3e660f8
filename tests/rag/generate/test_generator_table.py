"""rag.generate.GENERATORS: a backend registered from outside the library (a canned one,
defined here, that copies a passage's sentence with its [n] marker) answers through the real
QueryPipeline for ``generation.chain: [canned]``, verified like any other backend's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.types import Query
from rag.generate import GENERATORS, GeneratorContext, build_chain
from rag.generate.base import (
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
    approximate_counter,
)
from rag.query.pipeline import QueryPipeline
from rag.verification.citations import split_sentences
from tests.rag.conftest import KnowledgeBase


class Canned(Generator):
    """Answers with the first passage sentence holding ``word``, cited: no model at all."""

    name = "canned"

    def __init__(self, word: str, context: GeneratorContext):
        self.word = word
        self.context = context  # what the factory was handed
        self.requests: list[GenerationRequest] = []

    @property
    def context_window(self) -> int:
        return 4096

    @property
    def tokens(self) -> TokenCounter:
        return approximate_counter()

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        self.requests.append(request)
        for passage in request.context.passages:
            for sentence in split_sentences(passage.text):
                if self.word in sentence:
                    yield f"{sentence.rstrip('.')} [{passage.n}]."
                    return
        yield "Nothing here mentions it."


@pytest.fixture()
def canned() -> Iterator[list[Canned]]:
    """``generation.chain: [canned]`` registered; the backends it built, newest last."""
    built: list[Canned] = []

    def factory(context: GeneratorContext) -> Generator:
        built.append(Canned("kept", context))
        return built[-1]

    GENERATORS.register("canned", factory)
    yield built
    GENERATORS.unregister("canned")


def test_a_registered_generator_answers_through_the_pipeline(
    canned: list[Canned], kb: KnowledgeBase, kb_settings: Callable[..., Settings]
) -> None:
    settings = kb_settings(generation={"chain": ["canned"]})
    pipeline = QueryPipeline(kb.index, settings)
    try:
        pipeline.warm_up()
        answer = pipeline.run(Query(question="How long are backups kept?"))
    finally:
        pipeline.close()
    assert canned and canned[-1].requests, "the registered backend was not asked"
    assert canned[-1].context.settings == settings.generation
    assert answer.generator == "canned" and not answer.abstained and not answer.degraded
    assert "35 days" in answer.answer and "[1]" in answer.answer
    assert answer.citations[0].source == "backups.md" and answer.citations[0].verified


def test_registered_names_build_in_chain_order_with_pii_wrapping_as_before(
    canned: list[Canned], kb_settings: Callable[..., Settings]
) -> None:
    settings = kb_settings(generation={"chain": ["canned", "extractive"]})
    chain = build_chain(settings.generation, scorer=None, pii=settings.pii)
    assert chain.names == ["canned", "extractive"]
    # In process (not openai): pseudonymised only with pii.scrub_in_process, as local is.
    assert chain.generators[0] is canned[-1]
    scrubbed = kb_settings(generation={"chain": ["canned"]}, pii={"scrub_in_process": True})
    wrapped = build_chain(scrubbed.generation, scorer=None, pii=scrubbed.pii).generators[0]
    assert wrapped is not canned[-1] and wrapped.name == "canned"


def test_an_unknown_generator_fails_naming_the_key(
    canned: list[Canned], kb: KnowledgeBase, kb_settings: Callable[..., Settings]
) -> None:
    settings: Any = kb_settings(generation={"chain": ["extractive", "claude"]})
    with pytest.raises(ConfigError) as err:
        QueryPipeline(kb.index, settings)
    assert str(err.value) == (
        "unknown generator 'claude' (generation.chain): registered are openai, local, "
        "extractive, canned"
    )
