"""Retrieve stage: dense, sparse (BM25) or hybrid (fused) search over the live collection.

Chunks of one document can all be returned; callers that rank documents collapse them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from rag.config import RetrievalSettings
from rag.store import Filter, Hit

if TYPE_CHECKING:
    from rag.index import Index

__all__ = ["Retriever", "RetrievalSettings", "rrf_fuse"]

Mode = Literal["dense", "sparse", "hybrid"]


def rrf_fuse(rankings: Sequence[Sequence[Hit]], weights: Sequence[float], k: int, limit: int) -> list[Hit]:
    """Weighted reciprocal-rank fusion; the fused score replaces the arm scores."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits, w in zip(rankings, weights):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + w / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(id=i, score=scores[i], payload=first[i].payload) for i in order]


class Retriever:
    def __init__(self, index: Index, settings: RetrievalSettings | None = None):
        self.index = index
        self.settings = settings or index.settings.retrieval

    def run(
        self, query: str, top_k: int | None = None, filters: Filter | None = None, mode: Mode | None = None
    ) -> list[Hit]:
        s = self.settings
        mode = mode or s.mode
        limit = top_k or s.top_k
        collection = self.index.collection or self.index.open(create=False)
        flt = {"tenant": self.index.settings.tenant, **(filters or {})}
        dense: list[Hit] = []
        sparse: list[Hit] = []
        if mode in ("dense", "hybrid"):
            vec = self.index.embedder.embed([query])[0]
            dense = self.index.store.search_dense(collection, vec.tolist(), max(limit, s.candidates), flt)
        if mode in ("sparse", "hybrid"):
            sparse = self.index.store.search_sparse(
                collection, self.index.sparse.embed_query(query), max(limit, s.candidates), flt
            )
        if mode == "dense":
            return dense[:limit]
        if mode == "sparse":
            return sparse[:limit]
        return rrf_fuse([dense, sparse], [s.dense_weight, s.sparse_weight], s.rrf_k, limit)
