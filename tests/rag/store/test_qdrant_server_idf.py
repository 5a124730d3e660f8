"""The qdrant backend asks a server for IDF over the live points (Qdrant 1.19+), and falls back
to the server's global statistics when the server is older and refuses the parameter. No server
runs here, so the client is a stand-in; the congruence suite checks the answers with a real one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag.store import SparseVec
from rag.store.qdrant import QdrantStore


class _Client:
    def __init__(self, refuse_idf: bool):
        self.refuse_idf = refuse_idf
        self.params: list[Any] = []

    def query_points(self, collection: str, **kw: Any) -> SimpleNamespace:
        self.params.append(kw["search_params"])
        if self.refuse_idf and kw["search_params"] is not None:
            raise UnexpectedResponse(
                400,
                "Bad Request",
                b'{"status":{"error":"Format error in JSON body: unknown field `idf`"}}',
                httpx.Headers(),
            )
        return SimpleNamespace(points=[models.ScoredPoint(id=1, version=0, score=2.0)])


@pytest.mark.parametrize("refuse_idf", [False, True], ids=["server-1.19+", "older-server"])
def test_sparse_search_asks_for_live_idf(refuse_idf: bool) -> None:
    store = QdrantStore(url="http://qdrant.invalid:6333")
    client = _Client(refuse_idf)
    store._client = client
    for _ in range(2):
        hits = store.search_sparse("c", SparseVec([1], [1.0]), 3)
        assert [h.score for h in hits] == [2.0]
    first = client.params[0]
    assert isinstance(first.idf, models.IdfCorpusParams) and first.idf.corpus == models.Filter()
    if refuse_idf:  # asked once, then no more
        assert client.params[1:] == [None, None]
    else:
        assert client.params[1] == first
    store.search_dense("c", [1.0, 0.0], 3)
    assert client.params[-1] is None  # dense search has no IDF


def test_local_mode_needs_no_corpus(tmp_path: Any) -> None:
    """Local mode counts live points already; a corpus there is a slow Python scan."""
    store = QdrantStore(path=str(tmp_path / "q"))
    assert store._live_idf() is None
