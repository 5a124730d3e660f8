"""rag.query.rerank.RERANKERS: a reranker registered from outside the library (one, defined
here, that puts passages mentioning a word first) orders the real QueryPipeline's context for
``rerank.backend: <name>``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from rag.core.config import RerankSettings, Settings
from rag.core.errors import ConfigError
from rag.core.types import Query
from rag.indexing.embedding import Embedder
from rag.query.pipeline import QueryPipeline
from rag.query.rerank import RERANKERS, Reranker, build_reranker
from rag.store import Hit
from tests.rag.conftest import KnowledgeBase


class Prefer(Reranker):
    """Passages holding ``word`` first, the rest after them in retrieval order."""

    name = "prefer"

    def __init__(self, settings: RerankSettings, word: str):
        super().__init__(settings)
        self.word = word
        self.calls = 0

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        self.calls += 1
        return [
            (1.0 if self.word in str(h.payload.get("text", "")) else 0.0) + h.score / 1000
            for h in hits
        ]


@pytest.fixture()
def prefer() -> Iterator[list[Prefer]]:
    """``rerank.backend: prefer`` registered; the rerankers it built, newest last."""
    built: list[Prefer] = []

    def factory(settings: RerankSettings, embedder: Embedder | None) -> Reranker:
        assert embedder is not None  # the pipeline hands over the index's embedder
        built.append(Prefer(settings, "Laptops"))
        return built[-1]

    RERANKERS.register("prefer", factory)
    yield built
    RERANKERS.unregister("prefer")


def test_a_registered_reranker_orders_the_pipelines_context(
    prefer: list[Prefer], kb: KnowledgeBase, kb_settings: Callable[..., Settings]
) -> None:
    question = Query(question="How long are backups kept?", generate=False)
    plain = QueryPipeline(kb.index, kb_settings())
    reranked = QueryPipeline(kb.index, kb_settings(rerank={"backend": "prefer"}))
    try:
        before = plain.run(question)
        after = reranked.run(question)
    finally:
        plain.close()
        reranked.close()
    assert before.citations[0].source == "backups.md"
    assert prefer and prefer[-1].calls == 1
    assert after.citations[0].source == "onboarding/laptops.md"
    assert {c.source for c in after.citations} == {c.source for c in before.citations}


def test_an_unknown_reranker_fails_naming_the_key(prefer: list[Prefer]) -> None:
    with pytest.raises(ConfigError) as err:
        build_reranker(RerankSettings(backend="colbert"))
    assert str(err.value) == (
        "unknown reranker 'colbert' (rerank.backend): registered are none, cross-encoder, "
        "embedding, prefer"
    )
