"""Retrieval eval: run each judged query through the real retriever and score the documents.

Chunks collapse to documents: a document is ranked where its best chunk is. The retriever is
asked for several chunks per wanted document, so ``top_k`` documents survive the collapse.
Latency is measured per query around the whole retrieval (query embedding included).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from evals.metrics import (
    RECALL_CURVE_KS,
    average,
    first_relevant_rank,
    percentile,
    query_metrics,
    recall_at,
)
from rag.query.retrieve import Retriever
from rag.store import Hit

if TYPE_CHECKING:
    from rag.indexing.index import Index

__all__ = ["HEADLINE_KEYS", "collapse_to_documents", "evaluate_retrieval", "latency_summary"]

Mode = Literal["dense", "sparse", "hybrid"]
Progress = Callable[[str, int, int], None]

HEADLINE_KEYS = ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10")
# Chunks asked for per wanted document; documents here are rarely split into more pieces.
_CHUNKS_PER_DOC = 4
_MAX_CHUNKS = 2000


def collapse_to_documents(
    hits: Sequence[Hit], to_doc: Callable[[str], str], limit: int
) -> tuple[list[str], list[float]]:
    """Document ids in the order of their best chunk, with that chunk's score."""
    docs: list[str] = []
    scores: list[float] = []
    seen: set[str] = set()
    for hit in hits:
        source = str(hit.payload.get("source", ""))
        doc = to_doc(source)
        if doc in seen:
            continue
        seen.add(doc)
        docs.append(doc)
        scores.append(float(hit.score))
        if len(docs) >= limit:
            break
    return docs, scores


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(latencies_ms, 50), 3),
        "p95": round(percentile(latencies_ms, 95), 3),
        "mean": round(average(latencies_ms), 3),
        "max": round(max(latencies_ms, default=0.0), 3),
    }


def evaluate_retrieval(
    index: Index,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    to_doc: Callable[[str], str] = lambda source: source,
    top_k: int = 100,
    mode: Mode | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Score every query that has a relevant document. ``per_query`` is always in the result."""
    settings = index.settings.retrieval
    mode = mode or settings.mode
    retriever = Retriever(index)
    chunk_limit = min(max(top_k * _CHUNKS_PER_DOC, top_k), _MAX_CHUNKS)
    judged = [qid for qid in queries if any(grade > 0 for grade in qrels.get(qid, {}).values())]
    per_query: list[dict[str, Any]] = []
    latencies: list[float] = []
    started = time.perf_counter()
    for i, qid in enumerate(judged, start=1):
        if should_stop is not None and should_stop():
            break
        text = queries[qid]
        t0 = time.perf_counter()
        hits = retriever.run(text, top_k=chunk_limit, mode=mode)
        ranked, scores = collapse_to_documents(hits, to_doc, top_k)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        latencies.append(elapsed_ms)
        judged_docs = qrels[qid]
        per_query.append(
            {
                "id": qid,
                "query": text,
                "ranked": ranked,
                "scores": [round(s, 6) for s in scores],
                "relevant": sorted(d for d, g in judged_docs.items() if g > 0),
                "first_relevant_rank": first_relevant_rank(ranked, judged_docs),
                "latency_ms": round(elapsed_ms, 3),
                **{k: round(v, 6) for k, v in query_metrics(ranked, judged_docs).items()},
            }
        )
        if progress:
            progress("queries", i, len(judged))
    metrics = {key: average(q[key] for q in per_query) for key in HEADLINE_KEYS}
    curve = {
        str(k): average(recall_at(q["ranked"], qrels[q["id"]], k) for q in per_query)
        for k in RECALL_CURVE_KS
        if k <= top_k
    }
    return {
        **{k: round(v, 6) for k, v in metrics.items()},
        "queries": len(per_query),
        "latency_ms": latency_summary(latencies),
        "recall_curve": {k: round(v, 6) for k, v in curve.items()},
        "seconds": round(time.perf_counter() - started, 3),
        "config": {
            "mode": mode,
            "top_k": top_k,
            "chunks_requested": chunk_limit,
            "retrieval": settings.model_dump(),
            "embedding": index.embedder.identity().as_dict(),
            "query_precision": index.embedder.query_precision,  # as warm-up resolved it
            "chunking": index.settings.chunking.model_dump(),
        },
        "per_query": per_query,
    }
