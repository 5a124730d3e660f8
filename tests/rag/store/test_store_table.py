"""rag.store.STORES: a vector store registered from outside the library (a counting wrapper
around the edge store, defined here) is what ``Index`` opens for ``store.backend: <name>``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.indexing.embedding import Embedder
from rag.indexing.index import Index
from rag.indexing.ingest import Ingestor
from rag.query.retrieve import Retriever
from rag.store import STORES, Filter, Hit, SparseVec, StoredPoint, open_store
from rag.store.edge import EdgeStore


class CountingStore(EdgeStore):
    """The edge store, counting the calls the library makes of it."""

    name = "counting"

    def __init__(self, path: Path):
        super().__init__(path)
        self.calls: Counter[str] = Counter()

    def upsert(self, collection: str, points: Sequence[StoredPoint]) -> None:
        self.calls["upsert"] += 1
        super().upsert(collection, points)

    def search_dense(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        self.calls["search_dense"] += 1
        return super().search_dense(collection, vector, limit, filter, with_payload)

    def search_sparse(
        self,
        collection: str,
        vector: SparseVec,
        limit: int,
        filter: Filter | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        self.calls["search_sparse"] += 1
        return super().search_sparse(collection, vector, limit, filter, with_payload)


@pytest.fixture()
def counting() -> Iterator[list[CountingStore]]:
    """``store.backend: counting`` registered; the stores it opened, newest last."""
    opened: list[CountingStore] = []

    def factory(settings: Settings) -> CountingStore:
        opened.append(CountingStore(settings.resolved_data_dir() / "counting-index"))
        return opened[-1]

    STORES.register("counting", factory)
    yield opened
    STORES.unregister("counting")


def test_index_opens_syncs_and_searches_a_registered_store(
    counting: list[CountingStore],
    tmp_path: Path,
    tmp_settings: Callable[..., Settings],
    embedder: Embedder,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pumps.md").write_text("# Pumps\n\nThe feed pump is serviced every 900 hours.\n")
    settings = tmp_settings(store={"backend": "counting"})
    index = Index(settings, embedder=embedder)
    try:
        assert counting and index.store is counting[-1]
        index.open()
        report = Ingestor(index).sync_folder(docs)
        assert report.ingested == 1 and counting[-1].calls["upsert"] >= 1
        hits = Retriever(index).run("How often is the feed pump serviced?", top_k=1)
        assert hits[0].payload["source"] == "pumps.md"
        assert counting[-1].calls["search_dense"] == counting[-1].calls["search_sparse"] == 1
        assert (settings.resolved_data_dir() / "counting-index").is_dir()
    finally:
        index.close()


def test_open_store_names_the_key_and_every_registered_backend(
    counting: list[CountingStore], tmp_settings: Callable[..., Settings]
) -> None:
    settings: Any = tmp_settings(store={"backend": "pinecone"})
    with pytest.raises(ConfigError) as err:
        open_store(settings)
    assert str(err.value) == (
        "unknown store backend 'pinecone' (store.backend): registered are edge, qdrant, counting"
    )
    with pytest.raises(ConfigError, match=r"\(store\.backend\)"):
        Index(settings)  # before a model is loaded or a file written
    assert not (settings.resolved_data_dir() / "index").exists()
