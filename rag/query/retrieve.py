"""Retrieve stage: dense, sparse (BM25) or hybrid (fused) search over the live collection.

Chunks of one document can all be returned; callers that rank documents collapse them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rag.core.access import Reader, cli_reader, read_filter
from rag.core.config import RetrievalSettings
from rag.core.errors import QueryError
from rag.store import Filter, Hit

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["RetrievalSettings", "Retrieved", "Retriever", "rrf_fuse", "weighted_fuse"]

Mode = Literal["dense", "sparse", "hybrid"]

_sparse_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _sparse_executor() -> ThreadPoolExecutor:
    global _sparse_pool
    with _pool_lock:
        if _sparse_pool is None:
            _sparse_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rag-sparse")
        return _sparse_pool


def rrf_fuse(
    rankings: Sequence[Sequence[Hit]], weights: Sequence[float], k: int, limit: int
) -> list[Hit]:
    """Weighted reciprocal-rank fusion; the fused score replaces the arm scores."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits, w in zip(rankings, weights, strict=False):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + w / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(id=i, score=scores[i], payload=first[i].payload) for i in order]


def weighted_fuse(
    rankings: Sequence[Sequence[Hit]], weights: Sequence[float], limit: int
) -> list[Hit]:
    """Convex combination of min-max normalised arm scores (a hit missing from an arm scores 0 there).

    Unlike RRF it keeps how far apart the scores are: a clear dense winner stays ahead of
    many near-ties in BM25, and the other way round.
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    total = sum(weights) or 1.0
    for hits, w in zip(rankings, weights, strict=False):
        if not hits:
            continue
        values = [h.score for h in hits]
        lo, hi = min(values), max(values)
        span = hi - lo
        for hit in hits:
            norm = (hit.score - lo) / span if span > 1e-12 else 1.0
            scores[hit.id] = scores.get(hit.id, 0.0) + (w / total) * norm
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(id=i, score=scores[i], payload=first[i].payload) for i in order]


@dataclass(frozen=True)
class Retrieved:
    """What a search found, and the query's vector it searched with (None: no dense search)."""

    hits: list[Hit]
    vector: list[float] | None


class Retriever:
    def __init__(self, index: Index, settings: RetrievalSettings | None = None):
        self.index = index
        self.settings = settings or index.settings.retrieval

    def run(
        self,
        query: str,
        top_k: int | None = None,
        filters: Filter | None = None,
        mode: Mode | None = None,
        query_vector: Sequence[float] | None = None,
        tenant: str | None = None,
        reader: Reader | None = None,
    ) -> list[Hit]:
        """``query_vector``: the query's embedding when the caller already has it. Only what
        ``reader`` may read is searched, inside the store query (default: the CLI's principal,
        ``access.cli_groups``, in ``tenant`` or the deployment's); ``filters`` cannot name a tenant or groups."""
        return self.search(query, top_k, filters, mode, query_vector, tenant, reader).hits

    def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: Filter | None = None,
        mode: Mode | None = None,
        query_vector: Sequence[float] | None = None,
        tenant: str | None = None,
        reader: Reader | None = None,
    ) -> Retrieved:
        """:meth:`run`, with the query vector it searched with: the answer path compares the
        question with passage sentences using it instead of embedding the question again."""
        s = self.settings
        mode = mode or s.mode
        limit = top_k or s.top_k
        collection = self.index.collection or self.index.open(create=False)
        for key in ("tenant", "groups", "readers"):
            if filters and key in filters:
                raise QueryError(
                    f"filters cannot choose the {key}: who reads comes from the API key or "
                    f"token (or the deployment's settings); remove the {key} filter"
                )
        reader = reader or cli_reader(self.index.settings, tenant)
        flt = {**(filters or {}), **read_filter(reader)}
        dense: list[Hit] = []
        sparse: list[Hit] = []
        vec: list[float] | None = None
        candidates = max(limit, s.candidates)

        # Candidates as ids and scores: the payloads of the few kept are fetched at the end.
        def search_sparse() -> list[Hit]:
            return self.index.store.search_sparse(
                collection, self.index.sparse.embed_query(query), candidates, flt, False
            )

        pending: Future[list[Hit]] | None = None
        if mode == "hybrid" and query_vector is None:
            # BM25 needs no embedding: search it while the query is encoded (~2 ms at 100k chunks).
            pending = _sparse_executor().submit(search_sparse)
        if mode in ("dense", "hybrid"):
            vec = (
                list(query_vector)
                if query_vector is not None
                else self.index.embedder.embed_query(query).tolist()
            )
            dense = self.index.store.search_dense(collection, vec, candidates, flt, False)
        if pending is not None:
            sparse = pending.result()
        elif mode in ("sparse", "hybrid"):
            sparse = search_sparse()
        if mode == "dense":
            kept = dense[:limit]
        elif mode == "sparse":
            kept = sparse[:limit]
        elif s.fusion == "weighted":
            kept = weighted_fuse([dense, sparse], [s.dense_weight, s.sparse_weight], limit)
        else:
            kept = rrf_fuse([dense, sparse], [s.dense_weight, s.sparse_weight], s.rrf_k, limit)
        return Retrieved(self._with_payloads(collection, kept), vec)

    def _with_payloads(self, collection: str, hits: list[Hit]) -> list[Hit]:
        """``hits`` with their payloads, in one lookup; a point deleted since the search
        (a sync meanwhile) is left out, as a search a moment later would have."""
        points = {p.id: p for p in self.index.store.retrieve(collection, [h.id for h in hits])}
        return [
            Hit(id=h.id, score=h.score, payload=points[h.id].payload)
            for h in hits
            if h.id in points
        ]
